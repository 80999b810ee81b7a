"""RDS: the ``http_proxy`` route configuration seen from one namespace."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from legation.model import MeshSnapshot, Protocol, Service, ServicePort
from legation.translators import translate_namespace
from legation.translators.routes import default_retry_policy

from .builders import mesh, port, service

SERVICE_NAMES = ("catalog", "cart", "db", "web")
NAMESPACES = ("shop", "prod", "svc")


CATCH_ALL = ("allow_any", "block_all")  # outboundTrafficPolicy: tests/unit/translators/
# test_outbound.py


def _vhosts(m: MeshSnapshot, namespace: str) -> dict[str, list[str]]:
    """The virtual hosts of services (the last, catch-all one left out)."""
    (config,) = translate_namespace(m, namespace).routes
    assert config.virtual_hosts[-1].name in CATCH_ALL
    return {v.name: list(v.domains) for v in config.virtual_hosts[:-1]}


def _host_to_vhost(m: MeshSnapshot, namespace: str) -> dict[str, str]:
    return {d: name for name, domains in _vhosts(m, namespace).items() for d in domains}


def test_route_configuration_is_http_proxy_without_cluster_validation() -> None:
    out = translate_namespace(mesh(service("catalog", "shop")), "shop")
    (config,) = out.routes
    assert config.name == "http_proxy"
    assert config.HasField("validate_clusters") and config.validate_clusters.value is False
    assert out.diagnostics == []


def test_local_service_answers_to_every_form_with_and_without_port() -> None:
    m = mesh(service("catalog", "shop", port(9080)))
    assert _vhosts(m, "shop") == {
        "catalog.shop.svc.cluster.local:9080": [
            "catalog",
            "catalog:9080",
            "catalog.shop",
            "catalog.shop:9080",
            "catalog.shop.svc",
            "catalog.shop.svc:9080",
            "catalog.shop.svc.cluster.local",
            "catalog.shop.svc.cluster.local:9080",
        ]
    }


def test_short_name_only_resolves_in_the_service_namespace() -> None:
    m = mesh(service("catalog", "shop", port(9080)))
    hosts = _host_to_vhost(m, "prod")
    assert "catalog" not in hosts and "catalog:9080" not in hosts
    assert hosts["catalog.shop:9080"] == "catalog.shop.svc.cluster.local:9080"


def test_portless_forms_go_to_port_80_when_it_is_http() -> None:
    m = mesh(service("web", "shop", port(8443, Protocol.HTTP2), port(80), port(81)))
    hosts = _host_to_vhost(m, "shop")
    for host in ("web", "web.shop", "web.shop.svc", "web.shop.svc.cluster.local"):
        assert hosts[host] == "web.shop.svc.cluster.local:80"
    assert hosts["web:8443"] == "web.shop.svc.cluster.local:8443"


def test_portless_forms_go_to_the_lowest_http_port_otherwise() -> None:
    m = mesh(service("web", "shop", port(80, Protocol.TCP), port(9090, Protocol.GRPC), port(8080)))
    hosts = _host_to_vhost(m, "shop")
    assert hosts["web"] == "web.shop.svc.cluster.local:8080"
    assert "web" not in _vhosts(m, "shop")["web.shop.svc.cluster.local:80"]  # TCP: CONNECT


def test_a_tcp_port_is_reached_by_connect_only() -> None:
    m = mesh(service("db", "data", port(5432, Protocol.TCP)), service("web", "shop"))
    vhosts = _vhosts(m, "shop")
    assert vhosts["db.data.svc.cluster.local:5432"] == [
        "db.data:5432", "db.data.svc:5432", "db.data.svc.cluster.local:5432"]
    (config,) = translate_namespace(m, "shop").routes
    (route,) = config.virtual_hosts[0].routes
    assert route.match.HasField("connect_matcher")
    assert route.route.cluster == "outbound|5432||db.data.svc.cluster.local"
    assert [u.upgrade_type for u in route.route.upgrade_configs] == ["CONNECT"]


def test_only_the_last_virtual_host_catches_every_host() -> None:
    m = mesh(service("catalog", "shop"), service("web", "shop", port(80)))
    domains = [d for ds in _vhosts(m, "shop").values() for d in ds]
    assert not any("*" in d for d in domains)


def test_route_goes_to_the_outbound_cluster_with_istio_defaults() -> None:
    (config,) = translate_namespace(mesh(service("catalog", "shop")), "shop").routes
    vhost, _ = config.virtual_hosts
    (route,) = vhost.routes
    assert route.match.prefix == "/"
    assert route.route.cluster == "outbound|9080||catalog.shop.svc.cluster.local"
    assert route.route.HasField("timeout") and route.route.timeout.ToSeconds() == 0
    policy = route.route.retry_policy
    assert policy == default_retry_policy()
    assert policy.retry_on == (
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    )
    assert policy.num_retries.value == 2
    assert list(policy.retriable_status_codes) == [503]
    assert [p.name for p in policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"
    ]
    assert policy.host_selection_retry_max_attempts == 5


def test_domains_are_unique_across_multi_port_services_in_two_namespaces() -> None:
    m = mesh(
        service("catalog", "shop", port(80), port(9080), port(9090, Protocol.GRPC)),
        service("catalog", "prod", port(80), port(9080), port(5432, Protocol.TCP)),
        service("web", "shop", port(8080), port(8081, Protocol.UNKNOWN)),
        service("web", "prod", port(8080)),
    )
    for namespace in ("shop", "prod", "other"):
        out = translate_namespace(m, namespace)
        domains = [d for v in out.routes[0].virtual_hosts for d in v.domains]
        assert len(domains) == len(set(domains)), namespace
        assert out.diagnostics == []
    hosts = _host_to_vhost(m, "prod")
    assert hosts["catalog"] == "catalog.prod.svc.cluster.local:80"
    assert hosts["catalog.shop"] == "catalog.shop.svc.cluster.local:80"
    assert hosts["web"] == "web.prod.svc.cluster.local:8080"
    assert hosts["web.shop"] == "web.shop.svc.cluster.local:8080"


protocols = st.sampled_from(list(Protocol))


@st.composite
def services(draw: st.DrawFn) -> tuple[Service, ...]:
    keys = draw(
        st.lists(
            st.tuples(st.sampled_from(SERVICE_NAMES), st.sampled_from(NAMESPACES)),
            min_size=1,
            max_size=6,
            unique=True,
        )
    )
    out = []
    for name, namespace in keys:
        numbers = draw(
            st.lists(st.sampled_from([80, 81, 8080, 9080, 9090]), min_size=1, unique=True)
        )
        ports: list[ServicePort] = [port(n, draw(protocols)) for n in numbers]
        out.append(service(name, namespace, *ports))
    return tuple(out)


@settings(max_examples=60, deadline=None)
@given(services(), st.sampled_from((*NAMESPACES, "elsewhere")))
def test_domains_are_always_unique(svcs: tuple[Service, ...], namespace: str) -> None:
    """Envoy rejects a route configuration in which two virtual hosts share a domain."""
    out = translate_namespace(mesh(*svcs), namespace)
    domains = [d for v in out.routes[0].virtual_hosts for d in v.domains]
    assert len(domains) == len(set(domains))
    assert out.diagnostics == []
    ports = sum(1 for s in svcs for p in s.ports)  # HTTP, or CONNECT only
    assert len(out.routes[0].virtual_hosts) == ports + 1  # and the catch-all


def test_a_clashing_dotted_namespace_keeps_the_first_claim_and_warns() -> None:
    # Kubernetes forbids dots in namespace names; a converter might not, so the
    # translator must still never emit a duplicate domain: a.b.svc is both
    # "name.namespace.svc" of a/b and "name.namespace" of a/b.svc.
    m = mesh(service("a", "b"), service("a", "b.svc"))
    out = translate_namespace(m, "other")
    domains = [d for v in out.routes[0].virtual_hosts for d in v.domains]
    assert len(domains) == len(set(domains))
    assert _host_to_vhost(m, "other")["a.b.svc"] == "a.b.svc.cluster.local:9080"
    assert [(d.code, d.ref.namespace) for d in out.diagnostics] == [
        ("route.domain-conflict", "b.svc"),
        ("route.domain-conflict", "b.svc"),
    ]
