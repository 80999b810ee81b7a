"""examples/: the shop mesh loads cleanly; the example bootstrap is current and valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

from legation.bootstrap import build_bootstrap, render_bootstrap
from legation.demo.envoy import envoy_binary
from legation.model import MeshSnapshot, Namespace, Service, Workload
from legation.sources.files import load_dirs

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _shop() -> MeshSnapshot:
    result = load_dirs([EXAMPLES / "shop"])
    assert [d.format() for d in result.diagnostics] == []
    return MeshSnapshot(
        namespaces=tuple(o for o in result.objects if isinstance(o, Namespace)),
        services=tuple(o for o in result.objects if isinstance(o, Service)),
        workloads=tuple(o for o in result.objects if isinstance(o, Workload)),
    )


def test_shop_mesh_loads_without_diagnostics() -> None:
    mesh = _shop()

    assert [n.name for n in mesh.namespaces] == ["shop"]
    selected = {w.name: sorted(s.name for s in mesh.services_selecting(w)) for w in mesh.workloads}
    assert selected == {
        "frontend": [],
        "ingress-gateway": [],
        "order-v1": ["order"],
        "catalog-v1": ["catalog"],
        "catalog-v2": ["catalog"],
        "payment-v1": ["payment"],
        "reviewer": [],
    }
    for svc in mesh.services:
        grpc = [("grpc", 7070, 7070)] if svc.name == "catalog" else []
        assert [(p.name, p.port, p.target_port) for p in svc.ports] == [
            ("http", 9080, 9080), *grpc]


def test_shop_workloads_never_share_an_address_or_app_port() -> None:
    mesh = _shop()
    addresses = [w.address for w in mesh.workloads]
    app_ports = [w.app_address(port).port for w in mesh.workloads for port, _ in w.app_ports]

    assert len(set(addresses)) == len(addresses) == 7
    assert all(a.startswith("127.0.10.") for a in addresses)
    assert len(set(app_ports)) == len(app_ports) == 6  # 9080 x4, 7070 x2
    assert not {9080, 7070} & set(app_ports)  # an inbound listener must not forward to itself


def test_example_bootstrap_is_current_and_valid() -> None:
    path = EXAMPLES / "bootstrap" / "order-v1.shop.yaml"
    expected = render_bootstrap(
        build_bootstrap(
            node_id="order-v1.shop",
            node_cluster="shop",
            xds_host="127.0.0.1",
            xds_port=15010,
            admin_host="127.0.10.2",
            admin_port=15000,
            workload="order-v1",
            namespace="shop",
        )
    )

    assert path.read_text() == expected, "regenerate it: see examples/bootstrap/README.md"
    result = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
