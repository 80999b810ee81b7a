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
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from legation.model import Diagnostic, MeshSnapshot, Service, ServicePort, Severity
from legation.translators import names
from legation.translators.clusters import outbound_cluster_ports
from legation.translators.common import pack

HTTP_DEFAULT_PORT = 80


def http_proxy_route(
    mesh: MeshSnapshot, namespace: str
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
        config.virtual_hosts.append(
            route_components_pb2.VirtualHost(
                name=vhost,
                domains=domains,
                routes=[_route(names.outbound_cluster(fqdn, sp.port))],
            )
        )
    return config, diagnostics


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


def _route(cluster: str) -> route_components_pb2.Route:
    return route_components_pb2.Route(
        name=names.DEFAULT_ROUTE,
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(
            cluster=cluster,
            # Istio disables Envoy's 15 s route timeout unless a VirtualService sets one.
            timeout=duration_pb2.Duration(seconds=0),
            retry_policy=default_retry_policy(),
        ),
    )


def default_retry_policy() -> route_components_pb2.RetryPolicy:
    """Istio's default retry policy (istio/istio
    pilot/pkg/networking/core/route/retry/retry.go, DefaultPolicy): 2 retries on
    connection failures, refused streams, gRPC unavailable/cancelled and 503,
    preferring hosts not tried yet."""
    policy = route_components_pb2.RetryPolicy
    return policy(
        retry_on="connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
        num_retries=wrappers_pb2.UInt32Value(value=2),
        retriable_status_codes=[503],
        retry_host_predicate=[
            policy.RetryHostPredicate(
                name="envoy.retry_host_predicates.previous_hosts",
                typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate()),
            )
        ],
        host_selection_retry_max_attempts=5,
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
