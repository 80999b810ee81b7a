"""RDS: the outbound ``http_proxy`` RouteConfiguration as seen from one namespace.

One virtual host per HTTP-ish port of every service in the mesh, named
``<fqdn>:<port>``. Its domains are the names a client in `namespace` may use
for that service, each with ``:<port>``: the short name (services of that
namespace only), ``name.ns``, ``name.ns.svc`` and the FQDN.

A Host header without a port means port 80 in HTTP, so the portless forms go
to ONE port per service: its port 80 when that port is HTTP-ish, otherwise
its lowest HTTP-ish port (so ``http://catalog/`` reaches a service that only
serves HTTP on 9080). A ServiceEntry host is called by that name only, and
one resolved by the dynamic forward proxy gets the portless form on port 80
only (that proxy dials the Host header's port, 80 when it has none). Envoy
rejects a RouteConfiguration in which two virtual hosts share a domain, so a
domain is given to the first virtual host that claims it (services sorted by
namespace/name, then port) and a diagnostic reports the loser. There is no
catch-all virtual host: an unknown Host gets Envoy's 404, never some random
service.

A VirtualService visible in `namespace` replaces a service's default route
with its own rules (httproute.py) on every HTTP port where they yield a
route; an exact host beats a wildcard one, a longer wildcard a shorter one
(as Istio's mostSpecificWildcardVsIndex). Hosts of a VirtualService that
name no service get a virtual host of their own, ``<host>:80``, answering to
``<host>`` and ``<host>:80``: Istio routes such hosts on port 80 only.

Transparent mode (transparent.py) routes by the destination port instead:
`port_routes` gives one RouteConfiguration per HTTP-ish service port number,
named by the number (``9080``), as Istio's per-port outbound routes. Its
virtual hosts are the services with that port, built as above, except that
every virtual host gets the portless forms (the port is already known) plus
the service's cluster IP with and without ``:<port>`` (a client that dials
the IP sends it as its Host); external VirtualService hosts go into route
``80``.

Both modes end with the catch-all virtual host of the mesh's
outboundTrafficPolicy (outbound.py). In explicit mode a non-HTTP service port
gets a virtual host too, ``<fqdn>:<port>`` answering to its ``host:port``
forms, whose one route tunnels CONNECT requests to its cluster.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from legation.model import (
    Diagnostic,
    MeshSnapshot,
    Service,
    ServicePort,
    Severity,
    VirtualService,
    effective_policy,
)
from legation.model.hosts import host_matches, specificity
from legation.translators import names, outbound
from legation.translators.clusters import outbound_cluster_ports
from legation.translators.common import service_vip
from legation.translators.httproute import SourceKey, hash_policy, virtual_service_routes
from legation.translators.retry import default_retry_policy

HTTP_DEFAULT_PORT = 80
ENVOY_DIRECT_BODY_LIMIT = 4096  # Envoy's default max_direct_response_body_size_bytes
DIRECT_BODY_LIMIT = 1024 * 1024  # what Istio raises it to

__all__ = ["default_retry_policy", "external_hosts", "http_proxy_route", "port_routes"]


def http_proxy_route(
    mesh: MeshSnapshot, namespace: str, source: SourceKey = frozenset()
) -> tuple[route_pb2.RouteConfiguration, list[Diagnostic]]:
    config = _config(names.HTTP_PROXY_ROUTE)
    ports, _ = outbound_cluster_ports(mesh)  # duplicates are reported by translate_mesh
    build = _Builder(mesh, namespace, source, ports)
    portless = _portless_ports(ports)
    for svc, sp in ports:
        if sp.protocol.is_http:
            build.service_host(config, svc, sp, portless[(svc.namespace, svc.name)] == sp.port)
        else:
            build.tunnel_host(config, svc, sp)
    for host, vs in build.external:
        build.external_host(config, host, vs)
    config.virtual_hosts.append(outbound.unknown_hosts(mesh.config, connect=True))
    build.diagnostics.extend(_tcp_not_applied(vs) for vs in mesh.virtual_services_for(namespace)
                             if vs.tcp)
    build.diagnostics.extend(tls_not_applied(vs) for vs in mesh.virtual_services_for(namespace)
                             if vs.tls)
    _raise_body_limit(config)
    return config, build.diagnostics


def port_routes(
    mesh: MeshSnapshot, namespace: str, source: SourceKey = frozenset()
) -> tuple[list[route_pb2.RouteConfiguration], list[Diagnostic]]:
    """Transparent mode: one RouteConfiguration per HTTP-ish port number (module docstring)."""
    ports, _ = outbound_cluster_ports(mesh)
    build = _Builder(mesh, namespace, source, ports)
    by_port: dict[int, list[tuple[Service, ServicePort]]] = {}
    for svc, sp in ports:
        if sp.protocol.is_http:
            by_port.setdefault(sp.port, []).append((svc, sp))
    if any(vs.http for _, vs in build.external):
        by_port.setdefault(HTTP_DEFAULT_PORT, [])
    out = []
    for number in sorted(by_port):
        config = _config(names.port_route(number))
        build.claimed = {}
        for svc, sp in by_port[number]:
            build.service_host(config, svc, sp, True, vip=service_vip(svc))
        if number == HTTP_DEFAULT_PORT:
            for host, vs in build.external:
                build.external_host(config, host, vs)
        config.virtual_hosts.append(outbound.unknown_hosts(mesh.config, connect=False))
        _raise_body_limit(config)
        out.append(config)
    return out, build.diagnostics


def external_hosts(mesh: MeshSnapshot, namespace: str) -> bool:
    """Whether a VirtualService seen from `namespace` routes a host that names no service
    (transparent mode then catches every destination of port 80: such hosts have no IP)."""
    ports, _ = outbound_cluster_ports(mesh)
    external = _virtual_services(mesh, namespace, {s.fqdn(mesh.domain) for s, _ in ports})[1]
    return any(vs.http for _, vs in external)


def _config(name: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=name,
        # Clusters arrive over CDS independently; an RDS update must not be
        # rejected because CDS is a step behind (Istio sets this too).
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )


def _raise_body_limit(config: route_pb2.RouteConfiguration) -> None:
    if any(_body_size(r) > ENVOY_DIRECT_BODY_LIMIT
           for v in config.virtual_hosts for r in v.routes):
        config.max_direct_response_body_size_bytes.value = DIRECT_BODY_LIMIT


class _Builder:
    """Virtual hosts for one client namespace (and source key); `claimed` maps each
    domain of the configuration being built to the virtual host that has it."""

    def __init__(self, mesh: MeshSnapshot, namespace: str, source: SourceKey,
                 ports: list[tuple[Service, ServicePort]]) -> None:
        self.mesh, self.namespace, self.source = mesh, namespace, source
        self.by_host, self.external = _virtual_services(
            mesh, namespace, {s.fqdn(mesh.domain) for s, _ in ports})
        self.claimed: dict[str, str] = {}
        self.diagnostics: list[Diagnostic] = []

    def service_host(self, config: route_pb2.RouteConfiguration, svc: Service,
                     sp: ServicePort, portless: bool, vip: str = "") -> None:
        fqdn = svc.fqdn(self.mesh.domain)
        vhost = names.virtual_host_name(fqdn, sp.port)
        domains = []
        for domain in _domains(svc, sp, fqdn, self.namespace, portless, vip):
            owner = self.claimed.setdefault(domain, vhost)
            if owner == vhost:
                domains.append(domain)
            else:
                self.diagnostics.append(_conflict(svc, sp, domain, owner))
        routes: list[route_components_pb2.Route] = []
        vs = self.by_host.get(fqdn)
        if vs is not None:
            routes, found = virtual_service_routes(
                self.mesh, vs, port=sp.port, namespace=self.namespace, source=self.source)
            self.diagnostics.extend(found)
        config.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=vhost, domains=domains,
                routes=routes or [_default_route(self.mesh, fqdn, sp)],
            )
        )

    def tunnel_host(self, config: route_pb2.RouteConfiguration, svc: Service,
                    sp: ServicePort) -> None:
        """A non-HTTP port (explicit mode): CONNECT ``host:port`` tunnels to its cluster."""
        fqdn = svc.fqdn(self.mesh.domain)
        vhost = names.virtual_host_name(fqdn, sp.port)
        domains = [d for d in _domains(svc, sp, fqdn, self.namespace, False)
                   if self.claimed.setdefault(d, vhost) == vhost]
        if domains:  # a forward-proxy cluster dials the CONNECT authority itself
            config.virtual_hosts.append(route_components_pb2.VirtualHost(
                name=vhost, domains=domains,
                routes=[outbound.connect_route(names.outbound_cluster(fqdn, sp.port))]))

    def external_host(self, config: route_pb2.RouteConfiguration, host: str,
                      vs: VirtualService) -> None:
        vhost = names.virtual_host_name(host, HTTP_DEFAULT_PORT)
        routes, found = virtual_service_routes(
            self.mesh, vs, port=HTTP_DEFAULT_PORT, namespace=self.namespace, source=self.source)
        self.diagnostics.extend(found)
        domains = []
        for domain in (host, f"{host}:{HTTP_DEFAULT_PORT}"):
            if self.claimed.setdefault(domain, vhost) == vhost:
                domains.append(domain)
        if routes and domains:
            config.virtual_hosts.append(
                route_components_pb2.VirtualHost(name=vhost, domains=domains, routes=routes))


def _virtual_services(
    mesh: MeshSnapshot, namespace: str, services: set[str]
) -> tuple[dict[str, VirtualService], list[tuple[str, VirtualService]]]:
    """Service FQDN -> the VirtualService that routes it; and hosts outside the mesh."""
    claims: dict[str, tuple[tuple[int, int], VirtualService]] = {}
    external: dict[str, VirtualService] = {}
    for vs in mesh.virtual_services_for(namespace):
        for host in vs.hosts:
            pattern = mesh.qualify_host(host, vs.namespace).fqdn
            if pattern.startswith("*"):
                matched = [s for s in services if host_matches(pattern, s)]
            else:
                matched = [pattern] if pattern in services else []
            if not matched:
                external.setdefault(pattern, vs)
            for fqdn in matched:
                rank = specificity(pattern)
                if fqdn not in claims or rank < claims[fqdn][0]:
                    claims[fqdn] = (rank, vs)
    return {k: v for k, (_, v) in claims.items()}, sorted(external.items())


def _body_size(route: route_components_pb2.Route) -> int:
    body = route.direct_response.body
    return len(body.inline_string.encode()) + len(body.inline_bytes)


def _portless_ports(
    ports: list[tuple[Service, ServicePort]],
) -> dict[tuple[str, str], int]:
    """Per service: the port whose virtual host gets the portless domains (0: none)."""
    http_ports: dict[tuple[str, str], list[int]] = {}
    for svc, sp in ports:
        bucket = http_ports.setdefault((svc.namespace, svc.name), [])
        # A forward-proxy cluster dials the port of the Host header, 80 when it has none.
        forwarded = svc.entry is not None and svc.entry.resolution.forwarded
        if sp.protocol.is_http and (sp.port == HTTP_DEFAULT_PORT or not forwarded):
            bucket.append(sp.port)
    return {
        key: HTTP_DEFAULT_PORT if HTTP_DEFAULT_PORT in found else min(found, default=0)
        for key, found in http_ports.items()
    }


def _domains(svc: Service, sp: ServicePort, fqdn: str, namespace: str, portless: bool,
             vip: str = "") -> list[str]:
    if svc.entry is not None:
        hosts = [fqdn]  # a ServiceEntry host is called by that name only
    else:
        hosts = [f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc", fqdn]
        if svc.namespace == namespace:
            hosts.insert(0, svc.name)
    if vip:
        hosts.append(f"[{vip}]" if ":" in vip else vip)  # an IPv6 Host is bracketed
    out = []
    for host in hosts:
        host = host.lower()  # Envoy compares domains case-insensitively
        if portless:
            out.append(host)
        out.append(f"{host}:{sp.port}")
    return out


def _default_route(mesh: MeshSnapshot, fqdn: str, sp: ServicePort) -> route_components_pb2.Route:
    """Istio's default route: every path to the service port's cluster, no timeout,
    the default retry policy, and the DestinationRule's consistent hash if any."""
    route = route_components_pb2.Route(
        name=names.DEFAULT_ROUTE,
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(
            cluster=names.outbound_cluster(fqdn, sp.port),
            # Istio disables Envoy's 15 s route timeout unless a VirtualService sets one.
            timeout=duration_pb2.Duration(seconds=0),
            retry_policy=default_retry_policy(),
        ),
    )
    lb = effective_policy(mesh.destination_rule_for(fqdn), "", sp.port).load_balancer
    policy = hash_policy(lb.consistent_hash if lb else None)
    if policy is not None:
        route.route.hash_policy.append(policy)
    return route


def _tcp_not_applied(vs: VirtualService) -> Diagnostic:
    return Diagnostic(
        ref=vs.ref, field="spec.tcp", code="virtualservice.tcp-not-applied",
        message="tcp routes are checked but not applied: explicit-mode sidecars reach other "
        "services only through their HTTP proxy listener, which carries HTTP, not raw TCP.",
        severity=Severity.INFO, line=vs.line_of("spec.tcp"),
    )


def tls_not_applied(vs: VirtualService) -> Diagnostic:
    return Diagnostic(
        ref=vs.ref, field="spec.tls", code="virtualservice.tls-not-applied",
        message="tls routes are applied by gateways (PASSTHROUGH servers), not by sidecars: "
        "a sidecar reaches a TLS service by its port, or by CONNECT in explicit mode.",
        severity=Severity.INFO, line=vs.line_of("spec.tls"))


def _conflict(svc: Service, sp: ServicePort, domain: str, owner: str) -> Diagnostic:
    return Diagnostic(
        ref=svc.ref,
        field="metadata.name",
        code="route.domain-conflict",
        message=(
            f"host {domain!r} of port {sp.port} already belongs to virtual host {owner!r} "
            "and is not routed to this service (expected host names unique across the mesh)"
        ),
        severity=Severity.WARNING,
    )
