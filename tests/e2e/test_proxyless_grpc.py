"""Proxyless gRPC (issue 16, client side): grpcio's own xDS client against Legation.

No Envoy: `legation bootstrap --grpc` writes the client's GRPC_XDS_BOOTSTRAP, the
client (a subprocess: gRPC reads its bootstrap once per process) dials
`xds:///catalog...:7070`, and two grpcio servers answer `/echo.Echo/Who` with
their names. One VirtualService steers it: a 90/10 split, a header route, a
fault abort; a weight change reaches a channel that stays open.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc import aio

from legation.demo.controlplane import metric_sum

from .harness import MeshLab

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

CLIENT = Path(__file__).parent / "data" / "xds_grpc_client.py"
SERVER = Path(__file__).parent / "data" / "xds_grpc_server.py"
PORT = 7070


async def _echo_server(address: str, name: str, port: int = PORT) -> aio.Server:
    async def who(request: bytes, context: Any) -> bytes:
        return name.encode()

    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", {
        "Who": grpc.unary_unary_rpc_method_handler(
            who, request_deserializer=None, response_serializer=None)}),))
    server.add_insecure_port(f"{address}:{port}")
    await server.start()
    return server


def _mesh(mesh: MeshLab, v1: str, v2: str, client: str) -> None:
    mesh.write("catalog.yaml", f"""\
apiVersion: v1
kind: Service
metadata: {{name: catalog, namespace: shop}}
spec:
  selector: {{app: catalog}}
  ports: [{{name: grpc, port: {PORT}}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: catalog-v1, namespace: shop}}
spec: {{address: {v1}, labels: {{app: catalog, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: catalog-v2, namespace: shop}}
spec: {{address: {v2}, labels: {{app: catalog, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: web, namespace: shop}}
spec: {{address: {client}, labels: {{app: web}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: catalog, namespace: shop}}
spec:
  host: catalog
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")


def _routes(v1: int, v2: int) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: catalog, namespace: shop}}
spec:
  hosts: [catalog]
  http:
  - match: [{{headers: {{x-canary: {{exact: "true"}}}}}}]
    route: [{{destination: {{host: catalog, subset: v2}}}}]
  - match: [{{headers: {{x-fail: {{exact: "true"}}}}}}]
    fault: {{abort: {{httpStatus: 503, percentage: {{value: 100}}}}}}
    route: [{{destination: {{host: catalog, subset: v1}}}}]
  - route:
    - {{destination: {{host: catalog, subset: v1}}, weight: {v1}}}
    - {{destination: {{host: catalog, subset: v2}}, weight: {v2}}}
"""


def _bootstrap(mesh: MeshLab, path: Path, workload: str = "web") -> None:
    host, port = mesh.control_plane.xds
    subprocess.run([sys.executable, "-m", "legation", "bootstrap", "--grpc",
                    "--config-dir", str(mesh.config_dir), "--workload", workload,
                    "--namespace", "shop", "--xds-address", f"{host}:{port}",
                    "-o", str(path)], check=True, timeout=60)


async def _calls(bootstrap: Path, target: str, n: int, *metadata: str,
                 interval: float = 0.0) -> list[dict[str, Any]]:
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(bootstrap)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), target, str(n), str(interval), *metadata,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    return [json.loads(line) for line in out.decode().splitlines()]


def _who(results: list[dict[str, Any]]) -> Counter[str]:
    return Counter(r.get("who") or r["code"] for r in results)


async def test_grpc_clients_take_routes_splits_and_faults(mesh: MeshLab,
                                                          tmp_path: Path) -> None:
    v1, v2, client = mesh.loopback.next(), mesh.loopback.next(), mesh.loopback.next()
    servers = [await _echo_server(v1, "catalog-v1"), await _echo_server(v2, "catalog-v2")]
    try:
        _mesh(mesh, v1, v2, client)
        mesh.write("routes.yaml", _routes(90, 10))
        await mesh.control_plane.start()
        boot = tmp_path / "grpc-bootstrap.json"
        _bootstrap(mesh, boot)
        assert json.loads(boot.read_text())["node"]["metadata"]["GENERATOR"] == "grpc"

        # FQDN and short-name targets, the 90/10 split
        first = await _calls(boot, f"catalog.shop.svc.cluster.local:{PORT}", 200)
        split = _who(first)
        assert set(split) == {"catalog-v1", "catalog-v2"}, split
        assert 150 <= split["catalog-v1"] <= 195, split  # 180 expected
        short = _who(await _calls(boot, f"catalog:{PORT}", 20))
        assert set(short) <= {"catalog-v1", "catalog-v2"} and sum(short.values()) == 20, short
        assert _who(await _calls(boot, f"catalog.shop:{PORT}", 10)) .keys() <= {
            "catalog-v1", "catalog-v2"}
        # a header route, and a fault abort (503 -> UNAVAILABLE)
        assert _who(await _calls(boot, f"catalog:{PORT}", 20, "x-canary=true")) == Counter(
            {"catalog-v2": 20})
        assert _who(await _calls(boot, f"catalog:{PORT}", 10, "x-fail=true")) == Counter(
            {"UNAVAILABLE": 10})

        # a weight change reaches a channel that stays open
        env_calls = asyncio.create_task(_calls(boot, f"catalog:{PORT}", 300, interval=0.03))
        await asyncio.sleep(2.0)
        mesh.write("routes.yaml", _routes(0, 100))
        live = await env_calls
        last = _who(live[-60:])
        assert last == Counter({"catalog-v2": 60}), last
        assert _who(live[:30])["catalog-v1"] > 0
        # gRPC validates every resource of a response: nothing it was sent was refused
        assert metric_sum(await mesh.control_plane.metrics(), "legation_xds_nacks_total") == 0
    finally:
        for s in servers:
            await s.stop(None)



DENY_MALLORY = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-mallory, namespace: shop}
spec:
  selector: {matchLabels: {app: catalog}}
  action: DENY
  rules:
  - when: [{key: "request.headers[x-user]", values: [mallory]}]
"""


async def test_an_xds_grpc_server_enforces_authorization_policy(mesh: MeshLab,
                                                              tmp_path: Path) -> None:
    """gRFC A36 / A41: the server takes its listener, RBAC included, from Legation."""
    v1, v2, client = mesh.loopback.next(), mesh.loopback.next(), mesh.loopback.next()
    _mesh(mesh, v1, v2, client)
    mesh.write("routes.yaml", _routes(100, 0))
    mesh.write("authz.yaml", DENY_MALLORY)
    await mesh.control_plane.start()
    server_boot, client_boot = tmp_path / "server.json", tmp_path / "client.json"
    _bootstrap(mesh, server_boot, "catalog-v1")
    _bootstrap(mesh, client_boot)
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(server_boot)}
    server = await asyncio.create_subprocess_exec(
        sys.executable, str(SERVER), v1, str(PORT), "xds-catalog-v1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env)
    try:
        assert server.stdout is not None
        assert (await asyncio.wait_for(server.stdout.readline(), 30)).strip() == b"started"
        allowed = _who(await _calls(client_boot, f"catalog:{PORT}", 5, "x-user=alice"))
        assert allowed == Counter({"xds-catalog-v1": 5}), allowed
        denied = _who(await _calls(client_boot, f"catalog:{PORT}", 5, "x-user=mallory"))
        assert denied == Counter({"PERMISSION_DENIED": 5}), denied
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), 10)
