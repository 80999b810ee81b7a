"""Every outbound cluster of the mesh and its ClusterLoadAssignment, subsets included.

For each (service, port) of `clusters.outbound_cluster_ports`: the default
cluster ``outbound|<port>||<fqdn>`` with all endpoints, then one cluster
``outbound|<port>|<subset>|<fqdn>`` per subset of the host's effective
DestinationRule (in the rule's order), whose assignment keeps only the
endpoints matching the subset's labels. Istio builds subset clusters for
every port of the host, whether or not a route uses them; so does Legation,
so that a VirtualService edit never waits for a cluster to warm.

`client_assignments` is the per-proxy part: locality load balancing
(locality.py) gives each client its own priorities and weights. Which
clusters it can affect depends on their DestinationRules alone, so
`locality_targets` finds them once per mesh; proxies then only visit those
(none, in a mesh without outlier detection or `distribute` rules), and
proxies with the same `Client` (locality, and labels when failoverPriority
reads them) get the same assignments.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from legation.model import (
    Diagnostic,
    Labels,
    Locality,
    MeshSnapshot,
    Proxy,
    Service,
    ServicePort,
    Workload,
    effective_policy,
)
from legation.model.destination import PortPolicy
from legation.translators import clusters, endpoints
from legation.translators.common import is_ip
from legation.translators.locality import locality_aware, placement, reads_labels
from legation.translators.result import Translated


def outbound_clusters(mesh: MeshSnapshot) -> Translated:
    out = Translated()
    owned, diagnostics = outbound_services(mesh)
    for svc, ports in owned:
        out.extend(service_outbound(mesh, svc, ports))
    out.diagnostics[:0] = diagnostics
    return out


def outbound_services(
    mesh: MeshSnapshot,
) -> tuple[list[tuple[Service, tuple[ServicePort, ...]]], list[Diagnostic]]:
    """`clusters.outbound_cluster_ports` grouped by service, in mesh order."""
    ports, diagnostics = clusters.outbound_cluster_ports(mesh)
    grouped: dict[int, tuple[Service, list[ServicePort]]] = {}
    for svc, sp in ports:
        grouped.setdefault(id(svc), (svc, []))[1].append(sp)
    return [(svc, tuple(sps)) for svc, sps in grouped.values()], diagnostics


def service_outbound(
    mesh: MeshSnapshot, svc: Service, ports: tuple[ServicePort, ...]
) -> Translated:
    """One service's part of `outbound_clusters`: its clusters and assignments (subsets
    too). Reads of `mesh` only what `service_inputs` returns, so equal inputs give
    byte-identical output (tests/unit/translators/test_views.py)."""
    out = Translated()
    rule = mesh.destination_rule_for(svc.fqdn(mesh.domain))
    variants = [("", ())] + [(s.name, s.labels) for s in (rule.subsets if rule else ())]
    for sp in ports:
        for subset, selector in variants:
            out.clusters.append(clusters.outbound_cluster(mesh, svc, sp, subset))
            if not svc.uses_eds:
                continue
            cla, found = endpoints.load_assignment(mesh, svc, sp, subset, selector)
            out.endpoints.append(cla)
            out.diagnostics.extend(found)
    return out


def service_inputs(
    mesh: MeshSnapshot, svc: Service, ports: tuple[ServicePort, ...]
) -> tuple[object, ...]:
    """Everything `service_outbound` reads of `mesh` for `svc`: the pipeline keeps a
    service's translation while these compare equal (an endpoint change elsewhere, a
    new service, leave it alone). Cheap: lookups in the snapshot's indexes."""
    eps = tuple(mesh.endpoints(svc, sp) for sp in ports)
    named = tuple(  # blamed by name in diagnostics on non-IP endpoints
        mesh.workload(*e.workload.split("/", 1))
        for group in eps for e in group if e.workload and not is_ip(e.address)
    )
    return (svc, ports, mesh.domain, mesh.destination_rule_for(svc.fqdn(mesh.domain)), eps,
            named, mesh.security, mesh.root_namespace, mesh.peer_authentications)


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityTarget:
    """An outbound cluster whose assignment locality load balancing may change per client."""

    service: Service
    port: ServicePort
    subset: str
    selector: Labels
    policy: PortPolicy
    shared: ClusterLoadAssignment  # what every other client gets (translate_mesh's)


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """All that locality load balancing reads of a client: proxies with equal `Client`s
    get the same assignments from the same targets."""

    locality: Locality
    labels: Labels  # () unless some target's failoverPriority reads labels


def locality_targets(mesh: MeshSnapshot) -> tuple[LocalityTarget, ...]:
    """Every cluster whose assignment may differ between clients, found once per mesh
    (usually none: without outlier detection or `distribute` all clients agree)."""
    out = []
    ports, _ = clusters.outbound_cluster_ports(mesh)
    for svc, sp in ports:
        rule = mesh.destination_rule_for(svc.fqdn(mesh.domain))
        if rule is None or not svc.uses_eds:
            continue
        for subset, selector in [("", ())] + [(s.name, s.labels) for s in rule.subsets]:
            policy = effective_policy(rule, subset, sp.port)
            if not locality_aware(policy):
                continue
            shared, _ = endpoints.load_assignment(mesh, svc, sp, subset, selector)
            out.append(LocalityTarget(service=svc, port=sp, subset=subset, selector=selector,
                                      policy=policy, shared=shared))
    return tuple(out)


def client_of(mesh: MeshSnapshot, proxy: Proxy, targets: tuple[LocalityTarget, ...]) -> Client:
    labels = proxy.workload.labels if any(reads_labels(t.policy) for t in targets) else ()
    return Client(locality=client_locality(mesh, proxy.workload), labels=labels)


def client_assignments(
    mesh: MeshSnapshot, proxy: Proxy, targets: tuple[LocalityTarget, ...] | None = None
) -> list[ClusterLoadAssignment]:
    """The assignments locality load balancing makes different for this client.

    Same names as the mesh-wide ones, so they replace them in the proxy's
    snapshot; a cluster whose assignment this client sees unchanged is left
    out. `targets`: `locality_targets(mesh)`, when the caller has them.
    """
    if targets is None:
        targets = locality_targets(mesh)
    if not targets:
        return []
    return assignments_for(mesh, client_of(mesh, proxy, targets), targets)


def assignments_for(
    mesh: MeshSnapshot, client: Client, targets: tuple[LocalityTarget, ...]
) -> list[ClusterLoadAssignment]:
    """`client_assignments` for every proxy whose `client_of` is `client`."""
    out = []
    for t in targets:
        where = placement(t.policy, client.locality, client.labels)
        if where is None:
            continue
        mine, _ = endpoints.load_assignment(mesh, t.service, t.port, t.subset, t.selector, where)
        if mine != t.shared:
            out.append(mine)
    return out


def client_locality(mesh: MeshSnapshot, workload: Workload) -> Locality:
    """A workload's locality; a Pod without one takes its Node's (as its endpoints do)."""
    if workload.locality != Locality() or not workload.node_name:
        return workload.locality
    node = next((n for n in mesh.nodes if n.name == workload.node_name), None)
    return node.locality if node is not None else workload.locality
