"""The SotW and delta stream protocols as state machines, without a network.

A simulated client follows the protocol (subscribes, ACKs or NACKs, changes
its EDS subscription, answers stale nonces, reconnects stating what it holds)
while the "pipeline" publishes random snapshots the way the real one does:
a shared base built from its parent (so streams diff only the names that
changed) plus per-proxy resources, some snapshots superseded before the
stream gets to them. Whatever happened, once the stream has answered the
last snapshot the client holds exactly what a client that only ever saw
that snapshot would hold: the incremental cache delivers what a full
rebuild would, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import structlog
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from legation.cache import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, Resource, Snapshot, SnapshotBase
from legation.metrics import Metrics
from legation.xds.delta import DeltaProtocol
from legation.xds.protocol import StreamEnv
from legation.xds.sotw import SotwProtocol
from legation.xds.status import StatusBoard
from legation.xds.subscription import NameTable

NAMES = [f"n{i}" for i in range(6)]
TYPES = (CLUSTER, ENDPOINT, LISTENER)


def resource(type_url: str, name: str, version: int) -> Resource:
    """A small real message whose content depends on `version` (odd clusters use EDS,
    so a changed cluster makes the stream re-send its ClusterLoadAssignment)."""
    message: Any
    if type_url == CLUSTER:
        message = cluster_pb2.Cluster(name=name, connect_timeout=Duration(seconds=version + 1))
        if version % 2:
            message.type = cluster_pb2.Cluster.EDS
            message.eds_cluster_config.service_name = name
    elif type_url == ENDPOINT:
        message = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        message.policy.overprovisioning_factor.value = version + 100
    else:
        message = listener_pb2.Listener(name=name, stat_prefix=f"v{version}")
    return Resource.of(type_url, name, message)


def _name(type_url: str, body: bytes) -> str:
    if type_url == CLUSTER:
        return str(cluster_pb2.Cluster.FromString(body).name)
    if type_url == ENDPOINT:
        return str(endpoint_pb2.ClusterLoadAssignment.FromString(body).cluster_name)
    return str(listener_pb2.Listener.FromString(body).name)


# One published state: per type, name -> (version, lives in the shared base?)
State = dict[str, dict[str, tuple[int, bool]]]

states = st.lists(
    st.fixed_dictionaries({
        t: st.dictionaries(st.sampled_from(NAMES), st.tuples(st.integers(0, 3), st.booleans()),
                           max_size=5)
        for t in TYPES
    }),
    min_size=1, max_size=8,
)


@dataclass
class Publisher:
    """Snapshots as the pipeline builds them: a base lineage plus per-proxy resources."""

    base: SnapshotBase | None = None
    last: Snapshot | None = None
    state: State = field(default_factory=dict)
    made: dict[tuple[str, str, int], Resource] = field(default_factory=dict)

    def res(self, t: str, n: str, v: int) -> Resource:  # one object per content, as interned
        return self.made.setdefault((t, n, v), resource(t, n, v))

    def publish(self, state: State) -> Snapshot:
        shared = [self.res(t, n, v) for t, rs in state.items() for n, (v, b) in rs.items() if b]
        own = [self.res(t, n, v) for t, rs in state.items() for n, (v, b) in rs.items() if not b]
        self.state = state
        self.base = SnapshotBase.of(shared, parent=self.base)
        self.last = Snapshot.build(own, base=self.base, prior=self.last)
        return self.last


def env(kind: str) -> StreamEnv:
    _, status = StatusBoard().open("node", kind)
    return StreamEnv(node_id="node", kind=kind, types=PUSH_ORDER, status=status,
                     metrics=Metrics(), log=structlog.get_logger("test"), names=NameTable())


@dataclass
class Client:
    """What a client holds, per type: name -> body."""

    delta: bool
    eds: set[str]
    holds: dict[str, dict[str, bytes]] = field(default_factory=lambda: {t: {} for t in TYPES})
    nonces: dict[str, str] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    resource_versions: dict[str, dict[str, str]] = field(
        default_factory=lambda: {t: {} for t in TYPES})

    def first(self, type_url: str, *, resume: bool) -> Any:
        names = sorted(self.eds) if type_url == ENDPOINT else []
        if self.delta:
            req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url,
                                                      resource_names_subscribe=names)
            if resume:
                req.initial_resource_versions.update(self.resource_versions[type_url])
            return req
        return discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=names,
            version_info=self.versions.get(type_url, "") if resume else "")

    def apply(self, message: bytes, *, nack: bool) -> Any:
        """Digest one response; the ACK (or NACK) to send back."""
        if self.delta:
            d = discovery_pb2.DeltaDiscoveryResponse.FromString(message)
            if not nack:
                held, rv = self.holds[d.type_url], self.resource_versions[d.type_url]
                for r in d.resources:
                    held[r.name], rv[r.name] = r.resource.value, r.version
                for name in d.removed_resources:
                    held.pop(name, None)
                    rv.pop(name, None)
            req = discovery_pb2.DeltaDiscoveryRequest(type_url=d.type_url, response_nonce=d.nonce)
        else:
            s = discovery_pb2.DiscoveryResponse.FromString(message)
            if not nack:
                bodies = {_name(s.type_url, a.value): a.value for a in s.resources}
                if s.type_url in (CLUSTER, LISTENER):
                    self.holds[s.type_url] = bodies
                else:
                    self.holds[s.type_url].update(bodies)
                self.versions[s.type_url] = s.version_info
            req = discovery_pb2.DiscoveryRequest(
                type_url=s.type_url, response_nonce=s.nonce,
                version_info=self.versions.get(s.type_url, ""),
                resource_names=sorted(self.eds) if s.type_url == ENDPOINT else [])
        if nack:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message="rejected"))
        return req

    def resubscribe(self, eds: set[str]) -> Any:
        before, self.eds = self.eds, eds
        for name in before - eds:
            self.holds[ENDPOINT].pop(name, None)  # Envoy drops what it unsubscribes
            self.resource_versions[ENDPOINT].pop(name, None)
        if self.delta:
            return discovery_pb2.DeltaDiscoveryRequest(
                type_url=ENDPOINT, resource_names_subscribe=sorted(eds - before),
                resource_names_unsubscribe=sorted(before - eds))
        return discovery_pb2.DiscoveryRequest(
            type_url=ENDPOINT, resource_names=sorted(eds),
            version_info=self.versions.get(ENDPOINT, ""),
            response_nonce=self.nonces.get(ENDPOINT, ""))


def expected(snapshot: Snapshot, eds: set[str], *, delta: bool, sotw_kept: dict[str, bytes]
             ) -> dict[str, dict[str, bytes]]:
    """What a client that only ever saw `snapshot` holds (SotW keeps EDS resources the
    server no longer has: it never removes non-wildcard resources)."""
    out = {t: {n: r.body for n, r in snapshot.of_type(t).items()} for t in (CLUSTER, LISTENER)}
    eds_now = {n: r.body for n, r in snapshot.of_type(ENDPOINT).items() if n in eds}
    out[ENDPOINT] = eds_now if delta else {**{n: b for n, b in sotw_kept.items() if n in eds},
                                           **eds_now}
    return out


steps = st.lists(
    st.tuples(
        st.sampled_from(["publish", "skip", "subscribe", "nack", "stale", "reconnect"]),
        st.sets(st.sampled_from(NAMES)),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(states=states, steps=steps, delta=st.booleans(), eds=st.sets(st.sampled_from(NAMES)))
def test_the_client_ends_up_holding_the_last_snapshot(
    states: list[State], steps: list[tuple[str, set[str]]], delta: bool, eds: set[str]
) -> None:
    pub = Publisher()
    client = Client(delta=delta, eds=set(eds))
    snapshot = pub.publish(states[0])
    proto: Any = None

    def connect(resume: bool) -> None:
        nonlocal proto
        proto = DeltaProtocol(env("delta-ads")) if delta else SotwProtocol(env("ads"))
        for t in TYPES:
            proto.on_request(client.first(t, resume=resume))

    def drain(*, nack_first: bool = False, stale: bool = False) -> None:
        """Write what the protocol yields and answer each response, passing again while an
        answer asks the writer to run (as stream.py does): an ACK of new clusters releases
        what was held while they warmed."""
        nack = nack_first
        for _ in range(len(TYPES) + 1):
            again = False
            for out in list(proto.responses(snapshot)):
                ack = client.apply(out.message, nack=nack)
                nack = False
                client.nonces[out.type_url] = out.nonce
                if stale:  # an answer to an older response arrives late: ignored
                    old = discovery_pb2.DiscoveryRequest if not delta else None
                    if old is not None:
                        proto.on_request(old(type_url=out.type_url, response_nonce="0"))
                again = proto.on_request(ack) or again
            if not again:
                return

    connect(resume=False)
    drain()
    rest = iter(states[1:])
    for action, names in steps:
        if action in ("publish", "skip"):
            nxt = next(rest, None)
            if nxt is None:
                continue
            snapshot = pub.publish(nxt)
            if action == "publish":
                drain()  # "skip": superseded before the stream got to it
        elif action == "subscribe":
            proto.on_request(client.resubscribe(set(names)))
            drain()
        elif action == "nack":
            nxt = next(rest, None)
            if nxt is not None:
                snapshot = pub.publish(nxt)
                drain(nack_first=True)
        elif action == "stale":
            drain(stale=True)
        elif action == "reconnect":
            connect(resume=True)
            drain()
    for nxt in rest:
        snapshot = pub.publish(nxt)
    if any(action == "nack" for action, _ in steps):
        # A client keeps what it rejected until the resource changes again (no resend
        # of the same content, no NACK loop): change everything once more, and every
        # type's set too.
        snapshot = pub.publish({t: {**{n: (v + 10, b) for n, (v, b) in rs.items()},
                                    "fresh": (0, False)}
                                for t, rs in pub.state.items()})
    drain()
    kept = dict(client.holds[ENDPOINT])
    want = expected(snapshot, client.eds, delta=delta, sotw_kept=kept)
    assert client.holds == want
