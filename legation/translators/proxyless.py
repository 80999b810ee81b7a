"""Proxyless gRPC clients: what gRPC's own xDS client asks for, in forms it accepts.

A node whose id has the type ``proxyless`` (``proxyless~<ip>~<name>.<ns>~<ns>.svc.
<domain>``, what `legation bootstrap --grpc` writes) is a gRPC channel, not an Envoy
(Istio marks the same with node metadata ``GENERATOR: grpc``). gRPC resolves
``xds:///<host>:<port>`` by asking LDS for a Listener named exactly that (gRFC A27),
so for every HTTP service port the namespace sees, each ``host:port`` form Istio
accepts (``svc.ns.svc.cluster.local:p``, ``svc.ns.svc:p``, ``svc.ns:p``, and ``svc:p`` in
the client's own namespace) is a Listener with an `api_listener` (an HTTP connection
manager with RDS) and a RouteConfiguration of the same name holding that service's
virtual host, the one sidecars get (VirtualService splits, header matches, retries,
timeouts, faults). Per gRFC A39 only the fault filter and the router are used; per-route
configs of other filters are left out.

Clusters: gRPC's balancers (gRFC A42/A48) take ROUND_ROBIN and RING_HASH, not
LEAST_REQUEST, Istio's default here: the client's copies of the clusters its routes
use say ROUND_ROBIN (other settings kept), and their ClusterLoadAssignments carry a
locality (empty when unknown) and a weight per locality group (the sum of its
endpoints' weights), which gRPC's weighted-target balancer requires.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

from legation.model import MeshSnapshot
from legation.translators import routes, subsets
from legation.translators.common import pack
from legation.translators.result import Translated

FAULT = "envoy.filters.http.fault"
ROUTER = "envoy.filters.http.router"
HCM = http_connection_manager_pb2.HttpConnectionManager


def proxyless_resources(mesh: MeshSnapshot, namespace: str) -> Translated:
    """Listeners, route configurations and clusters for gRPC clients of `namespace`."""
    config, diagnostics = routes.http_proxy_route(mesh, namespace)
    out = Translated(diagnostics=diagnostics)
    used: set[str] = set()
    for vhost in config.virtual_hosts:
        targets = [d for d in vhost.domains if ":" in d and not d.startswith("*")]
        if not targets:
            continue  # the catch-all of unknown hosts: sidecars only
        kept = route_components_pb2.VirtualHost()
        kept.CopyFrom(vhost)
        kept.domains[:] = ["*"]
        faults = False
        for route in kept.routes:
            for name in list(route.typed_per_filter_config):
                if name != FAULT:
                    del route.typed_per_filter_config[name]  # gRPC knows no other filter
            faults = faults or FAULT in route.typed_per_filter_config
            used.update(_clusters(route))
        for target in targets:
            rc = route_pb2.RouteConfiguration(name=target)
            rc.virtual_hosts.add().CopyFrom(kept)
            out.routes.append(rc)
            out.listeners.append(_api_listener(target, faults=faults))
    mesh_wide = subsets.outbound_clusters(mesh)
    out.clusters.extend(_for_grpc(c) for c in mesh_wide.clusters if c.name in used)
    out.endpoints.extend(_weighted(a) for a in mesh_wide.endpoints if a.cluster_name in used)
    return out


def _weighted(cla: endpoint_pb2.ClusterLoadAssignment) -> endpoint_pb2.ClusterLoadAssignment:
    copy = endpoint_pb2.ClusterLoadAssignment()
    copy.CopyFrom(cla)
    for group in copy.endpoints:
        group.locality.SetInParent()
        if not group.HasField("load_balancing_weight"):
            group.load_balancing_weight.value = sum(
                e.load_balancing_weight.value or 1 for e in group.lb_endpoints) or 1
    return copy


def _api_listener(name: str, *, faults: bool) -> listener_pb2.Listener:
    filters = [http_connection_manager_pb2.HttpFilter(name=FAULT, typed_config=pack(
        fault_pb2.HTTPFault()))] if faults else []
    filters.append(http_connection_manager_pb2.HttpFilter(
        name=ROUTER, typed_config=pack(router_pb2.Router())))
    hcm = HCM(
        stat_prefix=name,
        rds=http_connection_manager_pb2.Rds(
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3),
            route_config_name=name),
        http_filters=filters)
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(hcm)))


def _clusters(route: route_components_pb2.Route) -> set[str]:
    action = route.route
    if action.cluster:
        return {action.cluster}
    return {c.name for c in action.weighted_clusters.clusters}


def _for_grpc(cluster: cluster_pb2.Cluster) -> cluster_pb2.Cluster:
    copy = cluster_pb2.Cluster()
    copy.CopyFrom(cluster)
    if copy.lb_policy not in (cluster_pb2.Cluster.ROUND_ROBIN, cluster_pb2.Cluster.RING_HASH):
        copy.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        copy.ClearField("least_request_lb_config")
    return copy
