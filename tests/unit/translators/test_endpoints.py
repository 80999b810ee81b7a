"""EDS: a ClusterLoadAssignment per outbound cluster, grouped by locality."""

from __future__ import annotations

from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from legation.model import HealthStatus, Locality, Protocol, SliceEndpoint, WorkloadKind
from legation.translators import translate_mesh

from .builders import endpoint_slice, mesh, node, port, service, workload


def _addresses(cla: endpoint_pb2.ClusterLoadAssignment) -> list[list[str]]:
    return [
        [
            f"{lb.endpoint.address.socket_address.address}:"
            f"{lb.endpoint.address.socket_address.port_value}"
            for lb in group.lb_endpoints
        ]
        for group in cla.endpoints
    ]


def test_every_outbound_cluster_gets_an_assignment_even_when_empty() -> None:
    out = translate_mesh(mesh(service("catalog", "shop", port(9080), port(5432, Protocol.TCP))))
    assert [c.name for c in out.clusters] == [e.cluster_name for e in out.endpoints]
    assert all(len(e.endpoints) == 0 for e in out.endpoints)


def test_workload_entries_become_endpoints_with_their_workload_in_metadata() -> None:
    m = mesh(
        service("catalog", "shop", port(9080)),
        workload("catalog-2", "10.0.0.2"),
        workload("catalog-1", "10.0.0.1"),
        workload("other", "10.0.0.3", app="other"),
    )
    (cla,) = translate_mesh(m).endpoints
    assert cla.cluster_name == "outbound|9080||catalog.shop.svc.cluster.local"
    assert _addresses(cla) == [["10.0.0.1:9080", "10.0.0.2:9080"]]
    (group,) = cla.endpoints
    assert not group.HasField("locality")
    first = group.lb_endpoints[0]
    assert first.health_status == health_check_pb2.HEALTHY
    assert not first.HasField("load_balancing_weight")
    istio = first.metadata.filter_metadata["istio"]
    assert istio.fields["workload"].string_value == "shop/catalog-1"


def test_endpoints_are_grouped_per_locality_in_sorted_order() -> None:
    m = mesh(
        service("catalog", "shop"),
        workload("a", "10.0.0.1", locality=Locality(region="us", zone="b")),
        workload("b", "10.0.0.2", locality=Locality(region="eu", zone="a")),
        workload("c", "10.0.0.3", locality=Locality(region="us", zone="b")),
        workload("d", "10.0.0.4"),
    )
    (cla,) = translate_mesh(m).endpoints
    assert [(g.locality.region, g.locality.zone) for g in cla.endpoints] == [
        ("", ""),
        ("eu", "a"),
        ("us", "b"),
    ]
    assert _addresses(cla) == [
        ["10.0.0.4:9080"],
        ["10.0.0.2:9080"],
        ["10.0.0.1:9080", "10.0.0.3:9080"],
    ]


def test_weight_is_set_only_when_positive() -> None:
    m = mesh(
        service("catalog", "shop"), workload("a", "10.0.0.1", weight=7), workload("b", "10.0.0.2")
    )
    (cla,) = translate_mesh(m).endpoints
    a, b = cla.endpoints[0].lb_endpoints
    assert a.load_balancing_weight.value == 7
    assert not b.HasField("load_balancing_weight")


def test_endpoint_slice_health_and_node_locality() -> None:
    pod_ready = SliceEndpoint(addresses=("10.1.0.1",), target_kind="Pod", target_name="p1")
    pod_draining = SliceEndpoint(
        addresses=("10.1.0.2",), ready=False, serving=True, terminating=True, node_name="n2"
    )
    gone = SliceEndpoint(addresses=("10.1.0.3",), ready=False, serving=False)
    m = mesh(
        service("catalog", "shop", port(80, name="http", target=8080)),
        endpoint_slice("catalog", "shop", pod_ready, pod_draining, gone, ports={"http": 8080}),
        workload("p1", "10.1.0.1", kind=WorkloadKind.POD, node_name="n1"),
        node("n1", region="eu", zone="eu-1a"),
        node("n2", region="eu", zone="eu-1b"),
    )
    (cla,) = translate_mesh(m).endpoints
    assert [
        (g.locality.zone, [lb.health_status for lb in g.lb_endpoints]) for g in cla.endpoints
    ] == [
        ("eu-1a", [health_check_pb2.HEALTHY]),
        ("eu-1b", [health_check_pb2.DRAINING]),
    ]
    ready, draining = (g.lb_endpoints[0] for g in cla.endpoints)
    assert ready.metadata.filter_metadata["istio"].fields["workload"].string_value == "shop/p1"
    assert "istio" not in draining.metadata.filter_metadata  # no target: no workload known


def test_draining_workload_entry() -> None:
    m = mesh(service("catalog", "shop"), workload("a", "10.0.0.1", health=HealthStatus.DRAINING))
    (cla,) = translate_mesh(m).endpoints
    assert cla.endpoints[0].lb_endpoints[0].health_status == health_check_pb2.DRAINING


def test_ipv6_endpoints_are_kept() -> None:
    m = mesh(service("catalog", "shop"), workload("a", "fd00::1"))
    (cla,) = translate_mesh(m).endpoints
    assert _addresses(cla) == [["fd00::1:9080"]]


def test_dns_named_endpoint_is_left_out_with_one_diagnostic_per_workload() -> None:
    m = mesh(
        service("catalog", "shop", port(80), port(81), port(82)),
        workload("vm", "vm.example.com"),
        workload("ok", "10.0.0.1"),
    )
    out = translate_mesh(m)
    assert [_addresses(c) for c in out.endpoints] == [
        [["10.0.0.1:80"]],
        [["10.0.0.1:81"]],
        [["10.0.0.1:82"]],
    ]
    (d,) = out.diagnostics
    assert (d.code, d.ref.kind, d.ref.name, d.field) == (
        "endpoint.address-not-ip",
        "WorkloadEntry",
        "vm",
        "spec.address",
    )
