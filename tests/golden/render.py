"""Render one golden case: in.yaml + proxies.txt -> the canonical out.*.yaml texts.

Canonical form: `json_format.MessageToDict(msg, preserving_proto_field_name=True)`
dumped with `yaml.safe_dump(sort_keys=True)`, so a diff shows exactly which
field of which resource changed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, InterceptionMode, MeshSecurity, MeshSnapshot
from legation.sources.convert import convert_text
from legation.translators import (
    Translated,
    resolve_proxy,
    route_key,
    translate_mesh,
    translate_namespace,
    translate_proxy,
)

INPUT = "in.yaml"
PROXIES = "proxies.txt"
SECURITY = "security.yaml"  # optional: MeshSecurity fields, e.g. `mtls: true` (a CA runs)
MESH_OUT = "out.mesh.yaml"
DIAGNOSTICS_OUT = "out.diagnostics.yaml"


def to_dict(message: Any) -> Any:
    """A message as plain JSON-compatible data (no OrderedDicts from `Any` fields)."""
    return json.loads(
        json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True))
    )


def dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=True, default_flow_style=False, width=100)


def proxy_file(node_id: str) -> str:
    return f"out.{node_id}.yaml"


def node_ids(case: Path) -> list[str]:
    path = case / PROXIES
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def load_mesh(case: Path) -> MeshSnapshot:
    result = convert_text((case / INPUT).read_text(), file=INPUT)
    store = MeshStore(security=security_of(case))
    store.replace_source("golden", result.objects, result.diagnostics)
    return store.snapshot()


def security_of(case: Path) -> MeshSecurity:
    """What the control plane of a case can do: no CA unless `security.yaml` says so."""
    path = case / SECURITY
    if not path.exists():
        return MeshSecurity()
    return MeshSecurity(**(yaml.safe_load(path.read_text()) or {}))


def render(case: Path) -> dict[str, str]:
    """Every expected output file of a case: name -> text."""
    mesh = load_mesh(case)
    outputs: dict[str, str] = {}
    mesh_out = translate_mesh(mesh)
    outputs[MESH_OUT] = dump(
        {
            "clusters": [to_dict(c) for c in mesh_out.clusters],
            "endpoints": [to_dict(e) for e in mesh_out.endpoints],
        }
    )
    diagnostics: dict[str, Any] = {
        "convert": _diags(mesh.diagnostics),
        "mesh": _diags(mesh_out.diagnostics),
        "namespaces": {},
        "proxies": {},
    }
    for node_id in node_ids(case):
        proxy = resolve_proxy(mesh, node_id)
        if proxy is None:
            outputs[proxy_file(node_id)] = dump({"proxy": None})
            continue
        own = translate_proxy(mesh, proxy)
        namespace = Translated() if proxy.gateways else translate_namespace(
            mesh, proxy.namespace, route_key(mesh, proxy), proxy.mode
        )  # a gateway gets its own routes only (translate_proxy)
        own_endpoints = {"endpoints": [to_dict(e) for e in own.endpoints]} if own.endpoints else {}
        outputs[proxy_file(node_id)] = dump(
            {
                **own_endpoints,
                "proxy": {
                    "node_id": proxy.node_id,
                    "kind": str(proxy.workload.kind),
                    "namespace": proxy.namespace,
                    "name": proxy.workload.name,
                    "mode": str(proxy.mode),
                },
                # transparent proxies share virtualOutbound and two clusters per namespace
                "listeners": [to_dict(x) for x in (*namespace.listeners, *own.listeners)],
                "clusters": [to_dict(c) for c in (*own.clusters, *namespace.clusters)],
                "routes": [to_dict(r) for r in (*namespace.routes, *own.routes)],
            }
        )
        scope = proxy.namespace + ("" if proxy.mode is InterceptionMode.EXPLICIT else
                                   f" ({proxy.mode})")
        diagnostics["namespaces"][scope] = _diags(namespace.diagnostics)
        diagnostics["proxies"][node_id] = _diags(own.diagnostics)
    outputs[DIAGNOSTICS_OUT] = dump(diagnostics)
    return outputs


def _diags(diagnostics: Any) -> list[dict[str, object]]:
    items: list[Diagnostic] = list(diagnostics)
    return [d.as_dict() for d in items]
