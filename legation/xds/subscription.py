"""What one stream has subscribed to, for one resource type.

Owns the xDS subscription rules, shared by the SotW and delta streams
(xDS spec, "How the client specifies what resources to return"):

- CDS and LDS have a wildcard subscription, the special name ``*``. For
  historical reasons a client that has never named a resource of the type
  (SotW: every request had empty ``resource_names``; delta: no
  ``resource_names_subscribe`` on the first request) is a wildcard
  subscriber too ("legacy wildcard").
- Once a client names a resource explicitly, the legacy meaning is gone: an
  empty SotW list then means "nothing", not "everything".
- Other types (EDS, RDS, SDS) only ever have named subscriptions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from legation.cache import WILDCARD_TYPES, Resource

WILDCARD = "*"


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """How a request moved a subscription."""

    added: frozenset[str] = frozenset()  # names newly subscribed (must be (re)sent)
    removed: frozenset[str] = frozenset()  # names no longer subscribed
    wildcard_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.wildcard_changed)


@dataclass(slots=True)
class Subscription:
    type_url: str
    wildcard: bool = False
    names: set[str] = field(default_factory=set)
    explicit: bool = False  # a name (possibly "*") was ever given: no more legacy wildcard

    def update_sotw(self, resource_names: Iterable[str]) -> Change:
        """Apply a SotW request: its ``resource_names`` are the complete new set."""
        requested = set(resource_names)
        if requested:
            self.explicit = True
        if not self.explicit and self.type_url in WILDCARD_TYPES:
            wildcard = True  # legacy wildcard: never named anything
        else:
            wildcard = WILDCARD in requested and self.type_url in WILDCARD_TYPES
        requested.discard(WILDCARD)
        change = Change(
            added=frozenset(requested - self.names),
            removed=frozenset(self.names - requested),
            wildcard_changed=wildcard != self.wildcard,
        )
        self.wildcard, self.names = wildcard, requested
        return change

    def update_delta(
        self, subscribe: Iterable[str], unsubscribe: Iterable[str], *, first: bool
    ) -> Change:
        """Apply a delta request's ``resource_names_subscribe`` / ``_unsubscribe``."""
        sub, unsub = set(subscribe), set(unsubscribe)
        wildcard = self.wildcard
        if first and not sub and self.type_url in WILDCARD_TYPES:
            wildcard = True  # legacy wildcard on the first request
        if WILDCARD in sub and self.type_url in WILDCARD_TYPES:
            wildcard = True
        if WILDCARD in unsub:
            wildcard = False
        sub.discard(WILDCARD)
        unsub.discard(WILDCARD)
        if sub:
            self.explicit = True
        added = frozenset(sub - self.names)
        removed = frozenset((unsub - sub) & self.names)
        self.names = (self.names | sub) - removed
        change = Change(added=added, removed=removed, wildcard_changed=wildcard != self.wildcard)
        self.wildcard = wildcard
        return change

    def covers(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def select(self, resources: Mapping[str, Resource]) -> dict[str, Resource]:
        """The subscribed subset of a snapshot's resources of this type."""
        if self.wildcard:
            return dict(resources)
        return {n: resources[n] for n in self.names if n in resources}
