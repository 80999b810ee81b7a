"""CDS: outbound EDS clusters for the whole mesh, inbound clusters for one workload.

Outbound: one EDS cluster per (service, port), every namespace, named
``outbound|<port>||<fqdn>`` and filled over ADS by endpoints.py, plus one
``outbound|<port>|<subset>|<fqdn>`` per subset of the host's DestinationRule
(subsets.py lists them); the rule's traffic policy shapes each one
(trafficpolicy.py) and picks its transport socket (upstream_tls.py). Inbound
(explicit mode): one cluster ``inbound|<port>||`` per inbound port of the
workload (inbound.py), pointing at the app's address.

Transparent mode (transparent.py) adds Istio's ORIGINAL_DST clusters:
``PassthroughCluster`` (outbound, to where the app dialled),
``InboundPassthroughCluster`` and its ``inbound|<port>||`` clusters (to the
pod's own address, from ``127.0.0.6``), and ``BlackHoleCluster``.
"""

from __future__ import annotations

import ipaddress

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from legation.model import (
    AppAddress,
    Diagnostic,
    MeshSnapshot,
    Protocol,
    Resolution,
    Service,
    ServicePort,
    Severity,
    effective_policy,
)
from legation.translators import names
from legation.translators.common import (
    CONNECT_TIMEOUT_SECONDS,
    DNS_LOOKUP_FAMILY,
    PASSTHROUGH_BIND,
    ads_config_source,
    default_circuit_breakers,
    is_ip,
    seconds,
    socket_address,
    upstream_protocol_options,
)
from legation.translators.endpoints import dns_assignment
from legation.translators.forwardproxy import make_forward_proxy
from legation.translators.inbound import InboundPort
from legation.translators.trafficpolicy import apply_policy
from legation.translators.upstream_tls import (
    auto_mtls_matches,
    cluster_tls_context,
    upstream_transport_socket,
)


def outbound_cluster_ports(
    mesh: MeshSnapshot,
) -> tuple[list[tuple[Service, ServicePort]], list[Diagnostic]]:
    """Every (service, port) that gets an outbound cluster: services in mesh
    order, each one's ports by number.

    Two clusters with one name make Envoy reject the whole update, so the
    first claim wins: a port number declared twice in a service, or two
    services with the same FQDN (only possible with dotted names, which
    Kubernetes forbids but a hand-written file may contain).
    """
    out: list[tuple[Service, ServicePort]] = []
    diagnostics: list[Diagnostic] = []
    owners: dict[str, Service] = {}
    for svc in mesh.services:
        fqdn = svc.fqdn(mesh.domain)
        owner = owners.setdefault(fqdn, svc)
        if owner is not svc:
            diagnostics.append(_duplicate_fqdn(svc, owner, fqdn))
            continue
        first: dict[int, ServicePort] = {}
        for index, sp in enumerate(svc.ports):
            if first.setdefault(sp.port, sp) is not sp:
                diagnostics.append(_duplicate_port(svc, index, sp))
        out.extend((svc, first[number]) for number in sorted(first))
    return out, diagnostics


def outbound_cluster(
    mesh: MeshSnapshot, svc: Service, port: ServicePort, subset: str = ""
) -> cluster_pb2.Cluster:
    """An EDS cluster with Istio's defaults (connect timeout, LEAST_REQUEST, breakers),
    shaped by the DestinationRule of the service, if any."""
    fqdn = svc.fqdn(mesh.domain)
    cluster = cluster_pb2.Cluster(
        name=names.outbound_cluster(fqdn, port.port, subset),
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        # Istio's default load balancer (istio/istio
        # releasenotes/notes/new_lb_algorithm_default.yaml: ROUND_ROBIN -> LEAST_REQUEST).
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        circuit_breakers=default_circuit_breakers(),
    )
    rule = mesh.destination_rule_for(fqdn)
    policy = effective_policy(rule, subset, port.port)
    apply_policy(cluster, policy, port.protocol)
    resolution = svc.entry.resolution if svc.entry is not None else Resolution.STATIC
    if resolution.forwarded:
        make_forward_proxy(cluster)
    elif resolution.by_dns:
        cluster.type = (cluster_pb2.Cluster.STRICT_DNS if resolution is Resolution.DNS
                        else cluster_pb2.Cluster.LOGICAL_DNS)
        cluster.dns_lookup_family = DNS_LOOKUP_FAMILY
        cluster.respect_dns_ttl = True
        selector = next((s.labels for s in (rule.subsets if rule else ()) if s.name == subset),
                        ())
        cluster.load_assignment.CopyFrom(dns_assignment(mesh, svc, port, subset, selector))
    else:
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_config_source())
    tls_context = cluster_tls_context(mesh, svc, port, subset)
    socket = upstream_transport_socket(policy.tls, tls_context)
    if socket is not None:
        cluster.transport_socket.CopyFrom(socket)
    cluster.transport_socket_matches.extend(auto_mtls_matches(policy.tls, tls_context))
    return cluster


def inbound_cluster(inbound: InboundPort) -> cluster_pb2.Cluster:
    """A cluster with the app as its only host: STATIC for an IP, STRICT_DNS for a name."""
    name = names.inbound_cluster(inbound.port)
    app = inbound.app
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC if is_ip(app.host) else cluster_pb2.Cluster.STRICT_DNS,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        circuit_breakers=default_circuit_breakers(),
        load_assignment=endpoint_pb2.ClusterLoadAssignment(
            cluster_name=name,
            endpoints=[
                endpoint_components_pb2.LocalityLbEndpoints(
                    lb_endpoints=[
                        endpoint_components_pb2.LbEndpoint(
                            endpoint=endpoint_components_pb2.Endpoint(
                                address=socket_address(app.host, app.port)
                            )
                        )
                    ]
                )
            ],
        ),
    )
    for key, value in upstream_protocol_options(inbound.protocol).items():
        cluster.typed_extension_protocol_options[key].CopyFrom(value)
    return cluster


# -- transparent mode ------------------------------------------------------------------


def transparent_inbound_cluster(inbound: InboundPort) -> cluster_pb2.Cluster:
    """``inbound|<port>||`` of a transparent proxy: to the original destination (the pod's
    ``<podIP>:<port>``) from ``127.0.0.6``, as Istio since 1.10 (transparent.py); when
    app-ports maps the port, the explicit-mode cluster to that address instead."""
    if inbound.app != AppAddress(port=inbound.port):
        cluster = inbound_cluster(inbound)
        if is_ip(inbound.app.host) and not ipaddress.ip_address(inbound.app.host).is_loopback:
            _bind_passthrough(cluster)
        return cluster
    cluster = _original_dst(names.inbound_cluster(inbound.port))
    _bind_passthrough(cluster)
    for key, value in upstream_protocol_options(inbound.protocol).items():
        cluster.typed_extension_protocol_options[key].CopyFrom(value)
    return cluster


def passthrough_cluster() -> cluster_pb2.Cluster:
    """Outbound traffic to destinations the mesh does not know, HTTP (allow_any) or TCP;
    HTTP upstream in the client's own version, as Istio's."""
    cluster = _original_dst(names.PASSTHROUGH_CLUSTER)
    for key, value in upstream_protocol_options(Protocol.UNKNOWN).items():
        cluster.typed_extension_protocol_options[key].CopyFrom(value)
    return cluster


def inbound_passthrough_cluster() -> cluster_pb2.Cluster:
    """Inbound traffic to ports no service declares, to the pod's own address."""
    cluster = _original_dst(names.INBOUND_PASSTHROUGH_CLUSTER)
    _bind_passthrough(cluster)
    return cluster


def blackhole_cluster() -> cluster_pb2.Cluster:
    """A cluster without endpoints: a connection routed to it is closed."""
    return cluster_pb2.Cluster(
        name=names.BLACKHOLE_CLUSTER,
        type=cluster_pb2.Cluster.STATIC,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
    )


def _original_dst(name: str) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.ORIGINAL_DST,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        circuit_breakers=default_circuit_breakers(),
    )


def _bind_passthrough(cluster: cluster_pb2.Cluster) -> None:
    """Connect from 127.0.0.6: Istio's iptables rules let that source through instead of
    redirecting the sidecar's own connection to the pod IP back to it (istio/istio
    pilot/pkg/networking/core/cluster_builder.go, buildInboundPassthroughCluster)."""
    cluster.upstream_bind_config.source_address.address = PASSTHROUGH_BIND
    cluster.upstream_bind_config.source_address.port_value = 0


def _duplicate_port(svc: Service, index: int, sp: ServicePort) -> Diagnostic:
    return Diagnostic(
        ref=svc.ref,
        field=f"spec.ports[{index}].port",
        code="service.port-duplicate",
        message=(
            f"port {sp.port} is declared more than once; only the first declaration is "
            "served (expected each port number once)"
        ),
        severity=Severity.WARNING,
    )


def _duplicate_fqdn(svc: Service, owner: Service, fqdn: str) -> Diagnostic:
    return Diagnostic(
        ref=svc.ref,
        field="metadata.name",
        code="service.fqdn-conflict",
        message=(
            f"its host name {fqdn} is also the host name of Service "
            f"{owner.namespace}/{owner.name}, which is served instead (expected names "
            "without dots, so that every service has its own host name)"
        ),
    )
