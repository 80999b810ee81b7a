"""What the telemetry e2e tests share (test_tracing.py, test_otel_access_logs.py,
test_access_logs.py): a collector served by grpcio on a loopback address of the test,
the catalog/frontend mesh, and one request from frontend's sidecar to catalog's."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from .harness import MeshLab, MeshWorkload, eventually, request


@contextlib.asynccontextmanager
async def otlp_collector(
    mesh: MeshLab, service: str, export: Callable[[Any, Any], Awaitable[Any]],
    request_type: Any, response_type: Any,
) -> AsyncIterator[tuple[str, int]]:
    """`service`/Export answered by `export`, on a loopback address of the mesh: (host,
    port) while the block runs."""
    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, {
        "Export": grpc.unary_unary_rpc_method_handler(
            export, request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString)}),))
    host = mesh.loopback.next()
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    try:
        yield host, port
    finally:
        await server.stop(None)


async def one_request(mesh: MeshLab, config: str, collector: tuple[str, int],
                      path: str) -> None:
    """Start the mesh (catalog-v1 behind a service, frontend as client) with `config`
    (COLLECTOR_HOST and COLLECTOR_PORT filled in), wait for every proxy, GET `path`."""
    host, port = collector
    mesh.write("telemetry.yaml", config.replace("COLLECTOR_HOST", host)
               .replace("COLLECTOR_PORT", str(port)))
    client = await catalog_and_frontend(mesh)
    resp = await request(client.address, 15001, "GET", path,
                         headers={"host": "catalog.shop:9080"}, timeout=5)
    assert resp.status == 200


async def catalog_and_frontend(mesh: MeshLab) -> MeshWorkload:
    """Service catalog with catalog-v1 behind it and the client frontend, every sidecar
    started and in sync; frontend."""
    mesh.service("catalog")
    await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("frontend")
    await mesh.start()
    await eventually(lambda: mesh.converged([w.node_id for w in mesh.workloads.values()]),
                     what="every proxy ACKed")
    return client
