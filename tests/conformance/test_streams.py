"""Stream lifecycle and services: refusals, per-type services, health, reflection, hooks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import grpc
import pytest
import structlog
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.listener.v3 import lds_pb2_grpc
from envoy.service.secret.v3 import sds_pb2_grpc
from grpc import aio
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from legation.cache import CLUSTER, ENDPOINT, LISTENER, SECRET, SnapshotCache
from legation.metrics import Metrics
from legation.xds import StreamRejected, XdsServer
from legation.xds.status import ProxyStatus, StatusBoard

from .xds_harness import (
    HANG_GUARD_S,
    DeltaClient,
    Mesh,
    SotwClient,
    cla,
    cluster,
    listener,
    names_of,
    open_stream,
    secret,
)

NODE = "ratings.shop"
StatusOf = Callable[[str], ProxyStatus | None]


async def test_unknown_node_is_refused_with_not_found(
    sotw: Any, metrics: Metrics, cache: SnapshotCache
) -> None:
    with structlog.testing.capture_logs() as logs:
        for _ in range(2):
            async with sotw("ghost.nowhere") as client:
                await client.request(CLUSTER)
                code, details = await client.status()
            assert code == grpc.StatusCode.NOT_FOUND
            assert details == "node 'ghost.nowhere' names no workload in the mesh"
    value = metrics.registry.get_sample_value(
        "legation_xds_rejected_streams_total", {"code": "NOT_FOUND"}
    )
    assert value == 2
    rejected = [e for e in logs if e["event"] == "xds.stream_rejected"]
    assert len(rejected) == 1, "logged once per node id"
    assert rejected[0]["node"] == "ghost.nowhere"
    assert cache.connected() == []


async def test_missing_node_id_is_invalid_argument(sotw: Any, delta: Any) -> None:
    for open_ in (sotw, delta):
        async with open_("") as client:
            await client.request(CLUSTER)
            code, details = await client.status()
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert "node.id" in details


async def test_proxy_error_ends_an_open_stream(mesh: Mesh, sotw: Any) -> None:
    mesh.publish(NODE, [cluster("a")])
    async with sotw(NODE) as client:
        await client.request(CLUSTER)
        await client.recv()
        mesh.fail(NODE, "FAILED_PRECONDITION", "workload ratings.shop has no service account")
        code, details = await client.status()
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details == "workload ratings.shop has no service account"


async def test_per_type_cds_service(mesh: Mesh, cds: Any) -> None:
    snap = mesh.publish(NODE, [cluster("a"), cluster("b"), cla("a", 9001)])
    async with open_stream(cds.StreamClusters, NODE, SotwClient) as client:
        await client.request("")  # per-type services may leave type_url empty
        resp = await client.recv()
        assert (resp.type_url, names_of(resp)) == (CLUSTER, ["a", "b"])
        assert resp.version_info == snap.version(CLUSTER)
        await client.request(ENDPOINT, ["a"], version=resp.version_info, nonce=resp.nonce)
        code, details = await client.status()
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert ENDPOINT in details
    async with open_stream(cds.DeltaClusters, NODE, DeltaClient) as client:
        await client.request(CLUSTER)
        resp = await client.recv()
        assert names_of(resp) == ["a", "b"]


async def test_per_type_delta_lds_sends_removals_at_once(mesh: Mesh, channel: aio.Channel) -> None:
    mesh.publish(NODE, [listener("http", 15001), listener("tcp", 15002)])
    lds = lds_pb2_grpc.ListenerDiscoveryServiceStub(channel)
    async with open_stream(lds.DeltaListeners, NODE, DeltaClient) as client:
        await client.request(LISTENER)
        await client.ack(await client.recv())
        mesh.publish(NODE, [listener("http", 15001), listener("grpc", 15003)])
        resp = await client.recv()
    assert (names_of(resp), list(resp.removed_resources)) == (["grpc"], ["tcp"])


async def test_per_type_sds_service(mesh: Mesh, channel: aio.Channel) -> None:
    mesh.publish(NODE, [secret("default", "-----A-----"), secret("ROOTCA", "-----B-----")])
    sds = sds_pb2_grpc.SecretDiscoveryServiceStub(channel)
    async with open_stream(sds.StreamSecrets, NODE, SotwClient) as client:
        await client.request(SECRET, ["ROOTCA"])
        first = await client.recv()
        assert (first.type_url, names_of(first)) == (SECRET, ["ROOTCA"])
        await client.ack(first, ["ROOTCA"])
        mesh.publish(NODE, [secret("default", "-----C-----"), secret("ROOTCA", "-----B-----")])
        await client.expect_silence()  # only "default" changed, and it is not subscribed
        mesh.publish(NODE, [secret("default", "-----C-----"), secret("ROOTCA", "-----D-----")])
        rotated = await client.recv()
        assert names_of(rotated) == ["ROOTCA"]


async def test_a_busy_port_fails_to_start(
    server: XdsServer, cache: SnapshotCache, status: StatusBoard, metrics: Metrics
) -> None:
    second = XdsServer(cache, status, metrics, address=f"127.0.0.1:{server.port}")
    with pytest.raises(OSError, match="in use"):
        await second.start()
    await second.stop()  # nothing started: a no-op


async def test_fetch_is_unimplemented(cds: Any) -> None:
    with pytest.raises(aio.AioRpcError) as err:
        async with asyncio.timeout(HANG_GUARD_S):
            await cds.FetchClusters(discovery_pb2.DiscoveryRequest(type_url=CLUSTER))
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "StreamClusters" in (err.value.details() or "")


async def test_health_reports_serving(channel: aio.Channel) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    async with asyncio.timeout(HANG_GUARD_S):
        for service in ("", "envoy.service.discovery.v3.AggregatedDiscoveryService"):
            resp = await stub.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_xds_services(channel: aio.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    async with asyncio.timeout(HANG_GUARD_S):
        call = stub.ServerReflectionInfo()
        await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
        resp = await call.read()
        await call.done_writing()
    listed = {s.name for s in resp.list_services_response.service}
    assert {
        "envoy.service.discovery.v3.AggregatedDiscoveryService",
        "envoy.service.cluster.v3.ClusterDiscoveryService",
        "envoy.service.endpoint.v3.EndpointDiscoveryService",
        "envoy.service.listener.v3.ListenerDiscoveryService",
        "envoy.service.route.v3.RouteDiscoveryService",
        "envoy.service.secret.v3.SecretDiscoveryService",
        "grpc.health.v1.Health",
    } <= listed


async def test_unsupported_type_on_ads_is_ignored(mesh: Mesh, sotw: Any) -> None:
    mesh.publish(NODE, [cluster("a")])
    async with sotw(NODE) as client:
        await client.request("type.googleapis.com/envoy.service.runtime.v3.Runtime", ["rtds"])
        await client.expect_silence()
        await client.request(CLUSTER)
        assert names_of(await client.recv()) == ["a"]


async def test_half_close_ends_the_stream_cleanly(
    mesh: Mesh, sotw: Any, metrics: Metrics, proxy_status: StatusOf, cache: SnapshotCache
) -> None:
    mesh.publish(NODE, [cluster("a")])
    async with sotw(NODE) as client:
        await client.request(CLUSTER)
        await client.recv()
        assert metrics.registry.get_sample_value("legation_xds_streams", {"stream": "ads"}) == 1
        gauge = metrics.registry.get_sample_value("legation_xds_connected_proxies", {"type": "cds"})
        assert gauge == 1
        await client.call.done_writing()
        code, _ = await client.status()
    assert code == grpc.StatusCode.OK
    assert metrics.registry.get_sample_value("legation_xds_streams", {"stream": "ads"}) == 0
    assert metrics.registry.get_sample_value("legation_xds_connected_proxies", {"type": "cds"}) == 0
    assert proxy_status(NODE) is None
    assert cache.connected() == []


async def test_many_streams_each_get_every_push(mesh: Mesh, sotw: Any) -> None:
    nodes = [f"w{i}.load" for i in range(10)]
    for node in nodes:
        mesh.publish(node, [cluster("a")])
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(sotw(n)) for n in nodes for _ in range(10)]
        for c in clients:
            await c.request(CLUSTER)
        first = [await c.recv() for c in clients]
        assert {tuple(names_of(r)) for r in first} == {("a",)}
        for c, r in zip(clients, first, strict=True):
            await c.ack(r)
        for node in nodes:
            mesh.publish(node, [cluster("a"), cluster("b")])
        second = [await c.recv() for c in clients]
        assert {tuple(names_of(r)) for r in second} == {("a", "b")}


async def _serve_with_hook(
    cache: SnapshotCache, status: StatusBoard, metrics: Metrics, hook: Any, node_id: str
) -> tuple[grpc.StatusCode, str]:
    """Open one ADS stream for `node_id` on a server with `hook`; how it ended."""
    srv = XdsServer(cache, status, metrics, address="127.0.0.1:0", authenticate=hook)
    await srv.start()
    try:
        async with aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
            ads = ads_pb2_grpc.AggregatedDiscoveryServiceStub(ch)
            async with open_stream(ads.StreamAggregatedResources, node_id, SotwClient) as c:
                await c.request(CLUSTER)
                if node_id == NODE:
                    assert names_of(await c.recv()) == ["a"]
                    return grpc.StatusCode.OK, ""
                ended: tuple[grpc.StatusCode, str] = await c.status()
                return ended
    finally:
        await srv.stop(grace=0.5)


async def test_authenticate_hook_can_refuse_a_stream(
    cache: SnapshotCache, mesh: Mesh, status: StatusBoard, metrics: Metrics
) -> None:
    seen: list[tuple[str, str]] = []

    async def authenticate(context: aio.ServicerContext, node: Any) -> None:
        seen.append((node.id, node.cluster))
        if node.id != NODE:
            raise StreamRejected(grpc.StatusCode.PERMISSION_DENIED, f"{node.id} may not connect")

    mesh.publish(NODE, [cluster("a")])
    mesh.publish("intruder.shop", [cluster("a")])
    assert await _serve_with_hook(cache, status, metrics, authenticate, NODE) == (
        grpc.StatusCode.OK,
        "",
    )
    code, details = await _serve_with_hook(cache, status, metrics, authenticate, "intruder.shop")
    assert (code, details) == (grpc.StatusCode.PERMISSION_DENIED, "intruder.shop may not connect")
    assert seen == [(NODE, "conformance"), ("intruder.shop", "conformance")]
    assert status.all() == []


async def test_a_bug_is_logged_and_reported_as_internal(
    cache: SnapshotCache, mesh: Mesh, status: StatusBoard, metrics: Metrics
) -> None:
    async def broken(context: aio.ServicerContext, node: Any) -> None:
        raise RuntimeError("token cache exploded")

    with structlog.testing.capture_logs() as logs:
        code, details = await _serve_with_hook(cache, status, metrics, broken, "x.shop")
    assert code == grpc.StatusCode.INTERNAL
    assert details == "internal error in the xDS server"
    errors = [e for e in logs if e["event"] == "xds.stream_error"]
    assert len(errors) == 1 and "token cache exploded" in errors[0]["error"]
