"""RDS: the outbound ``http_proxy`` RouteConfiguration as seen from one namespace.

One virtual host per HTTP-ish port of every service in the mesh, named
``<fqdn>:<port>``. Its domains are the names a client in `namespace` may use
for that service, each with ``:<port>``: the short name (services of that
namespace only), ``name.ns``, ``name.ns.svc`` and the FQDN.

A Host header without a port means port 80 in HTTP, so the portless forms go
to ONE port per service: its port 80 when that port is HTTP-ish, otherwise
its lowest HTTP-ish port (so ``http://catalog/`` reaches a service that only
serves HTTP on 9080). Envoy rejects a RouteConfiguration in which two virtual
hosts share a domain, so a domain is given to the first virtual host that
claims it (services sorted by namespace/name, then port) and a diagnostic
reports the loser. There is no catch-all virtual host: an unknown Host gets
Envoy's 404, never some random service.

A VirtualService visible in `namespace` replaces a service's default route
with its own rules (httproute.py) on every HTTP port where they yield a
route; an exact host beats a wildcard one, a longer wildcard a shorter one
(as Istio's mostSpecificWildcardVsIndex). Hosts of a VirtualService that
name no service get a virtual host of their own, ``<host>:80``, answering to
``<host>`` and ``<host>:80``: Istio routes such hosts on port 80 only.
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
from legation.translators import names
from legation.translators.clusters import outbound_cluster_ports
from legation.translators.httproute import SourceKey, hash_policy, virtual_service_routes
from legation.translators.retry import default_retry_policy

HTTP_DEFAULT_PORT = 80
ENVOY_DIRECT_BODY_LIMIT = 4096  # Envoy's default max_direct_response_body_size_bytes
DIRECT_BODY_LIMIT = 1024 * 1024  # what Istio raises it to

__all__ = ["default_retry_policy", "http_proxy_route"]


def http_proxy_route(
    mesh: MeshSnapshot, namespace: str, source: SourceKey = frozenset()
) -> tuple[route_pb2.RouteConfiguration, list[Diagnostic]]:
    config = route_pb2.RouteConfiguration(
        name=names.HTTP_PROXY_ROUTE,
        # Clusters arrive over CDS independently; an RDS update must not be
        # rejected because CDS is a step behind (Istio sets this too).
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
    claimed: dict[str, str] = {}  # domain -> virtual host that has it
    diagnostics: list[Diagnostic] = []
    ports, _ = outbound_cluster_ports(mesh)  # duplicates are reported by translate_mesh
    portless = _portless_ports(ports)
    by_host, external = _virtual_services(mesh, namespace, {s.fqdn(mesh.domain) for s, _ in ports})
    for svc, sp in ports:
        if not sp.protocol.is_http:
            continue
        fqdn = svc.fqdn(mesh.domain)
        vhost = names.virtual_host_name(fqdn, sp.port)
        domains = []
        with_portless = portless[(svc.namespace, svc.name)] == sp.port
        for domain in _domains(svc, sp, fqdn, namespace, with_portless):
            owner = claimed.setdefault(domain, vhost)
            if owner == vhost:
                domains.append(domain)
            else:
                diagnostics.append(_conflict(svc, sp, domain, owner))
        routes: list[route_components_pb2.Route] = []
        vs = by_host.get(fqdn)
        if vs is not None:
            routes, found = virtual_service_routes(
                mesh, vs, port=sp.port, namespace=namespace, source=source)
            diagnostics.extend(found)
        config.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=vhost, domains=domains, routes=routes or [_default_route(mesh, fqdn, sp)]
            )
        )
    for host, vs in external:
        _external_host(mesh, config, claimed, host, vs, namespace, source, diagnostics)
    diagnostics.extend(_tcp_not_applied(vs) for vs in mesh.virtual_services_for(namespace)
                       if vs.tcp)
    if any(_body_size(r) > ENVOY_DIRECT_BODY_LIMIT
           for v in config.virtual_hosts for r in v.routes):
        config.max_direct_response_body_size_bytes.value = DIRECT_BODY_LIMIT
    return config, diagnostics


def _virtual_services(
    mesh: MeshSnapshot, namespace: str, services: set[str]
) -> tuple[dict[str, VirtualService], list[tuple[str, VirtualService]]]:
    """Service FQDN -> the VirtualService that routes it; and hosts outside the mesh."""
    claims: dict[str, tuple[tuple[int, int], VirtualService]] = {}
    external: dict[str, VirtualService] = {}
    for vs in mesh.virtual_services_for(namespace):
        for host in vs.hosts:
            pattern = mesh.qualify_host(host, vs.namespace).fqdn
            matched = [s for s in services if host_matches(pattern, s)]
            if not matched:
                external.setdefault(pattern, vs)
            for fqdn in matched:
                rank = specificity(pattern)
                if fqdn not in claims or rank < claims[fqdn][0]:
                    claims[fqdn] = (rank, vs)
    return {k: v for k, (_, v) in claims.items()}, sorted(external.items())


def _external_host(
    mesh: MeshSnapshot,
    config: route_pb2.RouteConfiguration,
    claimed: dict[str, str],
    host: str,
    vs: VirtualService,
    namespace: str,
    source: SourceKey,
    diagnostics: list[Diagnostic],
) -> None:
    vhost = names.virtual_host_name(host, HTTP_DEFAULT_PORT)
    routes, found = virtual_service_routes(
        mesh, vs, port=HTTP_DEFAULT_PORT, namespace=namespace, source=source)
    diagnostics.extend(found)
    domains = []
    for domain in (host, f"{host}:{HTTP_DEFAULT_PORT}"):
        if claimed.setdefault(domain, vhost) == vhost:
            domains.append(domain)
    if routes and domains:
        config.virtual_hosts.append(
            route_components_pb2.VirtualHost(name=vhost, domains=domains, routes=routes))


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
        if sp.protocol.is_http:
            bucket.append(sp.port)
    return {
        key: HTTP_DEFAULT_PORT if HTTP_DEFAULT_PORT in found else min(found, default=0)
        for key, found in http_ports.items()
    }


def _domains(svc: Service, sp: ServicePort, fqdn: str, namespace: str, portless: bool) -> list[str]:
    hosts = [f"{svc.name}.{svc.namespace}", f"{svc.name}.{svc.namespace}.svc", fqdn]
    if svc.namespace == namespace:
        hosts.insert(0, svc.name)
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
