"""Incremental (delta) xDS: what one delta stream's client holds, and what it lacks.

A synchronous state machine driven by `stream.py`, like `sotw.py`. Per type
it keeps the client's holdings (name -> resource version): seeded from
`initial_resource_versions` on the stream's first request, so a reconnecting
client is not sent what it already has at the same version, then updated by
every response. Each push is a diff of the newest snapshot against it:
changed or new resources in `resources` (each with its name and version),
vanished ones in `removed_resources` (xDS spec, "Incremental xDS").

- Wildcard (CDS, LDS): legacy on a first request with no names, or "*";
  names are added with resource_names_subscribe and dropped with
  resource_names_unsubscribe (see subscription.py).
- VHDS (virtual hosts): a subscribed route configuration name covers every
  virtual host under it (subscription.py); subscribing to it again re-sends
  them, unsubscribing forgets them.
- Newly subscribed names are always sent, even if sent before. An
  unsubscribe needs no answer: the client drops the resource itself
  (xDS spec, "Unsubscribing From Resources").
- ACK/NACK: response_nonce names the response; error_detail means NACK. A
  NACK is recorded and not answered (no resend, no NACK loop). The client
  keeps its previous versions of what it rejected (removals included), so those
  names are held "at an unknown version": the next push of the type carries
  them (or their removal) again, as a SotW push of the full set would (a
  listener whose port was taken binds once it is free).
- On ADS, types go out in `cache.PUSH_ORDER`, and the removals of
  ClusterLoadAssignments and clusters travel in separate responses after all
  the others (make before break: routes move away before clusters go).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from legation.cache import CLUSTER, ENDPOINT, VIRTUAL_HOST, Resource, Snapshot, wire
from legation.xds.aliases import index_of
from legation.xds.protocol import Outgoing, ProtocolBase, TypeStateBase, eds_names, pushed_types
from legation.xds.subscription import NAMESPACED_TYPES, Subscription, namespace_of

# Responses awaiting an ACK that we remember per type (to name the version a
# NACK rejected); a client that never answers cannot grow this further.
_MAX_IN_FLIGHT = 64

def _by_name(r: Resource) -> str:
    return r.name


# On ADS, removals of these types travel after every other update, in this order.
_REMOVED_LAST = (ENDPOINT, CLUSTER)


class Held:
    """name -> version a client holds; copy on write. After a first send of a type's whole
    shared set, it is the base's own `versions()` mapping, one dict for every stream that
    got that set (a thousand proxies held a thousand equal dicts, ~36 KB each per 1,000
    resources); the first change to a stream's holdings gives it a copy of its own."""

    __slots__ = ("_data", "_shared")

    def __init__(self, data: dict[str, str] | None = None) -> None:
        self._data: Mapping[str, str] = data if data is not None else {}
        self._shared = False

    def adopt(self, shared: Mapping[str, str]) -> None:
        """Hold exactly `shared`, which is never written to."""
        self._data, self._shared = shared, True

    def _own(self) -> dict[str, str]:
        if self._shared:
            self._data, self._shared = dict(self._data), False
        return self._data  # type: ignore[return-value]

    def get(self, name: str) -> str | None:
        return self._data.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setitem__(self, name: str, version: str) -> None:
        self._own()[name] = version

    def __delitem__(self, name: str) -> None:
        del self._own()[name]

    def pop(self, name: str, default: str | None = None) -> str | None:
        if name not in self._data:
            return default
        return self._own().pop(name)


@dataclass(slots=True)
class _TypeState(TypeStateBase):
    has: Held = field(default_factory=Held)  # name -> version the client holds
    # On-demand VHDS (aliases.py): alias -> the virtual host it resolved to ("" none),
    # and the aliases whose answer is still to be sent.
    aliases: dict[str, str] = field(default_factory=dict)
    announce: set[str] = field(default_factory=set)
    # nonce -> (system version, names of the resources it carried, names it removed)
    in_flight: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = field(
        default_factory=dict)


@dataclass(slots=True)
class DeltaProtocol(ProtocolBase):
    states: dict[str, _TypeState] = field(default_factory=dict)

    def on_request(self, request: Any) -> bool:
        type_url = self.gate(request.type_url)
        if type_url is None:
            return False
        st = self.states.get(type_url)
        first = st is None
        if st is None:
            st = self.states[type_url] = _TypeState(Subscription(type_url, table=self.env.names))
            st.has = Held(dict(request.initial_resource_versions))
            self.subscribed(type_url)
        released = False
        if request.response_nonce:
            self._acknowledge(st, request)
            if type_url == CLUSTER:
                released = self.clusters_answered(request.response_nonce)
        change = st.sub.update_delta(
            request.resource_names_subscribe, request.resource_names_unsubscribe, first=first
        )
        if change:
            st.diffed = ""
        namespaced = type_url in NAMESPACED_TYPES and bool(change.added or change.removed)
        if change.wildcard_changed or namespaced:
            st.last = None  # what the subscription covers moved: compare everything
        if namespaced and not first:  # what is under a namespace is dropped or re-sent
            moved = change.added | change.removed
            for name in [n for n in st.has if namespace_of(n) in moved]:
                del st.has[name]
        for name in change.removed:
            st.has.pop(name, None)
            st.aliases.pop(name, None)
            st.announce.discard(name)
        for name in change.added:
            if not first:
                st.has.pop(name, None)  # newly requested names must be sent again
            st.reconsider(name)
            if type_url == VIRTUAL_HOST:  # maybe an alias: answered by name, once more
                st.aliases.pop(name, None)
                st.announce.add(name)
        if first or change.added or (change.wildcard_changed and st.sub.wildcard):
            st.answer = True
        return st.answer or released

    def _acknowledge(self, st: _TypeState, request: Any) -> None:
        nonce = request.response_nonce
        sent = st.in_flight.get(nonce)
        version = sent[0] if sent is not None else None
        if sent is not None:
            # Responses are answered in order: this one and all older ones are settled.
            for settled in list(st.in_flight):
                del st.in_flight[settled]
                if settled == nonce:
                    break
        if request.HasField("error_detail"):
            for name in (*sent[1], *sent[2]) if sent is not None else ():
                # Rejected, removals included: the client keeps what it had, at a
                # version we do not know (or nothing; a removal of a name it lacks is
                # harmless). The next push of the type sends or removes it again (not
                # now: no NACK loop).
                st.has[name] = ""
                st.reconsider(name)
            self.record_nack(
                st.sub.type_url,
                version=version or "",
                nonce=nonce,
                detail=request.error_detail.message,
            )
        elif version is not None:
            self.record_ack(st.sub.type_url, version)

    def responses(self, snapshot: Snapshot) -> Iterator[Outgoing]:
        deferred: list[tuple[_TypeState, list[str]]] = []
        for type_url in pushed_types(self.env, self.states):
            if self.holding(type_url):
                continue  # new clusters are warming (protocol.ProtocolBase)
            st = self.states[type_url]
            if not st.fresh(snapshot):
                continue
            if type_url in snapshot.by_name:
                updates, gone, answers = self._diff_by_name(st, snapshot)
                if updates or gone or answers or st.answer:
                    yield self._emit(st, snapshot, updates, gone, answers=answers)
                continue
            updates, gone, whole = self._diff(st, snapshot)
            if self.env.aggregated and type_url in _REMOVED_LAST:
                if gone:
                    deferred.append((st, gone))
                gone = []
            if updates or gone or st.answer:
                yield self._emit(st, snapshot, updates, gone, whole=whole)
        # Make before break: clusters (and their endpoints) leave only once
        # listeners and routes no longer lead to them.
        for st, gone in sorted(deferred, key=lambda d: _REMOVED_LAST.index(d[0].sub.type_url)):
            if self.warming:  # routes have not moved away yet: remove in a later pass
                for name in gone:
                    st.reconsider(name)
                st.diffed = ""
                continue
            yield self._emit(st, snapshot, [], gone)

    def _diff(
        self, st: _TypeState, snapshot: Snapshot
    ) -> tuple[list[Resource], list[str], bool]:
        """(resources the client lacks or holds at another version, names it holds that
        are gone, whether that is the snapshot's whole set of the type), looking only at
        the names that changed when that is known."""
        resources = snapshot.of_type(st.sub.type_url)
        names = st.candidates(snapshot)
        if names is None:
            for name in [n for n in st.has if not st.sub.covers(n)]:
                del st.has[name]  # not subscribed (any more): not ours to track
            selected = st.sub.select(resources)
            has = st.has
            if not has and len(selected) == len(resources):  # a first send of everything
                return list(resources.values()), [], True
            updates = [r for n, r in selected.items() if has.get(n) != r.version]
            updates.sort(key=_by_name)  # usually few: sort what goes, not what is
            return updates, sorted(n for n in has if n not in selected), False
        updates, gone = [], []
        for n in sorted(names):
            if not st.sub.covers(n):
                st.has.pop(n, None)
                continue
            r = resources.get(n)
            if r is None:
                if n in st.has:
                    gone.append(n)
            elif st.has.get(n) != r.version:
                updates.append(r)
        return updates, gone, False

    def _diff_by_name(
        self, st: _TypeState, snapshot: Snapshot
    ) -> tuple[list[Resource], list[str], dict[str, list[str]]]:
        """On demand (`Snapshot.by_name`): the client gets the snapshot's own resources if
        it subscribes to the wildcard, and the others only by name, or for virtual hosts
        by alias. (updates, removals, resource name -> the aliases it answers; "" keys
        the aliases nothing answers). The named set is small: every diff is whole."""
        type_url = st.sub.type_url
        resources = snapshot.of_type(type_url)
        st.last, st.resend = snapshot, set()
        names = st.sub.names
        wanted = {n for n in snapshot.extra.get(type_url, {}) if st.sub.wildcard}
        wanted.update(n for n in names if n in resources)
        answers: dict[str, list[str]] = {}
        if type_url == VIRTUAL_HOST:
            index = None
            for alias in sorted(names):
                if alias in resources:
                    continue
                target = st.aliases.get(alias)
                if not target or target not in resources:  # new, unresolved or gone
                    index = index or index_of(resources)
                    target = index.resolve(alias)
                    if st.aliases.get(alias) != target:
                        st.announce.add(alias)
                    st.aliases[alias] = target
                if target:
                    wanted.add(target)
                if alias in st.announce:
                    answers.setdefault(target, []).append(alias)
            st.announce.clear()
        updates = [resources[n] for n in sorted(wanted)
                   if st.has.get(n) != resources[n].version or n in answers]
        gone = sorted(n for n in st.has if n not in wanted)
        return updates, gone, answers

    def _emit(
        self,
        st: _TypeState,
        snapshot: Snapshot,
        updates: list[Resource],
        gone: list[str],
        *,
        whole: bool = False,
        answers: dict[str, list[str]] | None = None,
    ) -> Outgoing:
        type_url = st.sub.type_url
        added = type_url == CLUSTER and any(r.name not in st.has for r in updates)
        if type_url == CLUSTER and self.env.aggregated:
            self._rewarm_endpoints([r for r in updates if r.name in st.has])
        shared = snapshot.versions_of(type_url) if whole and not st.has else None
        if shared is not None:
            st.has.adopt(shared)  # exactly the whole set: every such stream shares one dict
        else:
            for r in updates:
                st.has[r.name] = r.version
        for name in gone:
            st.has.pop(name, None)
        version = snapshot.version(type_url)
        nonce = self.next_nonce()
        if added:
            self.clusters_added(nonce)
        st.in_flight[nonce] = (version, tuple(r.name for r in updates), tuple(gone))
        if len(st.in_flight) > _MAX_IN_FLIGHT:
            del st.in_flight[next(iter(st.in_flight))]
        st.answer = False
        entries = (snapshot.entries(type_url, snapshot.of_type(type_url), "delta") if whole
                   else [r.delta_entry for r in updates])
        if answers:  # on-demand VHDS: say which aliases each virtual host answers
            entries = [wire.alias_entry(r.name, r.version, type_url, r.body, answers[r.name])
                       if r.name in answers else r.delta_entry for r in updates]
            entries += [wire.alias_entry(alias, "", type_url, b"", [alias])
                        for alias in answers.get("", ())]
        message = wire.delta_response(version, type_url, nonce, entries, gone)
        return Outgoing(type_url, version, nonce, message, snapshot)

    def _rewarm_endpoints(self, updated_clusters: list[Resource]) -> None:
        """Re-send the CLAs of updated EDS clusters (see protocol.eds_names)."""
        eds = self.states.get(ENDPOINT)
        if eds is None or not updated_clusters:
            return
        for name in eds_names(updated_clusters):
            if name in eds.has:
                eds.has[name] = ""  # held at a version we will not trust: send it again
                eds.reconsider(name)
                eds.diffed = ""
