"""Gateway proxies: a listener per server port, routes from the bound VirtualServices.

A workload selected by Istio Gateways (model/gateway.py) gets, instead of a
sidecar's listeners, one listener per server port on its own address
(``<address>_<port>``), an HTTP connection manager whose routes come over
RDS as ``http.<port>`` (Istio's name), at the edge (`use_remote_address`).
The outbound clusters are the mesh's, shared with the sidecars.

Each server admits, per VirtualService namespace, the host patterns of its
`hosts` whose namespace part allows it. A VirtualService bound to the
server's Gateway contributes, for each of its hosts matching an admitted
pattern, a virtual host named ``<host>:<port>`` answering to that host (the
more specific of the two, as Istio intersects them) with and without the
port; VirtualServices for the same host are merged in (namespace, name)
order, as Istio merges them at gateways. A server with
`tls.httpsRedirect` answers every request with a redirect to https. A
host no virtual host answers gets Envoy's 404.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf import wrappers_pb2

from legation.model import Gateway, GatewayServer, MeshSnapshot, Proxy, VirtualService
from legation.model.hosts import host_matches, specificity
from legation.translators import names
from legation.translators.common import ads_config_source, socket_address
from legation.translators.httproute import virtual_service_routes
from legation.translators.listeners import (
    CORS_FILTER,
    FAULT_FILTER,
    HCM,
    HCM_FILTER,
    http_filters,
    network_filter,
)
from legation.translators.result import Translated


def gateway_resources(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """The listeners and route configurations of a gateway proxy (`proxy.gateways`)."""
    out = Translated()
    by_port: dict[int, list[tuple[Gateway, GatewayServer]]] = {}
    for gw in proxy.gateways:
        for server in gw.servers:
            by_port.setdefault(server.port, []).append((gw, server))
    for port in sorted(by_port):
        servers = by_port[port]
        bound = [(gw, s, mesh.bound_to(gw)) for gw, s in servers]
        config = _route_config(mesh, port, bound)
        filters = _needed_filters(vs for _, _, found in bound for vs in found)
        out.routes.append(config)
        out.listeners.append(_listener(proxy.workload.address, port, filters))
    return out


def _listener(address: str, port: int, filters: frozenset[str]) -> listener_pb2.Listener:
    hcm = HCM(
        stat_prefix=f"gateway_{address}_{port}",
        codec_type=HCM.AUTO,
        rds=http_connection_manager_pb2.Rds(config_source=ads_config_source(),
                                            route_config_name=names.gateway_route(port)),
        # The gateway is the edge: it appends the peer to X-Forwarded-For and trusts
        # nothing before it (Istio sets this on gateways).
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        http_filters=http_filters(filters),
    )
    return listener_pb2.Listener(
        name=names.listener_name(address, port),
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
        filter_chains=[listener_components_pb2.FilterChain(
            filters=[network_filter(HCM_FILTER, hcm)])],
    )


def _route_config(
    mesh: MeshSnapshot, port: int,
    bound: list[tuple[Gateway, GatewayServer, tuple[VirtualService, ...]]],
) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(
        name=names.gateway_route(port), validate_clusters=wrappers_pb2.BoolValue(value=False))
    hosts: dict[str, route_components_pb2.VirtualHost] = {}
    for gw, server, services in bound:
        for vs in services:
            patterns = server.admits(gw.namespace, vs.namespace)
            for host in _intersect(vs.hosts, patterns):
                vh = hosts.get(host)
                if vh is None:
                    vh = hosts[host] = route_components_pb2.VirtualHost(
                        name=names.virtual_host_name(host, port), domains=_domains(host, port))
                    if server.https_redirect:
                        vh.require_tls = route_components_pb2.VirtualHost.ALL
                routes, _ = virtual_service_routes(mesh, vs, port=port, namespace=gw.namespace,
                                                   source=frozenset(), gateway=gw.key)
                vh.routes.extend(routes)
    config.virtual_hosts.extend(hosts[h] for h in sorted(hosts, key=specificity))
    return config


def _intersect(vs_hosts: tuple[str, ...], patterns: tuple[str, ...]) -> list[str]:
    """The hosts a VirtualService serves on a server: each of its hosts matched by a server
    pattern, or each server pattern matched by its wildcard host; the more specific."""
    out: list[str] = []
    for host in vs_hosts:
        for pattern in patterns:
            if host_matches(pattern, host):
                out.append(host)
            elif host_matches(host, pattern):
                out.append(pattern)
    return list(dict.fromkeys(out))


def _domains(host: str, port: int) -> list[str]:
    return [host] if host == "*" else [host, f"{host}:{port}"]


def _needed_filters(services: Iterable[VirtualService]) -> frozenset[str]:
    """The optional HTTP filters (CORS, fault) the bound VirtualServices use."""
    found: set[str] = set()
    for vs in services:
        for rule in vs.http:
            if rule.cors is not None:
                found.add(CORS_FILTER)
            if rule.fault is not None:
                found.add(FAULT_FILTER)
    return frozenset(found)
