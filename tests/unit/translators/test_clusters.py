"""CDS: outbound EDS clusters with Istio's defaults; inbound clusters per target port."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from legation.model import AppAddress, Protocol, WorkloadKind
from legation.translators import translate_mesh, translate_proxy
from legation.translators.common import HTTP_PROTOCOL_OPTIONS_KEY

from .builders import mesh, port, proxy, service, workload

Cluster = cluster_pb2.Cluster
MAX = 4294967295


def _protocol_options(
    c: cluster_pb2.Cluster,
) -> http_protocol_options_pb2.HttpProtocolOptions | None:
    if HTTP_PROTOCOL_OPTIONS_KEY not in c.typed_extension_protocol_options:
        return None
    opts = http_protocol_options_pb2.HttpProtocolOptions()
    assert c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].Unpack(opts)
    return opts


def test_one_eds_cluster_per_service_port_in_every_namespace() -> None:
    m = mesh(
        service("catalog", "shop", port(9080), port(9090, Protocol.GRPC)),
        service("catalog", "prod", port(80)),
        service("db", "data", port(5432, Protocol.TCP)),
    )
    assert [c.name for c in translate_mesh(m).clusters] == [
        "outbound|5432||db.data.svc.cluster.local",
        "outbound|80||catalog.prod.svc.cluster.local",
        "outbound|9080||catalog.shop.svc.cluster.local",
        "outbound|9090||catalog.shop.svc.cluster.local",
    ]


def test_outbound_cluster_has_istio_defaults() -> None:
    (c,) = translate_mesh(mesh(service("catalog", "shop", port(9080)))).clusters
    assert c.type == Cluster.EDS
    assert c.eds_cluster_config.eds_config.HasField("ads")
    assert c.eds_cluster_config.eds_config.resource_api_version == 2  # V3
    assert c.connect_timeout.seconds == 10
    assert c.lb_policy == Cluster.LEAST_REQUEST
    (t,) = c.circuit_breakers.thresholds
    assert (
        t.max_connections.value,
        t.max_pending_requests.value,
        t.max_requests.value,
        t.max_retries.value,
    ) == (MAX, MAX, MAX, MAX)
    assert not c.HasField("common_lb_config")


def test_cluster_names_follow_the_mesh_domain() -> None:
    (c,) = translate_mesh(mesh(service("catalog", "shop"), domain="corp.example")).clusters
    assert c.name == "outbound|9080||catalog.shop.svc.corp.example"


@pytest.mark.parametrize(
    ("protocol", "expected"),
    [
        (Protocol.HTTP, None),
        (Protocol.TCP, None),
        (Protocol.TLS, None),
        (Protocol.HTTP2, "explicit_http2"),
        (Protocol.GRPC, "explicit_http2"),
        (Protocol.UNKNOWN, "downstream"),
    ],
    ids=str,
)
def test_upstream_protocol_follows_the_port_protocol(protocol: Protocol, expected: str) -> None:
    (c,) = translate_mesh(mesh(service("catalog", "shop", port(9080, protocol)))).clusters
    opts = _protocol_options(c)
    if expected is None:
        assert opts is None
    elif expected == "explicit_http2":
        assert opts is not None
        assert opts.explicit_http_config.HasField("http2_protocol_options")
    else:
        assert opts is not None
        assert opts.use_downstream_protocol_config.HasField("http2_protocol_options")
        assert opts.use_downstream_protocol_config.HasField("http_protocol_options")


def test_duplicate_port_numbers_yield_one_cluster_and_a_diagnostic() -> None:
    m = mesh(service("catalog", "shop", port(9080), port(9080, Protocol.TCP, name="again")))
    out = translate_mesh(m)
    assert [c.name for c in out.clusters] == ["outbound|9080||catalog.shop.svc.cluster.local"]
    assert [(d.code, d.field) for d in out.diagnostics] == [
        ("service.port-duplicate", "spec.ports[1].port")
    ]


def test_two_services_with_one_fqdn_yield_one_cluster_and_an_error() -> None:
    m = mesh(service("a", "b.svc"), service("a.b", "svc"))
    out = translate_mesh(m)
    assert [c.name for c in out.clusters] == ["outbound|9080||a.b.svc.svc.cluster.local"]
    assert [e.cluster_name for e in out.endpoints] == [c.name for c in out.clusters]
    (d,) = out.diagnostics
    assert (d.code, d.ref.namespace, d.ref.name) == ("service.fqdn-conflict", "svc", "a.b")


# -- inbound -------------------------------------------------------------------


def test_inbound_cluster_points_at_the_app_on_loopback() -> None:
    w = workload("catalog-1", "10.0.0.1")
    out = translate_proxy(mesh(service("catalog", "shop", port(9080)), w), proxy(w))
    (c,) = out.clusters
    assert c.name == "inbound|9080||"
    assert c.type == Cluster.STATIC
    assert c.load_assignment.cluster_name == "inbound|9080||"
    (group,) = c.load_assignment.endpoints
    (lb,) = group.lb_endpoints
    sa = lb.endpoint.address.socket_address
    assert (sa.address, sa.port_value) == ("127.0.0.1", 9080)
    assert c.connect_timeout.seconds == 10
    assert c.circuit_breakers.thresholds[0].max_retries.value == MAX


def test_app_ports_annotation_moves_the_app() -> None:
    w = workload("catalog-1", "10.0.0.1", app_ports={9080: AppAddress(port=18081)})
    out = translate_proxy(mesh(service("catalog", "shop", port(9080)), w), proxy(w))
    sa = out.clusters[0].load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (sa.socket_address.address, sa.socket_address.port_value) == ("127.0.0.1", 18081)


def test_app_on_a_host_name_uses_a_dns_cluster() -> None:
    w = workload("catalog-1", "10.0.0.1", app_ports={9080: AppAddress(host="app", port=8080)})
    out = translate_proxy(mesh(service("catalog", "shop", port(9080)), w), proxy(w))
    assert out.clusters[0].type == Cluster.STRICT_DNS


@pytest.mark.parametrize(
    ("kind", "target", "workload_ports", "expected"),
    [
        (WorkloadKind.WORKLOAD_ENTRY, 8080, {}, 8080),  # numeric targetPort
        (WorkloadKind.WORKLOAD_ENTRY, 8080, {"http-web": 9999}, 9999),  # WE ports[portName]
        (WorkloadKind.WORKLOAD_ENTRY, "web", {"web": 7070}, 7070),  # named targetPort
        (WorkloadKind.POD, 8080, {"http-web": 9999}, 8080),  # Pods: ports[name] is not a map
        (WorkloadKind.POD, "web", {"web": 7070}, 7070),  # named container port
    ],
    ids=["numeric", "workloadentry-ports", "named", "pod-numeric", "pod-named"],
)
def test_target_port_resolution(
    kind: WorkloadKind, target: int | str, workload_ports: dict[str, int], expected: int
) -> None:
    w = workload("catalog-1", "10.0.0.1", kind=kind, ports=workload_ports)
    m = mesh(service("catalog", "shop", port(80, name="http-web", target=target)), w)
    out = translate_proxy(m, proxy(w))
    assert [c.name for c in out.clusters] == [f"inbound|{expected}||"]
    # the sidecar listens where the rest of the mesh sends traffic
    (ep,) = m.endpoints(m.services[0], m.services[0].ports[0])
    assert ep.port == expected


def test_unresolvable_named_target_port_is_a_diagnostic() -> None:
    w = workload("catalog-1", "10.0.0.1", ports={"other": 1})
    m = mesh(service("catalog", "shop", port(80), port(81, target="missing")), w)
    out = translate_proxy(m, proxy(w))
    assert [c.name for c in out.clusters] == ["inbound|80||"]
    (d,) = out.diagnostics
    assert (d.code, d.field, d.ref.kind, d.ref.name) == (
        "service.target-port-unresolved",
        "spec.ports[1].targetPort",
        "Service",
        "catalog",
    )
    assert "'missing'" in d.message and "shop/catalog-1" in d.message


def test_services_sharing_a_target_port_share_one_inbound_cluster() -> None:
    w = workload("catalog-1", "10.0.0.1", labels={"app": "catalog", "tier": "api"})
    m = mesh(
        service("catalog", "shop", port(80, target=8080)),
        service(
            "api",
            "shop",
            port(8000, target=8080),
            port(9090, Protocol.GRPC),
            selector={"tier": "api"},
        ),
        w,
    )
    out = translate_proxy(m, proxy(w))
    assert [c.name for c in out.clusters] == ["inbound|8080||", "inbound|9090||"]
    assert out.diagnostics == []


def test_conflicting_protocols_on_one_target_port_warn_and_first_wins() -> None:
    w = workload("catalog-1", "10.0.0.1", labels={"app": "catalog", "tier": "api"})
    m = mesh(
        service("api", "shop", port(8000, Protocol.TCP, target=8080), selector={"tier": "api"}),
        service("catalog", "shop", port(80, target=8080)),
        w,
    )
    out = translate_proxy(m, proxy(w))
    assert [c.name for c in out.clusters] == ["inbound|8080||"]
    (d,) = out.diagnostics
    assert (d.code, d.ref.name) == ("service.target-port-protocol-conflict", "catalog")
    assert out.listeners[1].filter_chains[0].filters[0].name == "envoy.filters.network.tcp_proxy"


def test_workload_selected_by_no_service_has_no_inbound_cluster() -> None:
    w = workload("client", "10.0.0.7", app="client")
    out = translate_proxy(mesh(service("catalog", "shop"), w), proxy(w))
    assert out.clusters == []
    assert [x.name for x in out.listeners] == ["10.0.0.7_15001"]


def test_services_of_other_namespaces_do_not_select_the_workload() -> None:
    w = workload("catalog-1", "10.0.0.1", namespace="prod")
    out = translate_proxy(mesh(service("catalog", "shop"), w), proxy(w))
    assert out.clusters == []
