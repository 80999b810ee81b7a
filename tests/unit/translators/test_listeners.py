"""LDS, explicit mode: outbound HTTP proxy on :15001, one inbound listener per target port."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from legation.model import AppAddress, InterceptionMode, Protocol, Severity
from legation.translators import translate_proxy

from .builders import mesh, port, proxy, service, workload

HCM = http_connection_manager_pb2.HttpConnectionManager


def _network_filter(listener: listener_pb2.Listener) -> tuple[str, Any]:
    (chain,) = listener.filter_chains
    (f,) = chain.filters
    if f.typed_config.Is(HCM.DESCRIPTOR):
        msg: Any = HCM()
    else:
        msg = tcp_proxy_pb2.TcpProxy()
    assert f.typed_config.Unpack(msg)
    return f.name, msg


def _catalog(*ports: Any, **kw: Any) -> tuple[Any, Any]:
    w = workload("catalog-1", "10.0.0.1", **kw)
    return mesh(service("catalog", "shop", *ports), w), w


def test_outbound_listener_is_an_http_proxy_on_15001() -> None:
    m, w = _catalog(port(9080))
    out = translate_proxy(m, proxy(w))
    listener = out.listeners[0]
    assert listener.name == "10.0.0.1_15001"
    sa = listener.address.socket_address
    assert (sa.address, sa.port_value) == ("10.0.0.1", 15001)
    assert listener.traffic_direction == base_pb2.OUTBOUND
    name, hcm = _network_filter(listener)
    assert name == "envoy.filters.network.http_connection_manager"
    assert hcm.stat_prefix == "outbound_10.0.0.1_15001"
    assert hcm.codec_type == HCM.AUTO
    assert hcm.rds.route_config_name == "http_proxy"
    assert hcm.rds.config_source.HasField("ads")
    assert hcm.http_protocol_options.allow_absolute_url.value is True
    forward, router = hcm.http_filters  # the forward proxy acts on its own clusters only
    assert forward.name == "envoy.filters.http.dynamic_forward_proxy"
    assert router.name == "envoy.filters.http.router"
    assert router.typed_config.Is(router_pb2.Router.DESCRIPTOR)


@pytest.mark.parametrize(
    "protocol", [Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.UNKNOWN], ids=str
)
def test_http_inbound_listener_routes_everything_to_the_inbound_cluster(
    protocol: Protocol,
) -> None:
    m, w = _catalog(port(80, protocol, target=8080))
    out = translate_proxy(m, proxy(w))
    assert [x.name for x in out.listeners] == ["10.0.0.1_15001", "10.0.0.1_8080"]
    inbound = out.listeners[1]
    assert inbound.traffic_direction == base_pb2.INBOUND
    assert inbound.address.socket_address.port_value == 8080
    name, hcm = _network_filter(inbound)
    assert name == "envoy.filters.network.http_connection_manager"
    assert hcm.stat_prefix == "inbound_10.0.0.1_8080"
    assert not hcm.HasField("rds")
    (vhost,) = hcm.route_config.virtual_hosts
    assert (vhost.name, list(vhost.domains)) == ("inbound|http|8080", ["*"])
    (route,) = vhost.routes
    assert route.match.prefix == "/"
    assert route.route.cluster == "inbound|8080||"
    assert route.route.HasField("timeout") and route.route.timeout.seconds == 0
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.router"]


@pytest.mark.parametrize("protocol", [Protocol.TCP, Protocol.TLS, Protocol.HTTPS], ids=str)
def test_tcp_inbound_listener_proxies_to_the_inbound_cluster(protocol: Protocol) -> None:
    m, w = _catalog(port(5432, protocol))
    out = translate_proxy(m, proxy(w))
    name, tcp = _network_filter(out.listeners[1])
    assert name == "envoy.filters.network.tcp_proxy"
    assert tcp.cluster == "inbound|5432||"
    assert tcp.stat_prefix == "inbound_10.0.0.1_5432"


def test_one_listener_per_distinct_target_port_sorted() -> None:
    m, w = _catalog(port(9080), port(80, target=9080, name="web"), port(5432, Protocol.TCP))
    out = translate_proxy(m, proxy(w))
    assert [x.name for x in out.listeners] == ["10.0.0.1_15001", "10.0.0.1_5432", "10.0.0.1_9080"]
    assert [c.name for c in out.clusters] == ["inbound|5432||", "inbound|9080||"]


def test_listener_and_cluster_names_are_unique() -> None:
    m, w = _catalog(port(80, target=8080), port(81, target=8080), port(82, target=8081))
    out = translate_proxy(m, proxy(w))
    names = [x.name for x in out.listeners]
    assert len(names) == len(set(names))


def test_transparent_mode_gets_its_own_listeners_and_no_warning() -> None:
    """Transparent proxies (test_transparent.py) no longer fall back to explicit mode."""
    m, w = _catalog(port(9080))
    out = translate_proxy(m, proxy(w, InterceptionMode.TRANSPARENT))
    assert out.diagnostics == []
    assert [x.name for x in out.listeners] == ["virtualInbound"]


def test_workload_without_ip_address_gets_no_listeners() -> None:
    w = workload("vm", "vm.example.com")
    out = translate_proxy(mesh(service("catalog", "shop"), w), proxy(w))
    assert out.listeners == []
    (d,) = out.diagnostics
    assert (d.code, d.severity, d.field) == (
        "workload.address-not-ip",
        Severity.ERROR,
        "spec.address",
    )


def test_target_port_15001_is_reserved_for_the_outbound_proxy() -> None:
    m, w = _catalog(port(80, target=15001), port(81, target=8081))
    out = translate_proxy(m, proxy(w))
    assert [x.name for x in out.listeners] == ["10.0.0.1_15001", "10.0.0.1_8081"]
    assert [c.name for c in out.clusters] == ["inbound|8081||"]
    (d,) = out.diagnostics
    assert (d.code, d.field) == ("service.target-port-reserved", "spec.ports[0].targetPort")


def test_inbound_listener_that_would_forward_to_itself_is_refused() -> None:
    w = workload("local", "127.0.0.1", app="catalog")
    out = translate_proxy(mesh(service("catalog", "shop", port(9080)), w), proxy(w))
    assert [x.name for x in out.listeners] == ["127.0.0.1_15001"]
    assert out.clusters == []
    (d,) = out.diagnostics
    assert d.code == "workload.inbound-loop"
    assert "sidecar.legation.io/app-ports" in d.message


def test_app_ports_annotation_avoids_the_loop_on_loopback() -> None:
    w = workload("local", "127.0.0.1", app="catalog", app_ports={9080: AppAddress(port=19080)})
    out = translate_proxy(mesh(service("catalog", "shop", port(9080)), w), proxy(w))
    assert [x.name for x in out.listeners] == ["127.0.0.1_15001", "127.0.0.1_9080"]
    assert out.diagnostics == []
