"""The translators' public entry points; see the package docstring for the split.

The three `translate_*` functions never emit the same resource name, with
one exception: the mesh owns ``outbound|...`` clusters and every
ClusterLoadAssignment, the namespace owns the ``http_proxy``
RouteConfiguration, the proxy owns ``inbound|...`` clusters and every
listener, plus its own version of the assignments that locality load
balancing changes for it, which replace the mesh's in its snapshot
(`Snapshot.build`: the last resource of a name wins). Their diagnostics are
deduplicated (one bad workload selected by many ports is reported once).
"""

from __future__ import annotations

from collections.abc import Iterable

from legation.model import Diagnostic, InterceptionMode, MeshSnapshot, Proxy, Severity
from legation.translators import clusters, listeners, names, routes, subsets
from legation.translators.authn import inbound_security
from legation.translators.common import is_ip
from legation.translators.httproute import SourceKey, needed_filters, source_key
from legation.translators.inbound import inbound_ports
from legation.translators.result import Translated


def translate_mesh(mesh: MeshSnapshot) -> Translated:
    """Proxy-independent: every outbound cluster (subsets too) and its ClusterLoadAssignment."""
    out = subsets.outbound_clusters(mesh)
    out.diagnostics[:] = _unique(out.diagnostics)
    return out


def translate_namespace(
    mesh: MeshSnapshot, namespace: str, source: SourceKey = frozenset()
) -> Translated:
    """The outbound ``http_proxy`` RouteConfiguration as seen from `namespace`.

    `source` (from `route_key`) names the VirtualService `sourceLabels` match
    blocks the client satisfies; proxies with the same namespace and key get
    the same configuration, so the common case (no sourceLabels) stays shared.
    """
    config, diagnostics = routes.http_proxy_route(mesh, namespace, source)
    return Translated(routes=[config], diagnostics=_unique(diagnostics))


def route_key(mesh: MeshSnapshot, proxy: Proxy) -> SourceKey:
    """What, besides its namespace, a proxy's route configuration depends on."""
    return source_key(mesh, proxy)


def translate_proxy(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """What belongs to one workload: its inbound clusters and its listeners, and the
    ClusterLoadAssignments locality load balancing makes different for it (they
    replace the mesh-wide ones of the same name in its snapshot).

    Only explicit mode exists so far; a transparent proxy gets explicit
    mode's config and a warning.
    """
    out = Translated()
    workload = proxy.workload
    diagnostics: list[Diagnostic] = []
    if proxy.mode is not InterceptionMode.EXPLICIT:
        diagnostics.append(_mode_unsupported(proxy))
    ports, found = inbound_ports(mesh, workload)
    diagnostics.extend(found)
    out.clusters.extend(clusters.inbound_cluster(p) for p in ports)
    out.endpoints.extend(subsets.client_assignments(mesh, proxy))
    if is_ip(workload.address):
        out.listeners.append(
            listeners.outbound_listener(workload, needed_filters(mesh, proxy.namespace))
        )
        for p in ports:
            security = inbound_security(mesh, workload, p)  # PeerAuthentication, RBAC
            diagnostics.extend(security.diagnostics)
            out.listeners.append(listeners.inbound_listener(workload, p, security))
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
    return Proxy(node_id=node_id, workload=workload)


def _unique(diagnostics: Iterable[Diagnostic]) -> list[Diagnostic]:
    return list(dict.fromkeys(diagnostics))


def _mode_unsupported(proxy: Proxy) -> Diagnostic:
    return Diagnostic(
        ref=proxy.workload.ref,
        field="",
        code="proxy.mode-unsupported",
        message=(
            f"proxy {proxy.node_id!r} asks for {proxy.mode} interception, which is not "
            "supported yet; it gets explicit-mode listeners on its own address instead"
        ),
        severity=Severity.WARNING,
    )
