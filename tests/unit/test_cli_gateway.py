"""`legation bootstrap` for a gateway workload: Istio's router node id, no extra flag."""

from __future__ import annotations

import stat
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


def test_a_bootstrap_file_with_a_credential_is_private(tmp_path: Path) -> None:
    """Issue 13: the file holds a bearer token that gets the workload's private key."""
    out = tmp_path / "boot.yaml"
    out.write_text("old\n")
    out.chmod(0o644)  # an existing file is made private too
    assert main(["bootstrap", "--config-dir", str(CASE), "--workload", "client",
                 "--namespace", "shop", "--ca-dir", str(tmp_path / "ca"), "--xds-tls",
                 "--admin-address", "127.0.0.1:15000", "-o", str(out)]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert "authorization" in out.read_text()
