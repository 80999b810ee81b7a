"""`legation demo`'s plan (what runs where, the live change) and its port check."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import yaml

from legation.demo.plan import Plan, PlanError, make_plan
from legation.demo.ports import PortError, check_free, needed_ports
from legation.mesh.store import MeshStore
from legation.model import MeshSnapshot
from legation.sources.files import load_dirs

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
PLAIN_SHOP = ("namespace.yaml", "services.yaml", "workloads.yaml")


def load(directory: Path) -> MeshSnapshot:
    result = load_dirs([directory])
    store = MeshStore()
    store.replace_source("test", result.objects, result.diagnostics)
    return store.snapshot()


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """The shop without traffic rules."""
    for name in PLAIN_SHOP:
        shutil.copy(SHOP / name, tmp_path / name)
    return tmp_path


def plan_of(directory: Path) -> Plan:
    return make_plan(load(directory), directory)


def test_the_shop_plan(shop: Path) -> None:
    plan = plan_of(shop)

    assert [(s.workload, s.address, s.inbound) for s in plan.sidecars] == [
        ("catalog-v1", "127.0.10.3", (7070, 9080)),
        ("catalog-v2", "127.0.10.4", (7070, 9080)),
        ("frontend", "127.0.10.1", ()),
        ("order-v1", "127.0.10.2", (9080,)),
        ("payment-v1", "127.0.10.5", (9080,)),
    ]
    assert {s.delta for s in plan.sidecars} == {True, False}  # both variants on show
    assert plan.client.workload == "frontend"
    assert plan.entries == ("order.shop:9080",)
    apps = {(a.name, a.grpc): (a.host, a.port, a.calls, a.proxy) for a in plan.apps}
    assert apps == {
        ("catalog-v1", True): ("127.0.0.1", 17082, (), None),
        ("catalog-v1", False): ("127.0.0.1", 18082, (), None),
        ("catalog-v2", True): ("127.0.0.1", 17083, (), None),
        ("catalog-v2", False): ("127.0.0.1", 18083, (), None),
        ("order-v1", False): (
            "127.0.0.1",
            18081,
            ("catalog.shop:9080", "payment.shop:9080"),
            ("127.0.10.2", 15001),
        ),
        ("payment-v1", False): ("127.0.0.1", 18084, (), None),
    }
    # reviewer, annotated as Istio's proxyless pods are, gets no sidecar: it calls the
    # gRPC port of catalog proxyless, beside frontend's sidecar
    assert plan.grpc is not None
    assert (plan.grpc.workload, plan.grpc.address, plan.grpc.target) == (
        "reviewer", "127.0.10.7", "catalog.shop:7070")


def test_without_traffic_rules_the_change_removes_one_workload_entry(shop: Path) -> None:
    change = plan_of(shop).change

    assert change is not None
    assert change.title == "remove WorkloadEntry catalog-v2"
    assert change.path == shop / "workloads.yaml"
    assert change.original == (shop / "workloads.yaml").read_text()
    assert change.changed is not None
    kept = [d["metadata"]["name"] for d in yaml.safe_load_all(change.changed) if d]
    assert kept == ["frontend", "order-v1", "catalog-v1", "payment-v1", "reviewer"]
    (shop / "workloads.yaml").write_text(change.changed)  # and the result still loads cleanly
    assert [w.name for w in load(shop).workloads] == [
        "catalog-v1", "frontend", "order-v1", "payment-v1", "reviewer"
    ]  # fmt: skip


def test_with_traffic_rules_the_change_takes_their_file_away(shop: Path) -> None:
    rules = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n" \
            "metadata: {name: catalog, namespace: shop}\nspec: {host: catalog}\n"  # fmt: skip
    (shop / "rules.yaml").write_text(rules)

    change = plan_of(shop).change

    assert change is not None
    assert (change.title, change.path, change.original, change.changed) == (
        "remove rules.yaml (traffic rules)",
        shop / "rules.yaml",
        rules,
        None,
    )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("127.0.10.2", "10.0.0.2"), "needs a 127.x.y.z address"),
        (lambda t: t.replace("app: frontend", "app: order"), "needs a client workload"),
        (lambda t: "", "no WorkloadEntry"),
    ],
    ids=["not-loopback", "no-client", "no-workloads"],
)
def test_meshes_the_demo_cannot_run(shop: Path, edit: object, message: str) -> None:
    path = shop / "workloads.yaml"
    path.write_text(edit(path.read_text()))  # type: ignore[operator]

    with pytest.raises(PlanError, match=message):
        plan_of(shop)


def test_a_taken_port_is_named(shop: Path) -> None:
    plan = plan_of(shop)
    needs = needed_ports(plan, xds=("127.0.0.1", 0), admin=("127.0.0.1", 0))
    assert ("127.0.10.2", 9080, "order-v1's sidecar inbound listener") in needs
    assert ("127.0.0.1", 18081, "the order-v1 app") in needs
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(PortError, match=rf"127\.0\.0\.1:{port} \(for the thing\) is already"):
            check_free([("127.0.0.1", port, "the thing")])


def test_a_gateway_workload_is_an_ingress_not_the_client(shop: Path) -> None:
    for name in ("gateway.yaml", "secret-shop-tls.yaml"):
        shutil.copy(SHOP / name, shop / name)

    plan = plan_of(shop)

    assert plan.client.workload == "frontend"  # the gateway is selected by a Gateway
    [gateway] = [s for s in plan.sidecars if s.workload == "ingress-gateway"]
    assert (gateway.address, gateway.inbound) == ("127.0.10.6", (8443,))
    assert plan.ingress is not None
    assert (plan.ingress.gateway, plan.ingress.address, plan.ingress.port,
            plan.ingress.host) == ("ingress-gateway", "127.0.10.6", 8443, "shop.example.com")
    assert plan.ingress.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    assert not any(a.name == "ingress-gateway" for a in plan.apps)  # no app behind it


def test_a_service_entry_on_this_machine_is_the_external_service(shop: Path) -> None:
    shutil.copy(SHOP / "external.yaml", shop / "external.yaml")

    plan = plan_of(shop)

    assert plan.external is not None
    assert (plan.external.host, plan.external.port) == ("rates.example.com", 80)
    [app] = [a for a in plan.apps if a.name == "rates.example.com"]
    assert (app.host, app.port, app.proxy) == ("127.0.0.1", 18090, None)  # no sidecar
    assert not any(s.workload == "rates.example.com" for s in plan.sidecars)
    assert "rates.example.com:80" not in plan.entries  # the client's load stays in the mesh
