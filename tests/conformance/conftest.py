"""Fixtures: a running XdsServer on 127.0.0.1:0, its cache, status, metrics, a channel."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from envoy.service.cluster.v3 import cds_pb2_grpc
from envoy.service.discovery.v3 import ads_pb2_grpc
from grpc import aio

from legation.cache import SnapshotCache
from legation.metrics import Metrics
from legation.xds import XdsServer
from legation.xds.status import ProxyStatus, StatusBoard

from .xds_harness import DeltaClient, Mesh, SotwClient, open_stream


@pytest.fixture
def cache() -> SnapshotCache:
    return SnapshotCache()


@pytest.fixture
def mesh(cache: SnapshotCache) -> Mesh:
    return Mesh(cache)


@pytest.fixture
def status() -> StatusBoard:
    return StatusBoard()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
async def server(
    cache: SnapshotCache, mesh: Mesh, status: StatusBoard, metrics: Metrics
) -> AsyncIterator[XdsServer]:
    srv = XdsServer(cache, status, metrics, address="127.0.0.1:0")
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop(grace=0.5)


@pytest.fixture
async def channel(server: XdsServer) -> AsyncIterator[aio.Channel]:
    async with aio.insecure_channel(f"127.0.0.1:{server.port}") as ch:
        yield ch


@pytest.fixture
def ads(channel: aio.Channel) -> Any:
    return ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)


@pytest.fixture
def sotw(ads: Any) -> Callable[[str], Any]:
    """`async with sotw("node.ns") as client:` an ADS state-of-the-world stream."""
    return lambda node_id: open_stream(ads.StreamAggregatedResources, node_id, SotwClient)


@pytest.fixture
def delta(ads: Any) -> Callable[[str], Any]:
    """`async with delta("node.ns") as client:` an ADS delta stream."""
    return lambda node_id: open_stream(ads.DeltaAggregatedResources, node_id, DeltaClient)


@pytest.fixture
def cds(channel: aio.Channel) -> Any:
    return cds_pb2_grpc.ClusterDiscoveryServiceStub(channel)


@pytest.fixture
def proxy_status(status: StatusBoard) -> Callable[[str], ProxyStatus | None]:
    """The StatusBoard entry of a node's (single) open stream, if any."""

    def find(node_id: str) -> ProxyStatus | None:
        entries = [s for s in status.all() if s.node_id == node_id]
        return entries[0] if entries else None

    return find
