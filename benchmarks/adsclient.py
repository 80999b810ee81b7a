"""Lightweight ADS clients for the fan-out benchmark: many streams in one process.

Each `AdsClient` is one ADS stream (SotW or delta) of one node that behaves,
as far as the server can tell, like Envoy: it subscribes to CDS and LDS
(wildcard), then to the ClusterLoadAssignments of the EDS clusters it was
given and to the RouteConfigurations its listeners' HTTP connection managers
name, keeps those subscriptions current as clusters and listeners come and
go, and ACKs every response. On delta, once a route configuration says its
virtual hosts come over VHDS, it opens the VirtualHost subscription with an
empty request, as Envoy 1.40 does. It never NACKs and applies nothing.

A client process (`main`) runs a slice of the fleet over its own gRPC
connections (one per `streams_per_channel` streams) and obeys the
orchestrator's commands on a multiprocessing pipe. While recording, every
response is noted: when it arrived, when its ACK had been written, its size
and resource counts. Times are `time.monotonic()`: CLOCK_MONOTONIC is
system-wide on Linux, so they compare with the server process's clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from grpc import aio

from benchmarks.stats import cpu_seconds
from legation.cache import CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST, short_name
from legation.logs import configure

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST)


def types_for(delta: bool) -> tuple[str, ...]:
    """The types a client of that variant holds (VHDS is delta only)."""
    return TYPES if delta else tuple(t for t in TYPES if t != VIRTUAL_HOST)
_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),  # a connection of its own, as each Envoy has
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
]

# node index, type (cds, eds, ...), version, received at, ACK written at, bytes, resources, removed
Record = tuple[int, str, str, float, float, int, int, int]


class Names:
    """What clients need from Clusters and Listeners, parsed once per distinct body."""

    def __init__(self) -> None:
        self._eds: dict[bytes, tuple[str, ...]] = {}
        self._rds: dict[bytes, tuple[str, ...]] = {}
        self._vhds: dict[bytes, bool] = {}

    def vhds(self, body: bytes) -> bool:
        """Whether a RouteConfiguration's virtual hosts come over VHDS."""
        found = self._vhds.get(body)
        if found is None:
            found = self._vhds[body] = route_pb2.RouteConfiguration.FromString(body).HasField(
                "vhds")
        return found

    def eds(self, body: bytes) -> tuple[str, ...]:
        """The ClusterLoadAssignment an EDS cluster reads (empty for other clusters)."""
        found = self._eds.get(body)
        if found is None:
            c = cluster_pb2.Cluster.FromString(body)
            eds = c.WhichOneof("cluster_discovery_type") == "type" and c.type == c.EDS
            found = (c.eds_cluster_config.service_name or c.name,) if eds else ()
            self._eds[body] = found
        return found

    def routes(self, body: bytes) -> tuple[str, ...]:
        """The RouteConfigurations a listener's HTTP connection managers fetch over RDS."""
        found = self._rds.get(body)
        if found is None:
            listener = listener_pb2.Listener.FromString(body)
            chains = [*listener.filter_chains]
            if listener.HasField("default_filter_chain"):
                chains.append(listener.default_filter_chain)
            names = set()
            for chain in chains:
                for f in chain.filters:
                    if f.typed_config.type_url == _HCM:
                        hcm = hcm_pb2.HttpConnectionManager.FromString(f.typed_config.value)
                        if hcm.HasField("rds"):
                            names.add(hcm.rds.route_config_name)
            found = self._rds[body] = tuple(sorted(names))
        return found


@dataclass(slots=True)
class Board:
    """What the streams of one client process share."""

    names: Names
    recording: bool = False
    records: list[Record] = field(default_factory=list)
    ready: int = 0  # streams that have ACKed every type at least once
    errors: list[str] = field(default_factory=list)


class AdsClient:
    """One node's ADS stream: subscribe like Envoy, ACK everything, note what arrives."""

    def __init__(self, index: int, node_id: str, board: Board, *, delta: bool) -> None:
        self.index = index
        self.node_id = node_id
        self.board = board
        self.delta = delta
        self.versions: dict[str, str] = {}
        self.nonces: dict[str, str] = {}
        self.subscribed: dict[str, tuple[str, ...]] = {ENDPOINT: (), ROUTE: ()}
        self.held: dict[str, dict[str, tuple[str, ...]]] = {CLUSTER: {}, LISTENER: {}}
        self.acked: set[str] = set()
        self._node_sent = False
        # delta: name -> version of every resource held, per type (initial_resource_versions)
        self.have: dict[str, dict[str, str]] = {t: {} for t in TYPES}
        self.resumed = False
        self.types = types_for(delta)
        self.vhds = False  # the VirtualHost subscription is open

    def resume(self) -> AdsClient:
        """The same node reconnecting, as Envoy does: it states what it holds (SotW
        version_info, delta initial_resource_versions) and its subscriptions."""
        new = AdsClient(self.index, self.node_id, self.board, delta=self.delta)
        new.versions, new.subscribed, new.held = self.versions, self.subscribed, self.held
        new.vhds = self.vhds
        new.have, new.resumed = self.have, True
        return new

    def _first_types(self) -> tuple[str, ...]:
        if not self.resumed:
            return (CLUSTER, LISTENER)
        return tuple(t for t in self.types if t != VIRTUAL_HOST or self.vhds)

    async def run(self, stub: Any) -> None:
        method = stub.DeltaAggregatedResources if self.delta else stub.StreamAggregatedResources
        call = method()
        try:
            for type_url in self._first_types():
                await call.write(self._request(type_url, version=self.versions.get(type_url, ""),
                                              first=True))
            while (resp := await call.read()) is not aio.EOF:
                received = time.monotonic()
                ack, more = self._digest(resp)
                await call.write(ack)
                # noted before anything else is awaited: once the server has seen this ACK
                # the orchestrator may collect the records at the next await
                self._note(resp, received, time.monotonic())
                for req in more:
                    await call.write(req)
            self.board.errors.append(f"{self.node_id}: the server ended the stream")
        except grpc.RpcError as err:
            self.board.errors.append(f"{self.node_id}: {err.code().name}: {err.details()}")
        finally:
            call.cancel()

    def _digest(self, resp: Any) -> tuple[Any, list[Any]]:
        """Remember the response; its ACK and any subscription changes it implies."""
        type_url = resp.type_url
        self.nonces[type_url] = resp.nonce
        self.versions[type_url] = resp.system_version_info if self.delta else resp.version_info
        more: list[Any] = []
        if self.delta and type_url not in (CLUSTER, LISTENER):
            have = self.have[type_url]
            for r in resp.resources:
                have[r.name] = r.version
            for name in resp.removed_resources:
                have.pop(name, None)
            if type_url == ROUTE and not self.vhds and any(
                    self.board.names.vhds(r.resource.value) for r in resp.resources):
                self.vhds = True
                more.append(self._request(VIRTUAL_HOST, first=True))
        if type_url in (CLUSTER, LISTENER):
            derive = self.board.names.eds if type_url == CLUSTER else self.board.names.routes
            target = ENDPOINT if type_url == CLUSTER else ROUTE
            more = self._resubscribe(target, self._wanted(type_url, resp, derive))
        if self.delta:
            ack = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url, response_nonce=resp.nonce)
        else:
            ack = self._request(type_url, version=resp.version_info, nonce=resp.nonce)
        return ack, more

    def _wanted(
        self, type_url: str, resp: Any, derive: Callable[[bytes], tuple[str, ...]]
    ) -> set[str]:
        if not self.delta:  # SotW CDS/LDS responses carry the complete set
            return {n for packed in resp.resources for n in derive(packed.value)}
        have = self.have[type_url]
        for r in resp.resources:
            have[r.name] = r.version
        for name in resp.removed_resources:
            have.pop(name, None)
        held = self.held[type_url]
        for r in resp.resources:
            held[r.name] = derive(r.resource.value)
        for name in resp.removed_resources:
            held.pop(name, None)
        return {n for names in held.values() for n in names}

    def _resubscribe(self, type_url: str, wanted: set[str]) -> list[Any]:
        before = set(self.subscribed[type_url])
        if wanted == before:
            return []
        self.subscribed[type_url] = tuple(sorted(wanted))
        if not self.delta:
            return [self._request(type_url, version=self.versions.get(type_url, ""),
                                  nonce=self.nonces.get(type_url, ""))]
        for name in before - wanted:
            self.have[type_url].pop(name, None)
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=sorted(wanted - before),
            resource_names_unsubscribe=sorted(before - wanted),
        )
        self._node(req)
        return [req]

    def _request(self, type_url: str, *, version: str = "", nonce: str = "",
                 first: bool = False) -> Any:
        """A first request (wildcard for CDS/LDS), or a SotW ACK / subscription update."""
        req: Any
        if self.delta:
            req = discovery_pb2.DeltaDiscoveryRequest(type_url=type_url)
            if first and self.resumed and type_url != VIRTUAL_HOST:
                # (Envoy states no VHDS holdings: they are not subscribed by name)
                req.initial_resource_versions.update(self.have[type_url])
                req.resource_names_subscribe.extend(self.subscribed.get(type_url, ()))
        else:
            req = discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                version_info=version,
                response_nonce=nonce,
                resource_names=self.subscribed.get(type_url, ()),
            )
        self._node(req)
        return req

    def _node(self, req: Any) -> None:
        if not self._node_sent:  # like Envoy's set_node_on_first_message_only
            req.node.id = self.node_id
            req.node.cluster = "bench"
            self._node_sent = True

    def _note(self, resp: Any, received: float, acked: float) -> None:
        type_url = resp.type_url
        if type_url not in self.acked:
            self.acked.add(type_url)
            if len(self.acked) == len(self.types) - (0 if self.vhds or not self.delta else 1):
                self.board.ready += 1
        if self.board.recording:
            removed = len(resp.removed_resources) if self.delta else 0
            self.board.records.append((
                self.index, short_name(type_url), self.versions[type_url], received, acked,
                resp.ByteSize(), len(resp.resources), removed,
            ))  # fmt: skip


# -- the client process -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientPlan:
    target: str  # host:port of the xDS server
    nodes: tuple[tuple[int, str], ...]  # (index, node id)
    delta: bool
    streams_per_channel: int


def main(conn: Connection, plan: ClientPlan) -> None:
    """Process entry point (multiprocessing, spawn)."""
    configure(level="error")
    asyncio.run(_main(conn, plan))


@dataclass(slots=True)
class Fleet:
    """A client process's streams and their connections; `reconnect` drops them all and
    dials again at once (a control-plane restart, a network blip)."""

    plan: ClientPlan
    clients: list[AdsClient]
    channels: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        per = max(1, self.plan.streams_per_channel)
        self.channels = [
            aio.insecure_channel(self.plan.target, options=_CHANNEL_OPTIONS)
            for _ in range(math.ceil(len(self.clients) / per))
        ]
        stubs = [ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch) for ch in self.channels]
        self.tasks = [asyncio.create_task(c.run(stubs[k // per]))
                      for k, c in enumerate(self.clients)]

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for ch in self.channels:
            await ch.close()

    async def reconnect(self) -> None:
        await self.stop()
        self.clients = [c.resume() for c in self.clients]
        self.start()


async def _main(conn: Connection, plan: ClientPlan) -> None:
    board = Board(Names())
    fleet = Fleet(plan, [AdsClient(i, node, board, delta=plan.delta) for i, node in plan.nodes])
    fleet.start()
    try:
        await _obey(conn, board, fleet)
    finally:
        await fleet.stop()
        conn.send({"stopped": True, "cpu_s": cpu_seconds()})


async def _obey(conn: Connection, board: Board, fleet: Fleet) -> None:
    """Answer the orchestrator's commands until told to stop."""
    streams = len(fleet.clients)
    while True:
        command, arg = await asyncio.to_thread(conn.recv)
        if command == "ready":
            deadline = time.monotonic() + float(arg)
            while board.ready + len(board.errors) < streams and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            conn.send({"ready": board.ready, "errors": len(board.errors),
                       "error_examples": board.errors[:5], "cpu_s": cpu_seconds()})
        elif command == "record":
            board.records, board.recording = [], True
            conn.send({"cpu_s": cpu_seconds()})
        elif command == "reconnect":
            await fleet.reconnect()
            conn.send({"cpu_s": cpu_seconds()})
        elif command == "collect":
            records, board.records, board.recording = board.records, [], False
            conn.send({"records": records, "errors": len(board.errors),
                       "error_examples": board.errors[:5], "cpu_s": cpu_seconds()})
        else:
            return
