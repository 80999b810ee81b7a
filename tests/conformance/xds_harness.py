"""Conformance harness: small real Envoy resources, a controllable mesh, xDS clients.

The clients speak to a real XdsServer over a real grpc.aio channel. Each
client stream has a pump task reading responses into a queue (cancelling a
grpc.aio `read()` would cancel the whole call), so a test can wait for the
next response or assert that none comes within a short bounded window.
Every wait has an `asyncio.timeout` hang guard.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import duration_pb2
from google.rpc import status_pb2
from grpc import aio

from legation.cache import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    VIRTUAL_HOST,
    ProxyError,
    Resource,
    Snapshot,
    SnapshotBase,
    SnapshotCache,
)

HANG_GUARD_S = 5.0  # generous: only there so a broken server fails instead of hanging
SILENCE_S = 0.3  # "no response arrives": a protocol check, not a performance threshold

# -- small real Envoy resources -------------------------------------------------


def cluster(name: str, *, timeout_s: int = 1) -> Resource:
    """An EDS cluster over ADS; `timeout_s` varies its content."""
    msg = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        connect_timeout=duration_pb2.Duration(seconds=timeout_s),
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3,
            )
        ),
    )
    return Resource.of(CLUSTER, name, msg)


def cla(name: str, *ports: int) -> Resource:
    """A ClusterLoadAssignment with one endpoint per port on 127.0.0.1."""
    endpoints = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=p)
                )
            )
        )
        for p in ports
    ]
    msg = endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name,
        endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=endpoints)],
    )
    return Resource.of(ENDPOINT, name, msg)


def listener(name: str, port: int) -> Resource:
    msg = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="127.0.0.1", port_value=port)
        ),
    )
    return Resource.of(LISTENER, name, msg)


def route(name: str, cluster_name: str) -> Resource:
    msg = route_pb2.RouteConfiguration(
        name=name,
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name="all",
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(cluster=cluster_name),
                    )
                ],
            )
        ],
    )
    return Resource.of(ROUTE, name, msg)


def virtual_host(name: str, domain: str, cluster_name: str) -> Resource:
    """A VHDS resource: `name` is ``<route configuration>/<host>``, also its own name."""
    msg = route_components_pb2.VirtualHost(
        name=name,
        domains=[domain],
        routes=[
            route_components_pb2.Route(
                match=route_components_pb2.RouteMatch(prefix="/"),
                route=route_components_pb2.RouteAction(cluster=cluster_name),
            )
        ],
    )
    return Resource.of(VIRTUAL_HOST, name, msg)


def secret(name: str, pem: str) -> Resource:
    msg = secret_pb2.Secret(
        name=name,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_string=pem)
        ),
    )
    return Resource.of(SECRET, name, msg)


def names_of(response: Any) -> list[str]:
    """Resource names in a SotW or delta response, in order."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [r.name for r in response.resources]
    out = []
    for packed in response.resources:
        kinds = {
            CLUSTER: cluster_pb2.Cluster,
            ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
            LISTENER: listener_pb2.Listener,
            ROUTE: route_pb2.RouteConfiguration,
            SECRET: secret_pb2.Secret,
        }
        msg = kinds[packed.type_url]()
        assert packed.Unpack(msg)
        out.append(msg.cluster_name if packed.type_url == ENDPOINT else msg.name)
    return out


# -- the mesh the server serves ----------------------------------------------------


class Mesh:
    """What the control plane would build: the test decides each node's snapshot."""

    def __init__(self, cache: SnapshotCache) -> None:
        self.cache = cache
        self.entries: dict[str, Snapshot | ProxyError] = {}
        cache.on_connect = self._on_connect

    def _on_connect(self, node_id: str) -> None:
        entry = self.entries.get(node_id) or ProxyError(
            "NOT_FOUND", f"node {node_id!r} names no workload in the mesh"
        )
        self.cache.set(node_id, entry)

    def publish(
        self,
        node_id: str,
        resources: Iterable[Resource],
        *,
        changed_at: float = 0.0,
        shared: Iterable[Resource] = (),
        by_name: frozenset[str] = frozenset(),
    ) -> Snapshot:
        """`shared`: resources of the snapshot's base (what `by_name` types hold back)."""
        base = SnapshotBase.of(shared)
        snap = Snapshot.build(resources, changed_at=changed_at, base=base, by_name=by_name)
        self.entries[node_id] = snap
        self.cache.set(node_id, snap)
        return snap

    def fail(self, node_id: str, code: str, message: str) -> None:
        self.entries[node_id] = ProxyError(code, message)
        self.cache.set(node_id, self.entries[node_id])


# -- clients ------------------------------------------------------------------------


class _Stream:
    """A client stream with a pump task; responses and the final status queue up."""

    def __init__(self, call: Any, node_id: str) -> None:
        self.call = call
        self.node_id = node_id
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._sent_node = False

    async def pump(self) -> None:
        try:
            while (msg := await self.call.read()) is not aio.EOF:
                self._inbox.put_nowait(msg)
            self._inbox.put_nowait(aio.EOF)
        except grpc.RpcError as err:
            self._inbox.put_nowait(err)
        except asyncio.CancelledError:
            if not self.call.cancelled():
                raise  # we were cancelled, not the call

    async def recv(self) -> Any:
        async with asyncio.timeout(HANG_GUARD_S):
            item = await self._inbox.get()
        if isinstance(item, grpc.RpcError) or item is aio.EOF:
            raise AssertionError(f"stream ended instead of answering: {item!r}")
        return item

    async def recv_all(self, count: int) -> list[Any]:
        return [await self.recv() for _ in range(count)]

    async def expect_silence(self, within: float = SILENCE_S) -> None:
        """Assert that no response arrives within `within` seconds."""
        try:
            async with asyncio.timeout(within):
                item = await self._inbox.get()
        except TimeoutError:
            return
        raise AssertionError(f"expected no response, got {item!r}")

    async def status(self) -> tuple[grpc.StatusCode, str]:
        """Wait for the stream to end; its gRPC status code and details."""
        async with asyncio.timeout(HANG_GUARD_S):
            while True:
                item = await self._inbox.get()
                if isinstance(item, aio.AioRpcError):
                    return item.code(), item.details() or ""
                if item is aio.EOF:
                    code = await self.call.code()
                    return code, await self.call.details()

    def _node(self, request: Any) -> None:
        if not self._sent_node:
            request.node.id = self.node_id
            request.node.cluster = "conformance"
            self._sent_node = True

    async def _write(self, request: Any) -> None:
        async with asyncio.timeout(HANG_GUARD_S):
            await self.call.write(request)


class SotwClient(_Stream):
    async def request(
        self,
        type_url: str,
        names: Iterable[str] = (),
        *,
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
        self._node(req)
        await self._write(req)

    async def ack(self, response: Any, names: Iterable[str] = ()) -> None:
        await self.request(
            response.type_url, names, version=response.version_info, nonce=response.nonce
        )

    async def nack(
        self, response: Any, message: str, *, good_version: str, names: Iterable[str] = ()
    ) -> None:
        await self.request(
            response.type_url, names, version=good_version, nonce=response.nonce, error=message
        )


class DeltaClient(_Stream):
    async def request(
        self,
        type_url: str,
        *,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        nonce: str = "",
        error: str | None = None,
        initial: Mapping[str, str] | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=dict(initial or {}),
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
        self._node(req)
        await self._write(req)

    async def ack(self, response: Any) -> None:
        await self.request(response.type_url, nonce=response.nonce)

    async def nack(self, response: Any, message: str) -> None:
        await self.request(response.type_url, nonce=response.nonce, error=message)


@contextlib.asynccontextmanager
async def open_stream(
    method: Callable[[], Any], node_id: str, client: type[_Stream]
) -> AsyncIterator[Any]:
    """Open a stream-stream call with `method` and run its pump until the block ends."""
    call = method()
    stream = client(call, node_id)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(stream.pump())
        try:
            yield stream
        finally:
            call.cancel()


async def eventually(predicate: Callable[[], bool], what: str) -> None:
    """Wait (hang-guarded) until the server's side effects make `predicate` true."""
    try:
        async with asyncio.timeout(HANG_GUARD_S):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"never happened: {what}") from None
