"""Views: the parts of the mesh that route configurations and a proxy's own resources
are translated from (`route_view`, `proxy_view`).

The pipeline translates from views and keeps a result while its view is
unchanged, so a view must keep everything its translator reads. These tests
translate every golden case and example mesh both ways and require identical
bytes and diagnostics: a translator that starts reading something a view
leaves out fails here (extend the view in translators/translate.py).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from legation.mesh.store import MeshStore
from legation.model import MeshSecurity, MeshSnapshot, Proxy, Service
from legation.sources.convert import convert_text
from legation.translators import (
    Translated,
    proxy_view,
    resolve_proxy,
    route_key,
    route_view,
    translate_namespace,
    translate_workload,
)

ROOT = Path(__file__).resolve().parents[3]
GOLDEN = sorted(p.parent for p in (ROOT / "tests" / "golden").glob("*/in.yaml"))
EXAMPLES = [ROOT / "examples" / "shop"]


def load(files: list[Path], security: MeshSecurity) -> MeshSnapshot:
    store = MeshStore(security=security)
    for path in files:
        result = convert_text(path.read_text(), file=path.name)
        store.replace_source(f"file:{path.name}", result.objects, result.diagnostics)
    return store.snapshot()


def golden_mesh(case: Path) -> tuple[MeshSnapshot, list[str]]:
    """A golden case's mesh (with its security.yaml) and node ids."""
    extra = case / "security.yaml"
    fields = (yaml.safe_load(extra.read_text()) or {}) if extra.exists() else {}
    proxies = case / "proxies.txt"
    lines = proxies.read_text().splitlines() if proxies.exists() else []
    nodes = [s.strip() for s in lines if s.strip() and not s.startswith("#")]
    return load([case / "in.yaml"], MeshSecurity(**fields)), nodes


def cases() -> list[Any]:
    """Every golden case, and every example mesh with and without a CA."""
    out = [pytest.param(case, False, id=f"golden-{case.name}") for case in GOLDEN]
    out += [pytest.param(example, mtls, id=f"{example.name}-mtls-{mtls}")
            for example in EXAMPLES for mtls in (False, True)]
    return out


def mesh_of(case: Path, mtls: bool) -> tuple[MeshSnapshot, list[str]]:
    if case.parent.name == "golden":
        return golden_mesh(case)
    mesh = load(sorted(case.glob("*.yaml")), MeshSecurity(mtls=mtls))
    return mesh, [f"{w.name}.{w.namespace}" for w in mesh.workloads]


def wire(t: Translated) -> dict[str, object]:
    """Everything a translation returns, as bytes and diagnostics."""
    def ser(messages: list[Any]) -> list[bytes]:
        return [m.SerializeToString(deterministic=True) for m in messages]

    return {
        "clusters": ser(t.clusters), "endpoints": ser(t.endpoints),
        "listeners": ser(t.listeners), "routes": ser(t.routes), "secrets": ser(t.secrets),
        "diagnostics": list(t.diagnostics),
    }


def proxies(mesh: MeshSnapshot, nodes: list[str]) -> list[Proxy]:
    return [p for n in nodes if (p := resolve_proxy(mesh, n)) is not None]


@pytest.mark.parametrize(("case", "mtls"), cases())
def test_a_proxy_view_gives_the_same_own_resources(case: Path, mtls: bool) -> None:
    mesh, nodes = mesh_of(case, mtls)
    found = proxies(mesh, nodes)
    assert found, "the case names no proxy of its mesh"
    for proxy in found:
        view = proxy_view(mesh, proxy.namespace)
        assert wire(translate_workload(view, proxy)) == wire(translate_workload(mesh, proxy)), (
            f"{proxy.node_id}: translate_workload reads something proxy_view leaves out"
        )


@pytest.mark.parametrize(("case", "mtls"), cases())
def test_the_route_view_gives_the_same_namespace_resources(case: Path, mtls: bool) -> None:
    mesh, nodes = mesh_of(case, mtls)
    view = route_view(mesh)
    keys = {(p.namespace, route_key(mesh, p), p.mode) for p in proxies(mesh, nodes)}
    keys |= {(ns, frozenset(), mode) for ns, _, mode in keys}
    for ns, key, mode in sorted(keys, key=str):
        assert route_key(view, _any_proxy(mesh, ns)) == route_key(mesh, _any_proxy(mesh, ns))
        assert wire(translate_namespace(view, ns, key, mode)) == wire(
            translate_namespace(mesh, ns, key, mode)
        ), f"{ns} {mode}: translate_namespace reads something route_view leaves out"


def _any_proxy(mesh: MeshSnapshot, namespace: str) -> Proxy:
    workload = next(w for w in mesh.workloads if w.namespace == namespace)
    return Proxy(node_id=f"{workload.name}.{namespace}", workload=workload)


# -- what the views leave out, so that a change there keeps the pipeline's results --


def shop() -> MeshSnapshot:
    return load(sorted((ROOT / "examples" / "shop").glob("*.yaml")), MeshSecurity(mtls=True))


def test_views_ignore_endpoints_and_other_workloads() -> None:
    mesh = shop()
    moved = dataclasses.replace(mesh.workloads[0], address="127.9.9.9")
    changed = dataclasses.replace(mesh, workloads=(moved, *mesh.workloads[1:]))
    assert route_view(changed) == route_view(mesh)
    assert proxy_view(changed, "shop") == proxy_view(mesh, "shop")


def test_a_proxy_view_ignores_services_of_other_namespaces() -> None:
    mesh = shop()
    elsewhere = Service(ref=mesh.services[0].ref, name="x", namespace="elsewhere",
                        ports=mesh.services[0].ports)
    changed = dataclasses.replace(mesh, services=(*mesh.services, elsewhere))
    assert proxy_view(changed, "shop") == proxy_view(mesh, "shop")
    assert route_view(changed) != route_view(mesh)  # every namespace routes to it


def test_a_service_change_in_its_namespace_changes_its_proxy_view() -> None:
    mesh = shop()
    svc = mesh.services[0]
    renamed = dataclasses.replace(svc, ports=tuple(
        dataclasses.replace(p, name=p.name + "-x") for p in svc.ports))
    changed = dataclasses.replace(mesh, services=(renamed, *mesh.services[1:]))
    assert proxy_view(changed, svc.namespace) != proxy_view(mesh, svc.namespace)
