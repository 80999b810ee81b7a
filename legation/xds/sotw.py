"""State-of-the-world xDS: what one SotW stream has sent, and what to send next.

A synchronous state machine driven by `stream.py`: `on_request` digests a
DiscoveryRequest, `responses(snapshot)` yields the DiscoveryResponses the
client lacks. Per type it remembers the latest nonce and what the client was
last given (`sent`), so the writer can always diff the newest snapshot
against it: an unsent older snapshot is simply superseded.

Rules (xDS spec, docs/root/api-docs/xds_protocol.rst):

- CDS and LDS responses carry the complete subscribed set ("Grouping
  Resources into Responses"); EDS, RDS and SDS responses carry only what
  changed or was newly requested, so an endpoint change re-sends only the
  ClusterLoadAssignments that changed.
- version_info is the snapshot's content version of the type.
- A request whose response_nonce is not the latest one sent for its type is
  stale and ignored ("Resource updates": the server should not respond to a
  stale nonce).
- error_detail means NACK: recorded, and the rejected config is not sent
  again; the next snapshot change is pushed as usual.
- A change of the subscribed names is answered, and newly subscribed names
  are sent even if they were sent before ("How the client specifies what
  resources to return").
- On ADS, types go out in `cache.PUSH_ORDER`; clusters that disappear go
  last: first CDS with the new set plus the removed clusters, then EDS, LDS,
  RDS, SDS, then CDS with the exact set ("Eventual consistency
  considerations", make before break).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from legation.cache import CLUSTER, ENDPOINT, WILDCARD_TYPES, Resource, Snapshot, version_of, wire
from legation.xds.protocol import (
    Outgoing,
    ProtocolBase,
    TypeStateBase,
    eds_names,
    pushed_types,
    same_content,
)
from legation.xds.subscription import Subscription


@dataclass(slots=True)
class _TypeState(TypeStateBase):
    nonce: str = ""  # latest nonce sent: any other nonce is stale
    version: str = ""  # version_info sent with `nonce`
    # CDS/LDS: what the client was given, the mapping last sent, possibly the
    # snapshot's own (`shared`): copied before any change (`writable`). Other types
    # need none: see `_changes`.
    sent: Mapping[str, Resource] = field(default_factory=dict)
    shared: bool = False
    client_version: str = ""  # version_info of the first request: a reconnecting client
    started: bool = False  # anything sent for this type on this stream

    def writable(self) -> dict[str, Resource]:
        if self.shared or not isinstance(self.sent, dict):
            self.sent, self.shared = dict(self.sent), False
        return self.sent


@dataclass(slots=True)
class SotwProtocol(ProtocolBase):
    states: dict[str, _TypeState] = field(default_factory=dict)

    def on_request(self, request: Any) -> bool:
        type_url = self.gate(request.type_url)
        if type_url is None:
            return False
        st = self.states.get(type_url)
        if st is None:
            st = self.states[type_url] = _TypeState(Subscription(type_url, table=self.env.names))
            self.subscribed(type_url)
        nonce = request.response_nonce
        released = type_url == CLUSTER and self.clusters_answered(nonce)
        if nonce and st.nonce and nonce != st.nonce:
            # Stale: it answers a response we have since superseded (xDS spec,
            # "Resource updates"). Its names will be restated by a later request.
            self.env.log.debug("xds.stale_nonce", type_url=type_url, nonce=nonce, latest=st.nonce)
            return released
        if request.HasField("error_detail"):
            # The version_info of a NACK is the client's previous good version;
            # the rejected one is what we sent with this nonce.
            self.record_nack(
                type_url, version=st.version, nonce=nonce, detail=request.error_detail.message
            )
        elif nonce:
            self.record_ack(type_url, request.version_info)
        else:
            self._restart(st, request.version_info)
        change = st.sub.update_sotw(request.resource_names)
        if st.last is not None:  # before the first diff there is nothing to look again at
            for name in change.added:
                st.reconsider(name)  # newly requested names must be sent again
        for name in change.removed:
            if name in st.sent:
                st.writable().pop(name)
        if change.wildcard_changed:
            st.last = None  # what the subscription covers moved: compare everything
        if change:
            st.answer = True
        return st.answer or released

    def _restart(self, st: _TypeState, version_info: str) -> None:
        """A request without a nonce starts (or restarts) the type on this stream."""
        st.answer = True
        if st.started:
            st.sent, st.shared, st.last = {}, False, None
        elif version_info:
            st.client_version = version_info
            self.record_ack(st.sub.type_url, version_info)

    def responses(self, snapshot: Snapshot) -> Iterator[Outgoing]:
        final_clusters: Mapping[str, Resource] | None = None
        for type_url in pushed_types(self.env, self.states):
            if self.holding(type_url):
                continue  # new clusters are warming (protocol.ProtocolBase)
            st = self.states[type_url]
            if not st.fresh(snapshot):
                continue
            if type_url in WILDCARD_TYPES:
                out, final = self._whole(st, snapshot)
                if type_url == CLUSTER and self.env.aggregated:
                    final_clusters = final
            else:
                out = self._changes(st, snapshot)
            if out is not None:
                yield out
        if final_clusters is not None:
            st = self.states[CLUSTER]
            if self.warming:  # routes have not moved away yet: remove in a later pass
                for name in st.sent:
                    if name not in final_clusters:
                        st.reconsider(name)
                st.diffed = ""
                return
            # Make before break: only now drop the clusters that were removed.
            yield self._emit(st, snapshot, final_clusters, snapshot.version(CLUSTER), None)

    def _changes(self, st: _TypeState, snapshot: Snapshot) -> Outgoing | None:
        """EDS, RDS, SDS: only what changed or was newly requested (SotW allows it).

        After each diff the client holds what the diffed snapshot has of its names
        (what was not sent had not changed), so the previous snapshot, shared
        with every other stream, stands for what it holds: no per-stream copy."""
        type_url = st.sub.type_url
        resources = snapshot.of_type(type_url)
        before = st.last.of_type(type_url) if st.last is not None else {}
        forced = set(st.resend)
        names = st.candidates(snapshot)
        if names is None and not before and not forced:  # a first send: all it asked for
            selected = st.sub.select(resources)
            whole = resources if len(selected) == len(resources) else selected
            if whole or st.answer:
                return self._emit(st, snapshot, whole, snapshot.version(type_url), None)
            return None
        if names is None:  # compare every subscribed name
            names = set(st.sub.select(resources))
        news = [
            r for n in sorted(names)
            if (r := resources.get(n)) is not None and st.sub.covers(n)
            and (n in forced or (old := before.get(n)) is None or old.version != r.version)
        ]
        if not news and not st.answer:
            return None
        return self._emit(st, snapshot, {r.name: r for r in news}, snapshot.version(type_url),
                          None)

    def _whole(
        self, st: _TypeState, snapshot: Snapshot
    ) -> tuple[Outgoing | None, Mapping[str, Resource] | None]:
        """CDS, LDS: the complete subscribed set. On ADS, clusters that disappear stay in
        a first response and go in a second one after the other types (make before
        break): (response now, exact set to send after the other types)."""
        type_url = st.sub.type_url
        resources = snapshot.of_type(type_url)
        whole = st.sub.wildcard and not st.sub.names  # selected is all of `resources`
        selected = resources if whole else st.sub.select(resources)
        if self._up_to_date(st, snapshot, selected):
            return None, None
        names = st.candidates(snapshot)
        version = snapshot.version(type_url)
        removed: dict[str, Resource] = {}
        if type_url == CLUSTER and self.env.aggregated:
            # Clusters gone from the snapshot; the client's own unsubscriptions are not
            # ours to delay.
            maybe = st.sent if names is None else names
            removed = {n: st.sent[n] for n in maybe
                       if n in st.sent and n not in selected and st.sub.covers(n)}
        if removed:
            union = {**removed, **selected}
            if not st.answer and same_content(st.sent, union):
                return None, selected
            return self._emit(st, snapshot, union, version_of(union), names), selected
        if not st.answer and (st.version == version if whole
                              else same_content(st.sent, selected)):
            return None, None
        return self._emit(st, snapshot, selected, version, names), None

    def _up_to_date(
        self, st: _TypeState, snapshot: Snapshot, selected: Mapping[str, Resource]
    ) -> bool:
        """A reconnecting wildcard client already at this version needs nothing.

        xDS spec, "ACK/NACK and resource type instance version": not resending
        is safe for CDS and LDS when the only subscription is the wildcard.
        """
        client_version, st.client_version = st.client_version, ""
        if st.started or not client_version or client_version != snapshot.version(st.sub.type_url):
            return False
        if not st.sub.wildcard or st.sub.names:
            return False
        st.sent, st.shared = selected, True
        st.version, st.answer, st.last = client_version, False, snapshot
        return True

    def _emit(
        self,
        st: _TypeState,
        snapshot: Snapshot,
        resources: Mapping[str, Resource],
        version: str,
        candidates: set[str] | None,
    ) -> Outgoing:
        type_url = st.sub.type_url
        added = type_url == CLUSTER and not resources.keys() <= st.sent.keys()
        if type_url == CLUSTER and self.env.aggregated:
            self._rewarm_endpoints(st, resources, candidates)
        if type_url in WILDCARD_TYPES:
            st.sent, st.shared = resources, True
        nonce = self.next_nonce()
        if added:
            self.clusters_added(nonce)
        st.nonce, st.version, st.answer, st.started = nonce, version, False, True
        message = wire.sotw_response(version, type_url, nonce,
                                     snapshot.entries(type_url, resources, "sotw"))
        return Outgoing(type_url, version, nonce, message, snapshot)

    def _rewarm_endpoints(
        self, st: _TypeState, clusters: Mapping[str, Resource], candidates: set[str] | None
    ) -> None:
        """Re-send the CLAs of updated EDS clusters (see protocol.eds_names)."""
        eds = self.states.get(ENDPOINT)
        if eds is None:
            return
        sent = st.sent
        maybe = clusters if candidates is None else candidates
        updated = [r for n in maybe if (r := clusters.get(n)) is not None
                   and (old := sent.get(n)) is not None and old.version != r.version]
        for name in eds_names(updated):
            if eds.started and eds.sub.covers(name):
                eds.reconsider(name)
                eds.diffed = ""
