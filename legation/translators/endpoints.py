"""EDS: one ClusterLoadAssignment per outbound cluster, even an empty one.

Envoy keeps an EDS cluster warming until its assignment arrives, so every
outbound cluster gets one. Endpoints come from `MeshSnapshot.endpoints`,
grouped per locality (sorted), with their health and weight, and the
workload's ``ns/name`` as ``filter_metadata.istio.workload`` for debugging.
A subset cluster's assignment holds only the endpoints whose labels match the
subset's (an empty selector: all of them). With a client `Placement`
(locality.py) the groups also get that client's failover priorities and
locality weights.
"""

from __future__ import annotations

from collections import defaultdict

from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from google.protobuf import struct_pb2, wrappers_pb2

from legation.model import (
    Diagnostic,
    Endpoint,
    HealthStatus,
    Labels,
    Locality,
    MeshSnapshot,
    Service,
    ServicePort,
    Severity,
    selector_matches,
)
from legation.translators import names
from legation.translators.common import is_ip, socket_address
from legation.translators.locality import Placement, priority, weights
from legation.translators.upstream_tls import with_tls_mode

_HEALTH = {
    HealthStatus.HEALTHY: health_check_pb2.HEALTHY,
    HealthStatus.DRAINING: health_check_pb2.DRAINING,
    HealthStatus.UNHEALTHY: health_check_pb2.UNHEALTHY,
}


def load_assignment(
    mesh: MeshSnapshot,
    svc: Service,
    port: ServicePort,
    subset: str = "",
    selector: Labels = (),
    client: Placement | None = None,
    *,
    resolved: bool = False,
) -> tuple[endpoint_pb2.ClusterLoadAssignment, list[Diagnostic]]:
    """`resolved`: Envoy resolves the addresses (a DNS cluster's own assignment), so
    host names are kept; otherwise they are reported and left out."""
    name = names.outbound_cluster(svc.fqdn(mesh.domain), port.port, subset)
    groups: dict[tuple[int, Locality], list[endpoint_components_pb2.LbEndpoint]] = (
        defaultdict(list))
    totals: dict[Locality, int] = defaultdict(int)
    diagnostics: list[Diagnostic] = []
    for ep in mesh.endpoints(svc, port):  # sorted by (address, port)
        if selector and not selector_matches(selector, ep.labels):
            continue
        if not resolved and not is_ip(ep.address):
            diagnostics.append(_not_ip(mesh, svc, ep))
            continue
        level = priority(client, ep) if client is not None else 0
        groups[(level, ep.locality)].append(with_tls_mode(mesh, ep, _lb_endpoint(ep)))
        totals[ep.locality] += ep.weight or 1
    shares = weights(client, dict(totals)) if client is not None else None
    renumber = {level: i for i, level in enumerate(sorted({lv for lv, _ in groups}))}
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for level, locality in sorted(
        groups, key=lambda k: (k[0], k[1].region, k[1].zone, k[1].subzone)
    ):
        if shares is not None and not shares.get(locality):
            continue  # a distribute rule sends this client nothing there
        group = cla.endpoints.add(lb_endpoints=groups[(level, locality)],
                                  priority=renumber[level])
        if shares is not None:
            group.load_balancing_weight.value = shares[locality]
        if locality != Locality():
            group.locality.CopyFrom(
                base_pb2.Locality(
                    region=locality.region, zone=locality.zone, sub_zone=locality.subzone
                )
            )
    return cla, diagnostics


def dns_assignment(
    mesh: MeshSnapshot, svc: Service, port: ServicePort, subset: str = "",
    selector: Labels = (),
) -> endpoint_pb2.ClusterLoadAssignment:
    """The endpoints of a ServiceEntry host with DNS resolution, inline in its cluster:
    its endpoints (names or IPs), or with none listed the host itself on the target port
    (Istio: "the host field will be used as the DNS name of the endpoint")."""
    entry = svc.entry
    if entry is not None and not entry.endpoints and not svc.selector:
        target = port.target_port if isinstance(port.target_port, int) else port.port
        name = names.outbound_cluster(svc.fqdn(mesh.domain), port.port, subset)
        return endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[
            endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[
                endpoint_components_pb2.LbEndpoint(endpoint=endpoint_components_pb2.Endpoint(
                    address=socket_address(svc.name, target)))])])
    cla, _ = load_assignment(mesh, svc, port, subset, selector, resolved=True)
    return cla


def _lb_endpoint(ep: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    lb = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(ep.address, ep.port)),
        health_status=_HEALTH[ep.health],
    )
    if ep.weight > 0:
        lb.load_balancing_weight.CopyFrom(wrappers_pb2.UInt32Value(value=ep.weight))
    if ep.workload:
        lb.metadata.filter_metadata["istio"].CopyFrom(
            struct_pb2.Struct(fields={"workload": struct_pb2.Value(string_value=ep.workload)})
        )
    return lb


def _not_ip(mesh: MeshSnapshot, svc: Service, ep: Endpoint) -> Diagnostic:
    """Blame the workload when known (deduplicated by the caller), else the service."""
    namespace, _, name = ep.workload.partition("/")
    workload = mesh.workload(namespace, name) if ep.workload else None
    if workload is not None:
        ref, where = workload.ref, "spec.address"
        what = f"address {ep.address!r}"
    else:
        ref, where = svc.ref, ""
        what = f"endpoint address {ep.address!r} of {svc.namespace}/{svc.name}"
    return Diagnostic(
        ref=ref,
        field=where,
        code="endpoint.address-not-ip",
        message=(
            f"{what} is not an IP address and is left out of the service's endpoints "
            "(expected an IPv4 or IPv6 address; DNS names are not resolved)"
        ),
        severity=Severity.WARNING,
    )
