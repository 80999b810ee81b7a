"""Issue 12 (part): access logs from real Envoys, configured by Istio's Telemetry API.

MeshConfig (the `istio` ConfigMap in the config directory) names a file
access log provider; a mesh-wide Telemetry (root namespace) turns it on, and
both sides of a request write a line (the client's outbound, the server's
inbound); a namespace Telemetry with `disabled: true` turns it off live, and a
workload-scoped one with a CEL filter keeps only the lines it matches.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from .harness import MeshLab, eventually, request
from .otlp import catalog_and_frontend

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

MESH_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: file-json
      envoyFileAccessLog:
        path: LOG_PATH
        logFormat:
          labels:
            code: "%RESPONSE_CODE%"
            path: "%REQ(:PATH)%"
            authority: "%REQ(:AUTHORITY)%"
            cluster: "%UPSTREAM_CLUSTER_RAW%"
"""
MESH_WIDE = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: file-json}]}]
"""
NAMESPACE_OFF = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: quiet, namespace: shop}
spec:
  accessLogging: [{disabled: true}]
"""
ONLY_ERRORS = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: errors-only, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  accessLogging:
  - providers: [{name: file-json}]
    filter: {expression: "response.code >= 400"}
"""


def _lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_telemetry_turns_access_logs_on_off_and_filters_them(
    mesh: MeshLab, tmp_path: Path
) -> None:
    log = tmp_path / "access.log"
    mesh.write("mesh-config.yaml", MESH_CONFIG.replace("LOG_PATH", str(log)))
    mesh.write("telemetry-mesh.yaml", MESH_WIDE)
    client = await catalog_and_frontend(mesh)

    async def get(path: str) -> int:
        resp = await request(client.address, 15001, "GET", path,
                             headers={"host": "catalog.shop:9080"}, timeout=5)
        return resp.status

    assert await get("/logged") == 200
    lines = await eventually(lambda: _async_lines(log, 2), what="two access log lines")
    assert {(x["path"], x["code"]) for x in lines} == {("/logged", 200)}  # a number in JSON
    clusters = {x["cluster"] for x in lines}
    assert clusters == {"outbound|9080||catalog.shop.svc.cluster.local", "inbound|9080||"}

    # A namespace Telemetry turns it off, live.
    before = await mesh.converged([w.node_id for w in mesh.workloads.values()])
    mesh.write("telemetry-quiet.yaml", NAMESPACE_OFF)
    await eventually(lambda: _moved(mesh, before), what="the Telemetry ACKed")
    # A pooled connection of the replaced listener serves one more request before it
    # closes (drain strategy immediate, drain time 1 s): past that, every request is new.
    await asyncio.sleep(1.2)
    assert await get("/silent") == 200
    await asyncio.sleep(0.6)  # past the Envoys' access log flush interval (250 ms)
    assert not [x for x in _lines(log) if x["path"] == "/silent"]

    # A workload Telemetry with a CEL filter: frontend logs only failures again.
    before = await mesh.converged([w.node_id for w in mesh.workloads.values()])
    mesh.write("telemetry-errors.yaml", ONLY_ERRORS)
    await eventually(lambda: _moved(mesh, before), what="the filter ACKed")
    await asyncio.sleep(1.2)
    assert await get("/fine") == 200
    assert await get("/broken?status=503") == 503
    await eventually(lambda: _has(log, "/broken?status=503"), what="the failure logged")
    await asyncio.sleep(0.6)
    logged = {x["path"] for x in _lines(log)}
    assert "/fine" not in logged and "/silent" not in logged


async def _async_lines(path: Path, n: int) -> list[dict[str, Any]] | None:
    found = _lines(path)
    return found if len(found) >= n else None


async def _has(path: Path, request_path: str) -> bool:
    return any(x["path"] == request_path for x in _lines(path))


async def _moved(mesh: MeshLab, before: dict[str, dict[str, str]] | None) -> bool:
    assert before is not None
    now = await mesh.converged(list(before))
    return now is not None and now != before
