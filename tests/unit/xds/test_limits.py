"""What a hostile or broken xDS client costs, over a real gRPC channel (issue 13).

A real `XdsServer` that requires credentials; the abusive clients never have
one. What is asserted is what the client is told, what the server keeps and
what it logs: bounded whatever the client sends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from grpc import aio

from legation.cache import CLUSTER, Snapshot, SnapshotCache
from legation.metrics import Metrics
from legation.security import TokenAuthority
from legation.xds import XdsServer
from legation.xds.auth import NodeAuthenticator, NodeClaim
from legation.xds.limits import (
    MAX_DETAIL_CHARS,
    MAX_NAMES_PER_REQUEST,
    MAX_NODE_BYTES,
    MAX_NODE_ID,
    clip,
    peer_host,
)
from legation.xds.status import StatusBoard

GUARD_S = 10.0


class Lab:
    def __init__(self, server: XdsServer, status: StatusBoard) -> None:
        self.server, self.status = server, status

    async def stream(self, *requests: Any, delta: bool = False,
                     read: bool = True) -> tuple[grpc.StatusCode, str, list[Any]]:
        async with aio.insecure_channel(f"127.0.0.1:{self.server.port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            call = (stub.DeltaAggregatedResources() if delta
                    else stub.StreamAggregatedResources())
            got: list[Any] = []
            async with asyncio.timeout(GUARD_S):
                for r in requests:
                    await call.write(r)
                if read:
                    try:
                        while (msg := await call.read()) is not aio.EOF:
                            got.append(msg)
                            if len(got) >= len(requests):
                                break
                    except aio.AioRpcError:
                        pass
                if not got or not read:
                    return await call.code(), await call.details() or "", got
                call.cancel()
            return grpc.StatusCode.CANCELLED, "", got


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    cache, status = SnapshotCache(), StatusBoard()
    snapshot = Snapshot.build([])
    cache.on_connect = lambda node: asyncio.get_running_loop().call_soon(cache.set, node, snapshot)

    def lookup(node_id: str) -> NodeClaim | None:
        name, _, ns = node_id.rpartition(".")
        return NodeClaim(namespace=ns, workload=name, service_account="sa") if name else None

    tokens = TokenAuthority.load_or_create(tmp_path, "cluster.local")
    auth = NodeAuthenticator(tokens, lookup, required=False, listener="test")
    server = XdsServer(cache, status, Metrics(), address="127.0.0.1:0", authenticate=auth)
    await server.start()
    try:
        yield Lab(server, status)
    finally:
        await server.stop(grace=0.1)


def request(node_id: str = "web.shop", **fields: Any) -> Any:
    r = discovery_pb2.DiscoveryRequest(type_url=CLUSTER, **fields)
    r.node.id = node_id
    return r


async def test_a_huge_node_id_is_refused_before_anything_and_logged_clipped(lab: Lab) -> None:
    huge = "x" * 1_500_000  # under gRPC's 2 MiB message limit, far over ours
    with structlog.testing.capture_logs() as logs:
        outcomes = [await lab.stream(request(huge)) for _ in range(5)]
    assert {(code, details) for code, details, _ in outcomes} == {
        (grpc.StatusCode.INVALID_ARGUMENT,
         f"node.id is {len(huge)} bytes; at most {MAX_NODE_ID} are accepted")}
    rejected = [e for e in logs if e["event"] == "xds.stream_rejected"]
    assert len(rejected) == 1  # once, not per attempt
    assert sum(len(repr(e)) for e in logs) < 2000  # nothing of the id's size is logged
    assert lab.status.all() == []  # never became a proxy


async def test_huge_node_metadata_is_refused(lab: Lab) -> None:
    r = request()
    r.node.metadata.fields["blob"].string_value = "y" * (MAX_NODE_BYTES + 1)
    code, details, _ = await lab.stream(r)
    assert code is grpc.StatusCode.INVALID_ARGUMENT and "at most 65536" in details


async def test_too_many_names_in_a_request_end_the_stream(lab: Lab) -> None:
    names = [f"c{i}" for i in range(MAX_NAMES_PER_REQUEST + 1)]
    code, details, _ = await lab.stream(request(resource_names=names))
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "at most 50000" in details
    d = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER, resource_names_subscribe=names)
    d.node.id = "web.shop"
    code, _, _ = await lab.stream(d, delta=True)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_message_over_2_mib_is_refused_by_grpc(lab: Lab) -> None:
    r = request()
    r.error_detail.message = "z" * (3 * 1024 * 1024)
    code, _, _ = await lab.stream(r)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_a_nack_detail_is_kept_and_logged_clipped_and_repeats_are_not_logged(
    lab: Lab,
) -> None:
    first = request()
    detail = "bad config " * 100_000  # 1.1 MB: under gRPC's limit, far over ours
    with structlog.testing.capture_logs() as logs:
        async with aio.insecure_channel(f"127.0.0.1:{lab.server.port}") as channel:
            call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel) \
                .StreamAggregatedResources()
            async with asyncio.timeout(GUARD_S):
                await call.write(first)
                response = await call.read()
                for _ in range(10):
                    nack = request(version_info="", response_nonce=response.nonce)
                    nack.error_detail.message = detail
                    await call.write(nack)

                async def recorded() -> None:
                    while not [s for s in lab.status.all() if s.types.get("cds") is not None
                               and s.types["cds"].last_nack is not None]:
                        await asyncio.sleep(0.02)

                await recorded()
                await asyncio.sleep(0.2)  # the other nine arrive
                (st,) = lab.status.all()
                kept = st.types["cds"].last_nack.message
                call.cancel()
    assert kept == clip(detail, MAX_DETAIL_CHARS) and len(kept) < MAX_DETAIL_CHARS + 100
    nacks = [e for e in logs if e["event"] == "xds.nack"]
    assert len(nacks) == 1 and len(nacks[0]["detail"]) < MAX_DETAIL_CHARS + 100


def test_peer_hosts() -> None:
    assert peer_host("ipv4:127.0.0.1:5555") == "127.0.0.1"
    assert peer_host("ipv6:[::1]:5555") == "::1"
    assert peer_host("unix:/tmp/s") == "unix:/tmp/s"
