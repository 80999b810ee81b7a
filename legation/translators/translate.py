"""The translators' public entry points; see the package docstring for the split.

The three `translate_*` functions never emit the same resource name, with
one exception: the mesh owns ``outbound|...`` clusters and every
ClusterLoadAssignment, the namespace owns the ``http_proxy``
RouteConfiguration (explicit mode) or, for transparent proxies, the per-port
RouteConfigurations, ``virtualOutbound``, ``PassthroughCluster`` and
``BlackHoleCluster`` (transparent.py), the proxy owns the other listeners and
clusters, plus its own version of the assignments that locality load
balancing changes for it, which replace the mesh's in its snapshot
(`Snapshot.build`: the last resource of a name wins). Their diagnostics are
deduplicated (one bad workload selected by many ports is reported once).
"""

from __future__ import annotations

from collections.abc import Iterable

from legation.model import Diagnostic, InterceptionMode, MeshSnapshot, Proxy
from legation.model.telemetry import LogMode
from legation.translators import (
    clusters,
    listeners,
    names,
    outbound,
    routes,
    subsets,
    tracing,
    transparent,
)
from legation.translators.accesslog import log_clusters
from legation.translators.authn import inbound_security
from legation.translators.common import is_ip
from legation.translators.gateway import gateway_resources
from legation.translators.httproute import (
    SourceKey,
    filter_sources,
    needed_filters,
    source_key,
)
from legation.translators.inbound import inbound_ports
from legation.translators.result import Translated


def translate_mesh(mesh: MeshSnapshot) -> Translated:
    """Proxy-independent: every outbound cluster (subsets too) and its ClusterLoadAssignment."""
    out = subsets.outbound_clusters(mesh)
    out.diagnostics[:] = _unique(out.diagnostics)
    return out


def translate_namespace(
    mesh: MeshSnapshot,
    namespace: str,
    source: SourceKey = frozenset(),
    mode: InterceptionMode = InterceptionMode.EXPLICIT,
) -> Translated:
    """The outbound ``http_proxy`` RouteConfiguration as seen from `namespace`; for
    `mode` TRANSPARENT, what transparent proxies share instead (transparent.py).

    `source` (from `route_key`) names the VirtualService `sourceLabels` match
    blocks the client satisfies; proxies with the same namespace and key get
    the same configuration, so the common case (no sourceLabels) stays shared.
    The pipeline passes its `route_view` instead of the whole mesh: anything read
    here must be kept by `route_view` (tests/unit/translators/test_views.py).
    """
    if mode is InterceptionMode.TRANSPARENT:
        out = transparent.namespace_resources(mesh, namespace, source)
        out.diagnostics[:] = _unique(out.diagnostics)
        return out
    config, diagnostics = routes.http_proxy_route(mesh, namespace, source)
    # the explicit-mode PassthroughCluster: unknown hosts under ALLOW_ANY (outbound.py)
    return Translated(routes=[config], clusters=[outbound.forward_passthrough_cluster()],
                      diagnostics=_unique(diagnostics))


def route_key(mesh: MeshSnapshot, proxy: Proxy) -> SourceKey:
    """What, besides its namespace, a proxy's route configuration depends on."""
    return source_key(mesh, proxy)


def route_view(mesh: MeshSnapshot) -> MeshSnapshot:
    """The part of `mesh` route configurations are translated from: `translate_namespace`
    gives the same output for `mesh` and for this view, so (translators being pure) two
    meshes with equal views (an endpoint-only change) have the same route configurations.
    """
    return MeshSnapshot(
        domain=mesh.domain,
        root_namespace=mesh.root_namespace,
        services=mesh.services,
        virtual_services=mesh.virtual_services,
        destination_rules=mesh.destination_rules,
        config=mesh.config,
        telemetries=mesh.telemetries,
    )


def proxy_view(mesh: MeshSnapshot, namespace: str) -> MeshSnapshot:
    """The part of `mesh` that `translate_workload` reads for a proxy in `namespace`: the
    services that may select it, the VirtualServices that decide its optional HTTP
    filters (a routing edit elsewhere changes no listener), and the security policy.
    `translate_workload` gives the same output for `mesh` and for this view, so a proxy
    whose view and `Proxy` are unchanged keeps its own resources.
    """
    return MeshSnapshot(
        domain=mesh.domain,
        root_namespace=mesh.root_namespace,
        services=tuple(s for s in mesh.services if s.namespace == namespace),
        virtual_services=filter_sources(mesh, namespace),  # what needed_filters reads
        peer_authentications=mesh.peer_authentications,
        authorization_policies=mesh.authorization_policies,
        request_authentications=mesh.request_authentications,
        security=mesh.security,
        telemetries=mesh.telemetries,  # access logs (model/telemetry.py)
        config=mesh.config,
    )


def translate_proxy(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """What belongs to one workload: its inbound clusters and its listeners
    (`translate_workload`), and the ClusterLoadAssignments locality load balancing
    makes different for it (`subsets.client_assignments`; they replace the mesh-wide
    ones of the same name in its snapshot).
    """
    # A gateway proxy gets its servers' listeners and routes instead of a sidecar's.
    out = gateway_resources(mesh, proxy) if proxy.gateways else translate_workload(mesh, proxy)
    out.endpoints.extend(subsets.client_assignments(mesh, proxy))
    return out


def translate_workload(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """A proxy's inbound clusters and listeners. The pipeline passes its `proxy_view`
    instead of the whole mesh: anything read here must be kept by `proxy_view`
    (tests/unit/translators/test_views.py checks both give the same output).
    A transparent proxy's are transparent.py's `proxy_resources`.
    """
    if proxy.mode is InterceptionMode.TRANSPARENT:
        own = transparent.proxy_resources(mesh, proxy)
        own.diagnostics[:] = _unique(own.diagnostics)
        return own
    out = Translated()
    workload = proxy.workload
    diagnostics: list[Diagnostic] = []
    ports, found = inbound_ports(mesh, workload)
    diagnostics.extend(found)
    out.clusters.extend(clusters.inbound_cluster(p) for p in ports)
    if is_ip(workload.address):
        client = mesh.tracing_for(workload.namespace, workload.labels, LogMode.CLIENT)
        server = mesh.tracing_for(workload.namespace, workload.labels, LogMode.SERVER)
        out.clusters.extend(tracing.collector_cluster(t.provider) for t in
                            {t.provider: t for t in (client, server) if t}.values())
        out.clusters.extend(log_clusters(mesh.access_logs(workload, LogMode.CLIENT),
                                         mesh.access_logs(workload, LogMode.SERVER)))
        out.listeners.append(
            listeners.outbound_listener(workload, needed_filters(mesh, proxy.namespace),
                                        on_demand=proxy.on_demand,
                                        logs=mesh.access_logs(workload, LogMode.CLIENT),
                                        tracing=client)
        )
        for p in ports:
            security = inbound_security(mesh, workload, p)  # PeerAuthentication, RBAC
            diagnostics.extend(security.diagnostics)
            out.clusters.extend(c for c in security.clusters
                                if all(c.name != have.name for have in out.clusters))
            out.listeners.append(listeners.inbound_listener(
                workload, p, security, logs=mesh.access_logs(workload, LogMode.SERVER),
                tracing=server))
    else:
        diagnostics.append(listeners.address_not_ip(workload))
    out.diagnostics.extend(_unique(diagnostics))
    return out


def resolve_proxy(mesh: MeshSnapshot, node_id: str) -> Proxy | None:
    """The proxy a node id names, or None when it names no workload of the mesh."""
    parsed = names.parse_node_id(node_id)
    if parsed is None:
        return None
    name, namespace = parsed
    workload = mesh.workload(namespace, name)
    if workload is None:
        return None
    if node_id.startswith(names.PROXYLESS_NODE_TYPE + "~"):
        return Proxy(node_id=node_id, workload=workload, proxyless=True)
    return Proxy(node_id=node_id, workload=workload, mode=workload.interception,
                 gateways=mesh.gateways_of(workload.labels, workload.namespace))


def _unique(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return list(dict.fromkeys(diagnostics))

