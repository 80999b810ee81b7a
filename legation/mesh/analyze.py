"""Every finding for a mesh, as `legation analyze` and /debug/diagnostics show them."""

from __future__ import annotations

from legation.mesh.memo import Memo
from legation.model import Diagnostic, MeshSnapshot, Proxy
from legation.translators import resolve_proxy, route_key


def analyze(mesh: MeshSnapshot) -> list[Diagnostic]:
    """Every finding for a mesh: the sources' and every translator's, sorted, once each."""
    memo = Memo.of(mesh)
    for ns in sorted({w.namespace for w in mesh.workloads}):
        memo.namespace(ns)
    for w in mesh.workloads:  # route configurations that depend on sourceLabels
        memo.namespace(w.namespace, route_key(mesh, Proxy(node_id=w.name, workload=w)),
                       w.interception)
    for w in mesh.workloads:  # gateways: their servers (a missing credential, ...);
        node_id = f"{w.name}.{w.namespace}"  # sidecars: their inbound (a rate limit, ...)
        proxy = resolve_proxy(mesh, node_id)
        if proxy is None:
            continue
        if mesh.gateways_of(w.labels, w.namespace):
            memo.gateway(node_id, proxy)
        else:
            memo.own_resources(node_id, proxy)
    found = {*mesh.diagnostics, *memo.diagnostics}
    return sorted(found, key=lambda d: (d.ref.file, d.at_line, d.code, d.message))
