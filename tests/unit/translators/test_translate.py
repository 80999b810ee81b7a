"""The public entry points together: disjoint names, determinism, node id resolution."""

from __future__ import annotations

from collections import Counter

import pytest

from legation.model import AppAddress, MeshSnapshot, Protocol, WorkloadKind
from legation.translators import (
    Translated,
    names,
    resolve_proxy,
    translate_mesh,
    translate_namespace,
    translate_proxy,
)

from .builders import mesh, port, proxy, service, workload


def _shop() -> MeshSnapshot:
    return mesh(
        service("catalog", "shop", port(9080), port(9090, Protocol.GRPC), port(5432, Protocol.TCP)),
        service("catalog", "prod", port(80, target=8080)),
        service("web", "shop", port(80, target="http"), selector={"tier": "web"}),
        workload(
            "catalog-1", "10.0.0.1", labels={"app": "catalog", "tier": "web"}, ports={"http": 8000}
        ),
        workload("catalog-2", "10.0.0.2", app_ports={9080: AppAddress(port=19080)}),
        workload("catalog-p", "10.0.1.1", "prod", kind=WorkloadKind.POD),
        workload("client", "10.0.0.9", app="client"),
    )


def _everything(m: MeshSnapshot) -> list[Translated]:
    outs = [translate_mesh(m)]
    outs += [translate_namespace(m, ns) for ns in ("shop", "prod")]
    outs += [translate_proxy(m, proxy(w)) for w in m.workloads]
    return outs


def test_mesh_namespace_and_proxy_never_emit_the_same_name() -> None:
    m = _shop()
    by_source: dict[str, set[str]] = {}
    mesh_out = translate_mesh(m)
    by_source["mesh"] = {c.name for c in mesh_out.clusters} | {
        e.cluster_name for e in mesh_out.endpoints
    }
    (route,) = translate_namespace(m, "shop").routes
    by_source["namespace"] = {route.name}
    for w in m.workloads:
        out = translate_proxy(m, proxy(w))
        names_ = {c.name for c in out.clusters} | {x.name for x in out.listeners}
        assert not names_ & by_source["mesh"]
        assert not names_ & by_source["namespace"]
        # within one proxy: no duplicates either
        assert len(out.clusters) == len({c.name for c in out.clusters})
        assert len(out.listeners) == len({x.name for x in out.listeners})
    assert not by_source["mesh"] & by_source["namespace"]


def test_translation_is_deterministic_to_the_byte() -> None:
    def serialized(outs: list[Translated]) -> list[bytes]:
        return [
            msg.SerializeToString(deterministic=True)
            for out in outs
            for msg in (*out.clusters, *out.endpoints, *out.listeners, *out.routes)
        ]

    assert serialized(_everything(_shop())) == serialized(_everything(_shop()))


def test_every_outbound_cluster_has_exactly_one_assignment() -> None:
    out = translate_mesh(_shop())
    assert Counter(e.cluster_name for e in out.endpoints) == Counter(c.name for c in out.clusters)


def test_inbound_listeners_bind_the_ports_the_mesh_sends_to() -> None:
    """Endpoints (model) and inbound listeners (translator) agree for every workload."""
    m = _shop()
    for w in m.workloads:
        advertised = {
            ep.port
            for svc in m.services_selecting(w)
            for sp in svc.ports
            for ep in m.endpoints(svc, sp)
            if ep.workload == f"{w.namespace}/{w.name}"
        }
        out = translate_proxy(m, proxy(w))
        bound = {x.address.socket_address.port_value for x in out.listeners}
        assert bound - {names.OUTBOUND_PROXY_PORT} == advertised, w.name


@pytest.mark.parametrize(
    ("node_id", "expected"),
    [
        ("catalog-1.shop", ("WorkloadEntry", "shop", "catalog-1")),
        ("catalog-p.prod", ("Pod", "prod", "catalog-p")),
        ("sidecar~10.0.1.1~catalog-p.prod~prod.svc.cluster.local", ("Pod", "prod", "catalog-p")),
        ("router~10.0.0.9~client.shop~shop.svc.cluster.local", ("WorkloadEntry", "shop", "client")),
    ],
    ids=["own", "pod", "istio-sidecar", "istio-router"],
)
def test_resolve_proxy(node_id: str, expected: tuple[str, str, str]) -> None:
    p = resolve_proxy(_shop(), node_id)
    assert p is not None
    assert p.node_id == node_id
    assert (p.workload.kind.value, p.namespace, p.workload.name) == expected


@pytest.mark.parametrize(
    "node_id",
    [
        "nobody.shop",
        "catalog-1.prod",
        "catalog-1",
        "",
        "sidecar~1.2.3.4~nobody.shop~shop.svc.cluster.local",
    ],
    ids=["unknown", "wrong-namespace", "no-namespace", "empty", "istio-unknown"],
)
def test_resolve_proxy_returns_none_for_ids_naming_no_workload(node_id: str) -> None:
    assert resolve_proxy(_shop(), node_id) is None


def test_workload_entry_wins_over_a_pod_of_the_same_name() -> None:
    m = mesh(
        workload("twin", "10.0.0.1", kind=WorkloadKind.POD),
        workload("twin", "10.0.0.2"),
    )
    p = resolve_proxy(m, "twin.shop")
    assert p is not None and p.workload.kind is WorkloadKind.WORKLOAD_ENTRY
