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
- VHDS: a first delta request without names is a legacy wildcard, as for
  CDS and LDS (what Envoy sends). Names are namespaced: ``<ns>`` also covers every
  resource ``<ns>/<anything>``. Envoy subscribes to a route configuration's
  virtual hosts by the configuration's name (Envoy's VhdsSubscription starts
  with it, with use_namespace_matching); the namespace is what precedes the
  LAST slash, since a host entry has none and a configuration name may.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from legation.cache import VIRTUAL_HOST, WILDCARD_TYPES, Resource

WILDCARD = "*"
NAMESPACED_TYPES: frozenset[str] = frozenset({VIRTUAL_HOST})


# Envoy's VHDS subscription (1.40, over delta ADS) opens with an empty request and
# expects the virtual hosts of the configurations it holds: a legacy wildcard, which
# for VHDS means every virtual host of the proxy's own route configurations (the
# only ones its snapshot has).
_DELTA_LEGACY_WILDCARD: frozenset[str] = WILDCARD_TYPES | {VIRTUAL_HOST}


def namespace_of(name: str) -> str:
    """``<ns>`` of ``<ns>/<rest>``; "" for a name without a slash."""
    return name.rpartition("/")[0]


class Names(frozenset[str]):
    """A subscription's names; weakly referenceable (a subclass without __slots__),
    so a `NameTable` can share it."""


_NO_NAMES = Names()


class NameTable:
    """Equal subscriptions share one `Names` object (and its strings).

    A thousand proxies subscribe to the same thousand ClusterLoadAssignments;
    each stream holding its own set of its own strings cost ~100 KB per
    proxy. Entries vanish with the last subscription that holds them.
    """

    def __init__(self) -> None:
        self._known: weakref.WeakValueDictionary[tuple[int, int], Names] = (
            weakref.WeakValueDictionary())

    def intern(self, names: Iterable[str]) -> Names:
        fresh = names if isinstance(names, Names) else Names(names)
        if not fresh:
            return _NO_NAMES
        key = (len(fresh), hash(fresh))
        known = self._known.get(key)
        if known is not None and known == fresh:
            return known
        if known is None:
            self._known[key] = fresh
        return fresh  # a hash collision keeps its own copy


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
    names: frozenset[str] = _NO_NAMES  # shared with equal subscriptions: never mutated
    explicit: bool = False  # a name (possibly "*") was ever given: no more legacy wildcard
    table: NameTable | None = None

    def _keep(self, names: frozenset[str]) -> None:
        self.names = self.table.intern(names) if self.table is not None else names

    def update_sotw(self, resource_names: Iterable[str]) -> Change:
        """Apply a SotW request: its ``resource_names`` are the complete new set."""
        requested = frozenset(resource_names)
        if requested:
            self.explicit = True
        if not self.explicit and self.type_url in WILDCARD_TYPES:
            wildcard = True  # legacy wildcard: never named anything
        else:
            wildcard = WILDCARD in requested and self.type_url in WILDCARD_TYPES
        requested = requested - {WILDCARD} if WILDCARD in requested else requested
        if requested == self.names:  # the common case: an ACK restating the same names
            added = removed = frozenset[str]()
        else:
            added, removed = requested - self.names, self.names - requested
            self._keep(requested)
        change = Change(added=added, removed=removed, wildcard_changed=wildcard != self.wildcard)
        self.wildcard = wildcard
        return change

    def update_delta(
        self, subscribe: Iterable[str], unsubscribe: Iterable[str], *, first: bool
    ) -> Change:
        """Apply a delta request's ``resource_names_subscribe`` / ``_unsubscribe``."""
        sub, unsub = set(subscribe), set(unsubscribe)
        wildcard = self.wildcard
        if first and not sub and self.type_url in _DELTA_LEGACY_WILDCARD:
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
        if added or removed:
            self._keep((self.names | added) - removed)
        change = Change(added=added, removed=removed, wildcard_changed=wildcard != self.wildcard)
        self.wildcard = wildcard
        return change

    def covers(self, name: str) -> bool:
        if self.wildcard or name in self.names:
            return True
        return self.type_url in NAMESPACED_TYPES and namespace_of(name) in self.names

    def select(self, resources: Mapping[str, Resource]) -> dict[str, Resource]:
        """The subscribed subset of a snapshot's resources of this type."""
        if self.wildcard:
            return dict(resources)
        if self.type_url in NAMESPACED_TYPES:
            names = self.names
            return {n: r for n, r in resources.items()
                    if n in names or namespace_of(n) in names}
        return {n: resources[n] for n in self.names if n in resources}
