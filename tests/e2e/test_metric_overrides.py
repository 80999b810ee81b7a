"""Issue 12 (part): Telemetry metric overrides reach a real Envoy through its bootstrap.

Envoy reads its stats settings at start, so `legation bootstrap` writes a
workload's disabled metrics into `stats_config.stats_matcher`: the frontend's
Telemetry disables REQUEST_COUNT on its client side, and its sidecar, started
from that bootstrap, exports no outbound request counts (so no
`istio_requests_total{reporter="source"}` for it) while its request durations
and catalog's server-side counts stay.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import yaml

from .harness import MeshLab, eventually, request

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

TELEMETRY = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: frontend}}
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      disabled: true
    - match: {metric: REQUEST_DURATION}
      tagOverrides: {team: {value: "'storefront'"}}
"""


async def test_a_disabled_metric_is_not_exported(mesh: MeshLab) -> None:
    mesh.service("catalog")
    catalog_w = await mesh.backend("catalog-v1", app="catalog")
    frontend = mesh.client("frontend")
    mesh.write("telemetry.yaml", TELEMETRY)
    await mesh.control_plane.start()
    await mesh.start_sidecar(catalog_w)
    host, port = mesh.control_plane.xds
    done = subprocess.run(
        [sys.executable, "-m", "legation", "bootstrap", "--config-dir", str(mesh.config_dir),
         "--workload", "frontend", "--namespace", "shop", "--xds-address", f"{host}:{port}",
         "--admin-address", f"{frontend.address}:15000"],
        capture_output=True, text=True, timeout=60, check=True)
    boot: dict[str, Any] = yaml.safe_load(done.stdout)
    frontend.envoy = await mesh.envoys.start("frontend", boot)

    async def served() -> bool:
        resp = await request(frontend.address, 15001, "GET", "/",
                             headers={"host": "catalog.shop:9080"}, timeout=5)
        return resp.status == 200

    await eventually(served, what="frontend -> catalog")
    for _ in range(5):
        await request(frontend.address, 15001, "GET", "/",
                      headers={"host": "catalog.shop:9080"}, timeout=5)
    text = (await frontend.envoy.admin_get("/stats/prometheus")).text()
    outbound = [x for x in text.splitlines() if 'envoy_cluster_name="outbound|9080||catalog' in x]
    assert outbound, text[:2000]
    assert not [x for x in outbound if x.startswith("envoy_cluster_upstream_rq{")]
    durations = [x for x in outbound if x.startswith("envoy_cluster_upstream_rq_time_count{")]
    assert durations and all('team="storefront"' in x for x in durations)  # a literal tag
    assert catalog_w.envoy is not None
    served_text = (await catalog_w.envoy.admin_get("/stats/prometheus")).text()
    assert [x for x in served_text.splitlines() if x.startswith("envoy_cluster_upstream_rq{")
            and 'envoy_cluster_name="inbound|' in x]
