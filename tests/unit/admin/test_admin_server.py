"""The admin HTTP server, over a real socket."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import structlog
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from legation.admin import Admin, AdminServer
from legation.cache import CLUSTER, SECRET, ProxyError, Resource, Snapshot
from legation.metrics import Metrics
from legation.model import Diagnostic, SourceRef
from legation.xds.status import StatusBoard


class FakeView:
    def __init__(self) -> None:
        self.is_ready = False
        secret = secret_pb2.Secret(name="default")
        secret.tls_certificate.private_key.inline_string = "KEY-MATERIAL"
        secret.tls_certificate.certificate_chain.inline_string = "CHAIN"
        self.snap = Snapshot.build(
            [
                Resource.of(
                    CLUSTER,
                    "outbound|9080||a.ns.svc.cluster.local",
                    cluster_pb2.Cluster(name="outbound|9080||a.ns.svc.cluster.local"),
                ),
                Resource.of(SECRET, "default", secret),
            ]
        )

    def ready(self) -> tuple[bool, str]:
        return (True, "ready") if self.is_ready else (False, "waiting for the initial config")

    def diagnostics(self) -> list[Diagnostic]:
        ref = SourceRef(kind="Service", namespace="ns", name="a", file="s.yaml", line=3)
        return [
            Diagnostic(
                ref=ref, field="spec.ports[0].port", code="service.port-invalid", message="bad"
            )
        ]

    async def snapshot_for(self, node_id: str) -> Snapshot | ProxyError:
        if node_id == "a.ns":
            return self.snap
        return ProxyError("NOT_FOUND", f"node id {node_id!r} names no workload")


@pytest.fixture
async def admin() -> AsyncIterator[tuple[AdminServer, FakeView, StatusBoard]]:
    view, status = FakeView(), StatusBoard()
    server = AdminServer(Admin(view, status, Metrics()), host="127.0.0.1", port=0)
    await server.start()
    yield server, view, status
    await server.stop()


async def get(port: int, path: str) -> tuple[int, str]:
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # one request per connection (the server keeps connections alive otherwise)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        data = await reader.read()
        writer.close()
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_probes(admin: tuple[AdminServer, FakeView, StatusBoard]) -> None:
    server, view, _ = admin
    assert await get(server.port, "/healthz") == (200, "ok\n")
    status, body = await get(server.port, "/readyz")
    assert status == 503 and "initial config" in body
    view.is_ready = True
    assert (await get(server.port, "/readyz"))[0] == 200


async def test_metrics_are_prometheus_text(
    admin: tuple[AdminServer, FakeView, StatusBoard],
) -> None:
    server, _, _ = admin
    status, body = await get(server.port, "/metrics")
    assert status == 200
    assert "# TYPE legation_xds_pushes_total counter" in body


async def test_proxies_lists_streams(admin: tuple[AdminServer, FakeView, StatusBoard]) -> None:
    server, _, board = admin
    _, st = board.open("a.ns", "ads", "ipv4:127.0.0.1:5555")
    st.type("cds").acked_version = "abc"
    status, body = await get(server.port, "/debug/proxies")
    assert status == 200
    [entry] = json.loads(body)
    assert entry["node"] == "a.ns" and entry["types"]["cds"]["acked_version"] == "abc"


async def test_config_dump_decodes_and_redacts(
    admin: tuple[AdminServer, FakeView, StatusBoard],
) -> None:
    server, _, _ = admin
    status, body = await get(server.port, "/debug/config_dump?proxy=a.ns")
    assert status == 200
    dump = json.loads(body)
    assert [c["name"] for c in dump["resources"]["cds"]] == [
        "outbound|9080||a.ns.svc.cluster.local"
    ]
    assert "KEY-MATERIAL" not in body and "[redacted]" in body
    assert "CHAIN" in body


async def test_config_dump_errors(admin: tuple[AdminServer, FakeView, StatusBoard]) -> None:
    server, _, _ = admin
    assert (await get(server.port, "/debug/config_dump"))[0] == 400
    status, body = await get(server.port, "/debug/config_dump?proxy=ghost.ns")
    assert status == 404 and "ghost.ns" in body


async def test_diagnostics_and_unknown_path(
    admin: tuple[AdminServer, FakeView, StatusBoard],
) -> None:
    server, _, _ = admin
    status, body = await get(server.port, "/debug/diagnostics")
    assert status == 200 and json.loads(body)[0]["code"] == "service.port-invalid"
    status, body = await get(server.port, "/nope")
    assert status == 404 and "/metrics" in body


async def test_oversized_requests_get_a_clean_answer_and_no_traceback(
    admin: tuple[AdminServer, FakeView, StatusBoard],
) -> None:
    """A request line or header over the library's 8 KiB limit is refused with a status
    (issue 13: the hand-written parser closed the connection with an ERROR traceback)."""
    server, _, _ = admin
    with structlog.testing.capture_logs() as logs:
        for head in (f"GET /{'a' * 70_000} HTTP/1.1\r\nHost: x\r\n",
                     f"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {'b' * 70_000}\r\n"):
            async with asyncio.timeout(5):
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write((head + "Connection: close\r\n\r\n").encode())
                await writer.drain()
                data = await reader.read()
                writer.close()
            status = int(data.split(b" ", 2)[1])
            assert 400 <= status < 500, data[:200]
        # a client that sends half a request and goes away
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /metr")
        await writer.drain()
        writer.close()
        assert await get(server.port, "/healthz") == (200, "ok\n")  # still serving
    assert [e for e in logs if e["log_level"] in ("error", "critical")] == []


async def test_keep_alive_serves_several_requests_on_one_connection(
    admin: tuple[AdminServer, FakeView, StatusBoard],
) -> None:
    server, _, _ = admin
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        for _ in range(3):
            writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            assert head.startswith(b"HTTP/1.1 200") and await reader.readexactly(length) == b"ok\n"
        writer.close()
