"""Issue 12 (part): Prometheus metrics from real Envoys, and Istio's series from them.

Sidecars bootstrapped as `legation bootstrap` writes them serve Prometheus text
on `<workload address>:15090/stats/prometheus`, their per-destination request
stats tagged from Legation's cluster names and the node. A real Prometheus
(Debian's `prometheus`, installed by `make install` when missing) scrapes them
and evaluates deploy/prometheus/istio-rules.yaml into `istio_requests_total`,
on both the client (reporter=source) and the server (reporter=destination).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import pytest

from legation.demo.http import request

from .harness import MeshLab, eventually

pytestmark = [pytest.mark.parametrize("delta", [False], ids=["sotw"]),
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="no prometheus binary (make install adds Debian's)")]
RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "istio-rules.yaml"
N = 12
CATALOG = "catalog.shop.svc.cluster.local"


async def _query(address: str, promql: str) -> list[dict[str, Any]]:
    host, port = address.split(":")
    resp = await request(host, int(port), "GET",
                         "/api/v1/query?query=" + urllib.parse.quote(promql), timeout=5)
    if resp.status == 503:  # still starting
        return []
    body = json.loads(resp.body)
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


async def test_sidecars_serve_tagged_stats_and_prometheus_derives_istio_series(
    mesh: MeshLab, tmp_path: Path
) -> None:
    mesh.admin_port = 15000  # fixed: each sidecar gets its 15090 listener in front of it
    mesh.service("catalog")
    backend = await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("frontend")
    await mesh.start()
    await eventually(lambda: mesh.converged([client.node_id, backend.node_id]),
                     what="the sidecars ACKed")
    for _ in range(N):
        resp = await request(client.address, 15001, "GET", "/",
                             headers={"host": "catalog.shop:9080"}, timeout=5)
        assert resp.status == 200

    stats = await request(client.address, 15090, "GET", "/stats/prometheus", timeout=5)
    assert stats.status == 200
    [line] = [x for x in stats.text().splitlines()
              if x.startswith("envoy_cluster_upstream_rq{") and f'"{CATALOG}"' in x
              and 'envoy_response_code="200"' in x]
    print("\n" + line)
    for label in ('source_workload="frontend"', 'source_namespace="shop"',
                  f'destination_service="{CATALOG}"', 'destination_port="9080"',
                  'destination_subset=""',
                  f'envoy_cluster_name="outbound|9080||{CATALOG}"'):
        assert label in line
    assert line.endswith(f" {N}")

    address = f"{mesh.loopback.next()}:9090"
    rules = tmp_path / "istio-rules.yaml"
    rules.write_text(RULES.read_text().replace("interval: 5s", "interval: 1s"))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{rules}]\n"
        "scrape_configs:\n- job_name: envoy-stats\n  metrics_path: /stats/prometheus\n"
        f"  static_configs: [{{targets: ['{client.address}:15090', "
        f"'{backend.address}:15090']}}]\n")
    log = (tmp_path / "prometheus.log").open("w")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address={address}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=log)
    try:
        async def source() -> list[dict[str, Any]] | None:
            found = await _query(address, f'istio_requests_total{{reporter="source",'
                                 f'destination_service="{CATALOG}",response_code="200"}}')
            return found if found and float(found[0]["value"][1]) == N else None

        [series] = await eventually(source, timeout=30, what="istio_requests_total, source")
        print(series)
        assert series["metric"]["source_workload"] == "frontend"
        assert series["metric"]["destination_port"] == "9080"

        async def destination() -> list[dict[str, Any]] | None:
            found = await _query(address, 'istio_requests_total{reporter="destination",'
                                 'destination_workload="catalog-v1",response_code="200"}')
            return found if found and float(found[0]["value"][1]) == N else None

        [series] = await eventually(destination, timeout=30,
                                    what="istio_requests_total, destination")
        assert series["metric"]["destination_namespace"] == "shop"
        assert "source_workload" not in series["metric"]  # the proxy is the destination here
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
