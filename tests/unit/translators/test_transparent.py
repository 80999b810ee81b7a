"""Transparent mode (transparent.py): virtualOutbound, virtualInbound, per-port routes."""

from __future__ import annotations

import dataclasses
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from legation.model import (
    AppAddress,
    InterceptionMode,
    MeshSecurity,
    MeshSnapshot,
    MtlsMode,
    PeerAuthentication,
    Protocol,
    Service,
    Severity,
    Workload,
)
from legation.translators import translate_namespace, translate_proxy

from .builders import mesh, port, proxy, ref, service, workload

T = InterceptionMode.TRANSPARENT


def svc(name: str, vip: str, *ports: Any, namespace: str = "shop") -> Service:
    return dataclasses.replace(service(name, namespace, *ports), cluster_ip=vip)


def pod(name: str = "catalog-1", address: str = "10.1.0.11", **kw: Any) -> Workload:
    return dataclasses.replace(workload(name, address, **kw), interception=T)


def outbound(m: MeshSnapshot, namespace: str = "shop") -> listener_pb2.Listener:
    (listener,) = translate_namespace(m, namespace, mode=T).listeners
    assert listener.name == "virtualOutbound"
    return listener


def chains(listener: listener_pb2.Listener) -> dict[str, Any]:
    """chain name -> (destination port, prefixes, transport protocol)."""
    return {
        c.name: (c.filter_chain_match.destination_port.value,
                 [f"{r.address_prefix}/{r.prefix_len.value}"
                  for r in c.filter_chain_match.prefix_ranges],
                 c.filter_chain_match.transport_protocol)
        for c in listener.filter_chains
    }


def tcp_cluster(chain: Any) -> str:
    proxy_config = tcp_proxy_pb2.TcpProxy()
    chain.filters[-1].typed_config.Unpack(proxy_config)
    return str(proxy_config.cluster)


# -- namespace-level: virtualOutbound and the per-port routes -----------------------


def test_transparent_namespace_shares_routes_listener_and_passthrough_clusters() -> None:
    m = mesh(svc("catalog", "10.96.0.10", port(80), port(5432, Protocol.TCP)), pod())
    out = translate_namespace(m, "shop", mode=T)
    assert [r.name for r in out.routes] == ["80"]
    assert [x.name for x in out.listeners] == ["virtualOutbound"]
    assert [c.name for c in out.clusters] == ["PassthroughCluster", "BlackHoleCluster"]
    assert out.diagnostics == []
    explicit = translate_namespace(m, "shop")
    assert [r.name for r in explicit.routes] == ["http_proxy"]
    assert explicit.listeners == []
    assert [c.name for c in explicit.clusters] == ["PassthroughCluster"]  # a forward proxy


def test_virtual_outbound_matches_cluster_ips_per_port() -> None:
    m = mesh(
        svc("catalog", "10.96.0.10", port(80), port(5432, Protocol.TCP)),
        svc("reviews", "10.96.0.20", port(80)),
        svc("ratings", "10.96.1.30", port(9080), namespace="other"),
    )
    listener = outbound(m)
    assert listener.address.socket_address.port_value == 15001
    assert listener.use_original_dst.value is True
    assert chains(listener) == {
        "virtualOutbound-blackhole": (15001, [], ""),
        "0.0.0.0_80": (80, ["10.96.0.10/32", "10.96.0.20/32"], ""),
        "0.0.0.0_9080": (9080, ["10.96.1.30/32"], ""),  # every namespace's services
        "10.96.0.10_5432": (5432, ["10.96.0.10/32"], ""),
    }
    by_name = {c.name: c for c in listener.filter_chains}
    assert tcp_cluster(by_name["10.96.0.10_5432"]) == (
        "outbound|5432||catalog.shop.svc.cluster.local")
    assert tcp_cluster(by_name["virtualOutbound-blackhole"]) == "BlackHoleCluster"
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    by_name["0.0.0.0_9080"].filters[0].typed_config.Unpack(hcm)
    assert hcm.rds.route_config_name == "9080"
    # anything else (an unknown IP on a mesh port too: Envoy prunes by port first)
    assert listener.default_filter_chain.name == "virtualOutbound-catchall-tcp"
    assert tcp_cluster(listener.default_filter_chain) == "PassthroughCluster"


def test_a_service_without_cluster_ip_is_matched_by_port_alone() -> None:
    m = mesh(
        svc("catalog", "10.96.0.10", port(80)),
        svc("legacy", "None", port(80)),  # headless
        svc("cache", "", port(6379, Protocol.TCP)),
    )
    assert chains(outbound(m)) == {
        "virtualOutbound-blackhole": (15001, [], ""),
        "0.0.0.0_80": (80, [], ""),  # routed by Host header; unknown hosts: allow_any
        "0.0.0.0_6379": (6379, [], ""),
    }


def test_conflicting_tcp_matches_keep_the_first_and_warn() -> None:
    m = mesh(
        svc("a", "", port(6379, Protocol.TCP)),
        svc("b", "", port(6379, Protocol.TCP)),
        svc("c", "10.96.0.9", port(15001, Protocol.TCP)),  # not the blackhole's match
        svc("d", "10.96.0.7", port(9080)),
        svc("e", "", port(9080, Protocol.TCP)),  # would be named like d's HTTP chain
    )
    out = translate_namespace(m, "shop", mode=T)
    assert [c.name for c in out.listeners[0].filter_chains] == [
        "virtualOutbound-blackhole", "0.0.0.0_9080", "0.0.0.0_6379", "10.96.0.9_15001"]
    b, e = out.diagnostics
    assert (b.code, b.severity, b.ref.name) == (
        "service.outbound-match-conflict", Severity.WARNING, "b")
    assert "'0.0.0.0_6379'" in b.message
    assert (e.code, e.ref.name) == ("service.outbound-match-conflict", "e")


def test_an_http_port_matched_by_the_blackhole_is_left_out_and_warned() -> None:
    m = mesh(svc("odd", "", port(15001)), svc("fine", "10.96.0.5", port(15001)))
    out = translate_namespace(m, "shop", mode=T)
    assert chains(out.listeners[0]) == {"virtualOutbound-blackhole": (15001, [], "")}
    assert [(d.code, d.ref.name) for d in out.diagnostics] == [
        ("service.outbound-match-conflict", "fine"), ("service.outbound-match-conflict", "odd")]
    assert "'virtualOutbound-blackhole'" in out.diagnostics[0].message


def test_port_routes_add_cluster_ip_domains_portless_forms_and_allow_any() -> None:
    m = mesh(svc("catalog", "10.96.0.10", port(80), port(9080)),
             svc("ratings", "10.96.1.30", port(9080), namespace="other"))
    routes = {r.name: r for r in translate_namespace(m, "shop", mode=T).routes}
    assert sorted(routes) == ["80", "9080"]
    config: route_pb2.RouteConfiguration = routes["9080"]
    assert [v.name for v in config.virtual_hosts] == [
        "ratings.other.svc.cluster.local:9080", "catalog.shop.svc.cluster.local:9080",
        "allow_any"]
    assert list(config.virtual_hosts[1].domains) == [
        "catalog", "catalog:9080", "catalog.shop", "catalog.shop:9080", "catalog.shop.svc",
        "catalog.shop.svc:9080", "catalog.shop.svc.cluster.local",
        "catalog.shop.svc.cluster.local:9080", "10.96.0.10", "10.96.0.10:9080"]
    assert "ratings" not in config.virtual_hosts[0].domains  # short names: own namespace only
    allow_any = config.virtual_hosts[-1]
    assert list(allow_any.domains) == ["*"]
    assert allow_any.routes[0].route.cluster == "PassthroughCluster"


# -- per proxy: virtualInbound and inbound clusters -----------------------------------


def test_virtual_inbound_has_a_chain_per_target_port_and_a_passthrough() -> None:
    w = pod()
    m = mesh(svc("catalog", "10.96.0.10", port(80, target=8080), port(5432, Protocol.TCP)), w)
    out = translate_proxy(m, proxy(w, T))
    assert out.diagnostics == []
    (listener,) = out.listeners
    assert (listener.name, listener.address.socket_address.address,
            listener.address.socket_address.port_value) == ("virtualInbound", "0.0.0.0", 15006)
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.original_dst"]
    assert chains(listener) == {
        "virtualInbound-blackhole": (15006, [], ""),
        "inbound-5432": (5432, [], ""),
        "inbound-8080": (8080, [], ""),
        "virtualInbound-catchall-tcp": (0, [], ""),
    }
    by_name = {c.name: c for c in listener.filter_chains}
    assert tcp_cluster(by_name["inbound-5432"]) == "inbound|5432||"
    assert tcp_cluster(by_name["virtualInbound-catchall-tcp"]) == "InboundPassthroughCluster"
    assert [c.name for c in out.clusters] == [
        "inbound|5432||", "inbound|8080||", "InboundPassthroughCluster"]


def test_inbound_clusters_go_to_the_original_destination_from_127_0_0_6() -> None:
    w = pod(app_ports={9090: AppAddress(host="127.0.0.1", port=19090)})
    m = mesh(svc("catalog", "10.96.0.10", port(80, target=8080),
                 port(9090, Protocol.GRPC)), w)
    by_name = {c.name: c for c in translate_proxy(m, proxy(w, T)).clusters}
    original = by_name["inbound|8080||"]
    assert (original.type, original.lb_policy) == (original.ORIGINAL_DST,
                                                   original.CLUSTER_PROVIDED)
    assert original.upstream_bind_config.source_address.address == "127.0.0.6"
    assert not original.HasField("load_assignment")
    # app-ports still maps a port elsewhere: a static cluster, as in explicit mode
    mapped = by_name["inbound|9090||"]
    assert mapped.type == mapped.STATIC
    endpoint = mapped.load_assignment.endpoints[0].lb_endpoints[0].endpoint
    assert endpoint.address.socket_address.port_value == 19090
    assert not mapped.HasField("upstream_bind_config")  # localhost is never redirected


def _secured(peer: PeerAuthentication, w: Workload, *ports: Any) -> MeshSnapshot:
    m = mesh(svc("catalog", "10.96.0.10", *ports), w)
    return dataclasses.replace(m, peer_authentications=(peer,), security=MeshSecurity(mtls=True))


def _peer(mode: MtlsMode, port_modes: dict[int, MtlsMode] | None = None) -> PeerAuthentication:
    return PeerAuthentication(
        ref=ref("PeerAuthentication", "catalog"), name="catalog", namespace="shop",
        selector=(("app", "catalog"),), mode=mode,
        port_modes=tuple(sorted((port_modes or {}).items())))


def test_inbound_security_is_the_explicit_listeners_per_port() -> None:
    """STRICT, PERMISSIVE and DISABLE shape each port's chains as they shape the
    explicit-mode listener of that port: same transport sockets, same filters."""
    w = pod()
    peer = _peer(MtlsMode.STRICT, {9080: MtlsMode.PERMISSIVE, 9443: MtlsMode.DISABLE})
    m = _secured(peer, w, port(80, target=8080), port(9080), port(9443, Protocol.TCP))
    (inbound,) = translate_proxy(m, proxy(w, T)).listeners
    explicit = {x.address.socket_address.port_value: x
                for x in translate_proxy(m, proxy(dataclasses.replace(
                    w, interception=InterceptionMode.EXPLICIT))).listeners}
    for target in (8080, 9080, 9443):
        mine = [c for c in inbound.filter_chains
                if c.filter_chain_match.destination_port.value == target]
        theirs = list(explicit[target].filter_chains)
        assert [c.filter_chain_match.transport_protocol for c in mine] == [
            c.filter_chain_match.transport_protocol for c in theirs]
        assert [c.transport_socket for c in mine] == [c.transport_socket for c in theirs]
        assert [_without_stat_prefix(c) for c in mine] == [
            _without_stat_prefix(c) for c in theirs]
    names = [c.name for c in inbound.filter_chains]
    assert names == ["virtualInbound-blackhole", "inbound-mtls-8080", "inbound-mtls-9080",
                     "inbound-plaintext-9080", "inbound-9443",
                     "virtualInbound-catchall-tcp-mtls"]  # the workload's own mode: STRICT
    inspector = inbound.listener_filters[1]
    assert inspector.name == "envoy.filters.listener.tls_inspector"
    # skipped where only plaintext is taken (a server-first protocol would stall)
    assert (inspector.filter_disabled.destination_port_range.start,
            inspector.filter_disabled.destination_port_range.end) == (9443, 9444)


def _without_stat_prefix(chain: Any) -> list[bytes]:
    out = []
    for f in chain.filters:
        for kind in (http_connection_manager_pb2.HttpConnectionManager, tcp_proxy_pb2.TcpProxy):
            if f.typed_config.Is(kind.DESCRIPTOR):
                config = kind()
                f.typed_config.Unpack(config)
                config.stat_prefix = ""
                out.append(config.SerializeToString(deterministic=True))
                break
        else:
            out.append(f.SerializeToString(deterministic=True))
    return out


def test_permissive_passthrough_takes_tls_and_plaintext() -> None:
    w = pod()
    m = _secured(_peer(MtlsMode.PERMISSIVE), w, port(80, target=8080))
    (inbound,) = translate_proxy(m, proxy(w, T)).listeners
    assert [c.name for c in inbound.filter_chains][-2:] == [
        "virtualInbound-catchall-tcp-mtls", "virtualInbound-catchall-tcp-plaintext"]
    assert not inbound.listener_filters[1].HasField("filter_disabled")


def test_the_inbound_capture_port_is_refused_as_a_target() -> None:
    w = pod()
    m = mesh(svc("catalog", "10.96.0.10", port(80, target=15006), port(9080)), w)
    out = translate_proxy(m, proxy(w, T))
    (d,) = out.diagnostics
    assert d.code == "workload.inbound-port-reserved"
    assert [c.name for c in out.clusters] == ["inbound|9080||", "InboundPassthroughCluster"]


def test_an_ipv6_pod_is_warned_about() -> None:
    w = pod(address="fd00::11")
    out = translate_proxy(mesh(svc("catalog", "fd00:96::10", port(80)), w), proxy(w, T))
    (d,) = out.diagnostics
    assert (d.code, d.severity) == ("workload.transparent-ipv6-unsupported", Severity.WARNING)


def test_transparent_proxies_need_no_address_of_their_own() -> None:
    w = pod(address="vm.example.com")  # a WorkloadEntry with a hostname, say
    out = translate_proxy(mesh(svc("catalog", "10.96.0.10", port(80)), w), proxy(w, T))
    assert out.diagnostics == []
    assert [x.name for x in out.listeners] == ["virtualInbound"]
