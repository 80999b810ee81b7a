"""CDS: outbound EDS clusters for the whole mesh, inbound clusters for one workload.

Outbound: one EDS cluster per (service, port), every namespace, named
``outbound|<port>||<fqdn>`` and filled over ADS by endpoints.py, plus one
``outbound|<port>|<subset>|<fqdn>`` per subset of the host's DestinationRule
(subsets.py lists them); the rule's traffic policy shapes each one
(trafficpolicy.py) and picks its transport socket (upstream_tls.py). Inbound
(explicit mode): one cluster ``inbound|<port>||`` per inbound port of the
workload (inbound.py), pointing at the app's address.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from legation.model import (
    Diagnostic,
    MeshSnapshot,
    Service,
    ServicePort,
    Severity,
    effective_policy,
)
from legation.translators import names
from legation.translators.common import (
    CONNECT_TIMEOUT_SECONDS,
    ads_config_source,
    default_circuit_breakers,
    is_ip,
    seconds,
    socket_address,
    upstream_protocol_options,
)
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
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(eds_config=ads_config_source()),
        connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        # Istio's default load balancer (istio/istio
        # releasenotes/notes/new_lb_algorithm_default.yaml: ROUND_ROBIN -> LEAST_REQUEST).
        lb_policy=cluster_pb2.Cluster.LEAST_REQUEST,
        circuit_breakers=default_circuit_breakers(),
    )
    policy = effective_policy(mesh.destination_rule_for(fqdn), subset, port.port)
    apply_policy(cluster, policy, port.protocol)
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
