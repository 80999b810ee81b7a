"""`legation bootstrap` for a gateway workload: Istio's router node id, no extra flag."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from legation.cli import main

CASE = Path(__file__).resolve().parents[1] / "golden" / "gateway-ingress"


@pytest.mark.parametrize(("workload", "namespace", "node_id"), [
    ("ingress-1", "edge", "router~10.0.1.1~ingress-1.edge~edge.svc.cluster.local"),
    ("client", "shop", "client.shop"),  # no Gateway selects it: a sidecar
])
def test_a_workload_a_gateway_selects_gets_a_router_node_id(
    tmp_path: Path, workload: str, namespace: str, node_id: str
) -> None:
    out = tmp_path / "boot.yaml"
    assert main(["bootstrap", "--config-dir", str(CASE), "--workload", workload,
                 "--namespace", namespace, "--admin-address", "127.0.0.1:15000",
                 "-o", str(out)]) == 0
    assert yaml.safe_load(out.read_text())["node"]["id"] == node_id
