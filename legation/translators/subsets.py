"""Every outbound cluster of the mesh and its ClusterLoadAssignment, subsets included.

For each (service, port) of `clusters.outbound_cluster_ports`: the default
cluster ``outbound|<port>||<fqdn>`` with all endpoints, then one cluster
``outbound|<port>|<subset>|<fqdn>`` per subset of the host's effective
DestinationRule (in the rule's order), whose assignment keeps only the
endpoints matching the subset's labels. Istio builds subset clusters for
every port of the host, whether or not a route uses them; so does Legation,
so that a VirtualService edit never waits for a cluster to warm.

`client_assignments` is the per-proxy part: locality load balancing
(locality.py) gives each client its own priorities and weights.
"""

from __future__ import annotations

from envoy.config.endpoint.v3.endpoint_pb2 import ClusterLoadAssignment

from legation.model import Locality, MeshSnapshot, Proxy, Workload, effective_policy
from legation.translators import clusters, endpoints
from legation.translators.locality import placement
from legation.translators.result import Translated


def outbound_clusters(mesh: MeshSnapshot) -> Translated:
    out = Translated()
    ports, diagnostics = clusters.outbound_cluster_ports(mesh)
    for svc, sp in ports:
        rule = mesh.destination_rule_for(svc.fqdn(mesh.domain))
        variants = [("", ())] + [(s.name, s.labels) for s in (rule.subsets if rule else ())]
        for subset, selector in variants:
            out.clusters.append(clusters.outbound_cluster(mesh, svc, sp, subset))
            cla, found = endpoints.load_assignment(mesh, svc, sp, subset, selector)
            out.endpoints.append(cla)
            diagnostics.extend(found)
    out.diagnostics.extend(diagnostics)
    return out


def client_assignments(mesh: MeshSnapshot, proxy: Proxy) -> list[ClusterLoadAssignment]:
    """The assignments locality load balancing makes different for this client.

    Same names as the mesh-wide ones, so they replace them in the proxy's
    snapshot; a cluster whose assignment this client sees unchanged is left out.
    """
    out = []
    locality = client_locality(mesh, proxy.workload)
    ports, _ = clusters.outbound_cluster_ports(mesh)
    for svc, sp in ports:
        fqdn = svc.fqdn(mesh.domain)
        rule = mesh.destination_rule_for(fqdn)
        if rule is None:
            continue
        for subset, selector in [("", ())] + [(s.name, s.labels) for s in rule.subsets]:
            client = placement(effective_policy(rule, subset, sp.port), locality,
                               proxy.workload.labels)
            if client is None:
                continue
            mine, _ = endpoints.load_assignment(mesh, svc, sp, subset, selector, client)
            shared, _ = endpoints.load_assignment(mesh, svc, sp, subset, selector)
            if mine != shared:
                out.append(mine)
    return out


def client_locality(mesh: MeshSnapshot, workload: Workload) -> Locality:
    """A workload's locality; a Pod without one takes its Node's (as its endpoints do)."""
    if workload.locality != Locality() or not workload.node_name:
        return workload.locality
    node = next((n for n in mesh.nodes if n.name == workload.node_name), None)
    return node.locality if node is not None else workload.locality
