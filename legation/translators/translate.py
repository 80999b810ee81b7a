"""The translators' public entry points; see the package docstring for the split.

The three `translate_*` functions never emit the same resource name: the
mesh owns ``outbound|...`` clusters and every ClusterLoadAssignment, the
namespace owns the ``http_proxy`` RouteConfiguration, the proxy owns
``inbound|...`` clusters and every listener. Their diagnostics are
deduplicated (one bad workload selected by many ports is reported once).
"""

from __future__ import annotations

from collections.abc import Iterable

from legation.model import Diagnostic, InterceptionMode, MeshSnapshot, Proxy, Severity
from legation.translators import clusters, endpoints, listeners, names, routes
from legation.translators.common import is_ip
from legation.translators.inbound import inbound_ports
from legation.translators.result import Translated


def translate_mesh(mesh: MeshSnapshot) -> Translated:
    """Proxy-independent: every outbound cluster and its ClusterLoadAssignment."""
    out = Translated()
    ports, diagnostics = clusters.outbound_cluster_ports(mesh)
    for svc, sp in ports:
        out.clusters.append(clusters.outbound_cluster(mesh, svc, sp))
        cla, found = endpoints.load_assignment(mesh, svc, sp)
        out.endpoints.append(cla)
        diagnostics.extend(found)
    out.diagnostics.extend(_unique(diagnostics))
    return out


def translate_namespace(mesh: MeshSnapshot, namespace: str) -> Translated:
    """The outbound ``http_proxy`` RouteConfiguration as seen from `namespace`."""
    config, diagnostics = routes.http_proxy_route(mesh, namespace)
    return Translated(routes=[config], diagnostics=_unique(diagnostics))


def translate_proxy(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """What belongs to one workload: its inbound clusters and its listeners.

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
    if is_ip(workload.address):
        out.listeners.append(listeners.outbound_listener(workload))
        out.listeners.extend(listeners.inbound_listener(workload, p) for p in ports)
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
