"""Scenario 1: what translation costs, and whether each resource is serialized once.

For synthetic meshes of growing size (YAML through the real converters, one
proxy per workload), it times the translators' three entry points (the
per-proxy one as the pipeline calls it: `per_proxy`), the serialization of
their messages, the assembly of per-proxy snapshots on a shared base, and a
full rebuild of every proxy through the public `Pipeline.snapshot_for` (a
fresh pipeline each time: what a restart, or a change to something every
proxy's own resources depend on, costs), then the rebuild after an
endpoint-only change (the common case: the pipeline keeps what it may). It
then counts, over all proxies' snapshots, how many resource references
point at how many distinct `Resource` objects (the sharing ratio) and how
many distinct objects carry identical content (not shared, though they
could be).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any

from benchmarks import meshgen
from benchmarks.stats import ms, table, timed
from legation.cache import Resource, Snapshot, SnapshotBase, SnapshotCache, short_name
from legation.mesh.memo import to_resources
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import MeshSnapshot, Proxy
from legation.translators import (
    Translated,
    assignments_for,
    client_of,
    locality_targets,
    proxy_view,
    resolve_proxy,
    route_key,
    translate_mesh,
    translate_namespace,
    translate_workload,
)

FULL_SIZES = (10, 100, 500)
QUICK_SIZES = (10, 30)
SERVICES_PER_NAMESPACE = 20


@dataclass(frozen=True, slots=True, kw_only=True)
class TranslationConfig:
    sizes: tuple[int, ...]
    repeat: int

    @classmethod
    def make(cls, *, quick: bool) -> TranslationConfig:
        return cls(sizes=QUICK_SIZES if quick else FULL_SIZES, repeat=1 if quick else 3)


def run(config: TranslationConfig) -> dict[str, Any]:
    results = [_one_size(n, config.repeat) for n in config.sizes]
    return {"config": {"sizes": list(config.sizes), "repeat": config.repeat}, "meshes": results}


def _one_size(services: int, repeat: int) -> dict[str, Any]:
    spec = meshgen.MeshSpec(
        services=services, namespaces=max(1, services // SERVICES_PER_NAMESPACE)
    )
    store = MeshStore()
    loaded = meshgen.load(store, meshgen.mesh_files(spec))
    mesh, snapshot_t = timed(store.snapshot)  # first call builds it
    nodes = spec.node_ids()
    proxies = [p for n in nodes if (p := resolve_proxy(mesh, n)) is not None]
    out: dict[str, Any] = {
        "mesh": {
            "services": services,
            "namespaces": spec.namespaces,
            "workloads": len(nodes),
            "proxies": len(proxies),
            "objects": loaded.objects,
            "yaml_bytes": loaded.yaml_bytes,
            "diagnostics": len(loaded.diagnostics) + len(mesh.diagnostics),
        },
        "convert_s": loaded.convert_s,
        "store_snapshot_s": snapshot_t["median_s"],
    }
    out.update(_entry_points(mesh, proxies, repeat))
    snaps, rebuild = _full_rebuild(store, nodes, repeat)
    out["full_rebuild"] = rebuild
    out["after_endpoint_change"] = _rebuild_after_endpoint_change(store, nodes, spec)
    out["sharing"] = sharing(snaps)
    out["bytes"] = resource_bytes(snaps)
    return out


def _entry_points(mesh: MeshSnapshot, proxies: list[Proxy], repeat: int) -> dict[str, Any]:
    translated, mesh_t = timed(lambda: translate_mesh(mesh), repeat=repeat)
    _, mesh_ser = timed(lambda: to_resources(translated), repeat=repeat)
    namespaces = sorted({p.namespace for p in proxies})
    keys = {(p.namespace, route_key(mesh, p)) for p in proxies}
    ns_results, ns_t = timed(
        lambda: [translate_namespace(mesh, ns, key) for ns, key in sorted(keys, key=str)],
        repeat=repeat,
    )
    _, ns_ser = timed(lambda: [to_resources(t) for t in ns_results], repeat=repeat)
    px_results, px_t = timed(lambda: per_proxy(mesh, proxies), repeat=repeat)
    own, px_ser = timed(lambda: [to_resources(t) for t in px_results], repeat=repeat)
    shared = to_resources(translated)
    routes = {k: to_resources(t) for k, t in zip(sorted(keys, key=str), ns_results, strict=True)}
    lists = [
        [*routes[(p.namespace, route_key(mesh, p))], *mine]
        for p, mine in zip(proxies, own, strict=True)
    ]

    def assemble() -> list[Snapshot]:
        """As the pipeline does: the shared part indexed once, each proxy's own on it."""
        base = SnapshotBase.of(shared)
        return [Snapshot.build(rs, base=base) for rs in lists]

    _, assemble_t = timed(assemble, repeat=repeat)
    n = max(1, len(proxies))
    return {
        "translate_mesh": {**mesh_t, "serialize_s": mesh_ser["median_s"],
                           "clusters": len(translated.clusters),
                           "endpoints": len(translated.endpoints)},
        "translate_namespace": {**ns_t, "serialize_s": ns_ser["median_s"],
                                "calls": len(keys), "namespaces": len(namespaces),
                                "per_call_s": ns_t["median_s"] / max(1, len(keys))},
        "translate_proxy": {**px_t, "serialize_s": px_ser["median_s"], "calls": len(proxies),
                            "per_proxy_s": px_t["median_s"] / n,
                            "serialize_per_proxy_s": px_ser["median_s"] / n},
        "snapshot_assembly": {**assemble_t, "per_proxy_s": assemble_t["median_s"] / n},
    }


def per_proxy(mesh: MeshSnapshot, proxies: list[Proxy]) -> list[Translated]:
    """`translate_proxy` for every proxy, the way the pipeline computes it: inbound
    clusters and listeners from the proxy's namespace view, locality assignments from
    targets found once per mesh."""
    targets = locality_targets(mesh)
    views = {ns: proxy_view(mesh, ns) for ns in {p.namespace for p in proxies}}
    out = []
    for p in proxies:
        t = translate_workload(views[p.namespace], p)
        if targets:
            t.endpoints.extend(assignments_for(mesh, client_of(mesh, p, targets), targets))
        out.append(t)
    return out


def _full_rebuild(
    store: MeshStore, nodes: list[str], repeat: int
) -> tuple[list[Snapshot], dict[str, Any]]:
    """Every proxy's snapshot from a cold pipeline (nothing to keep from before)."""

    def rebuild() -> list[Snapshot]:
        pipeline = Pipeline(store, SnapshotCache(), Metrics())
        return [s for n in nodes if isinstance(s := pipeline.snapshot_for(n), Snapshot)]

    snaps, t = timed(rebuild, repeat=repeat)
    return snaps, {**t, "proxies": len(snaps), "per_proxy_s": t["median_s"] / max(1, len(nodes))}


def _rebuild_after_endpoint_change(
    store: MeshStore, nodes: list[str], spec: meshgen.MeshSpec
) -> dict[str, Any]:
    """One more endpoint for one service, then the rebuild the pipeline does for it."""
    pipeline = Pipeline(store, SnapshotCache(), Metrics())
    before = {n: pipeline.snapshot_for(n) for n in nodes}
    extra = meshgen.extra_endpoint(spec, index=0)
    for obj in extra:
        store.upsert("bench:changes", obj)
    _, store_t = timed(store.snapshot)  # the store's merge, as the pipeline's first read does
    after, t = timed(lambda: {n: pipeline.snapshot_for(n) for n in nodes})
    changed: collections.Counter[str] = collections.Counter()
    for n in nodes:
        old, new = before[n], after[n]
        if isinstance(old, Snapshot) and isinstance(new, Snapshot):
            for type_url, rs in new.resources.items():
                olds = old.of_type(type_url)
                changed[short_name(type_url)] += sum(
                    1 for name, r in rs.items()
                    if name not in olds or olds[name].version != r.version
                )
    for obj in extra:
        store.delete("bench:changes", meshgen.key_of(obj))
    return {
        **t,
        "store_snapshot_s": store_t["median_s"],
        "proxies": len(nodes),
        "changed_resources_per_proxy": {
            t: n / max(1, len(nodes)) for t, n in sorted(changed.items()) if n
        },
    }


def sharing(snaps: list[Snapshot]) -> dict[str, Any]:
    """References across snapshots vs distinct Resource objects vs distinct contents."""
    refs = 0
    objects: dict[int, Resource] = {}
    for snap in snaps:
        for rs in snap.resources.values():
            for r in rs.values():
                refs += 1
                objects[id(r)] = r
    contents = collections.Counter((r.type_url, r.name, r.version) for r in objects.values())
    duplicated = [(short_name(t), name, n) for (t, name, _), n in contents.most_common() if n > 1]
    return {
        "references": refs,
        "distinct_objects": len(objects),
        "distinct_contents": len(contents),
        "ratio": refs / max(1, len(objects)),
        "serialized_more_than_once": sum(n - 1 for *_, n in duplicated),
        "duplicated_examples": [
            {"type": t, "name": name, "copies": n} for t, name, n in duplicated[:5]
        ],
    }


def resource_bytes(snaps: list[Snapshot]) -> dict[str, Any]:
    """Bytes of the distinct resources per type, and what one proxy's full push carries."""
    distinct: dict[str, dict[int, int]] = collections.defaultdict(dict)
    per_proxy: list[int] = []
    for snap in snaps:
        total = 0
        for type_url, rs in snap.resources.items():
            for r in rs.values():
                distinct[short_name(type_url)][id(r)] = len(r.body)
                total += len(r.body)
        per_proxy.append(total)
    return {
        "distinct_by_type": {t: sum(v.values()) for t, v in sorted(distinct.items())},
        "distinct_total": sum(sum(v.values()) for v in distinct.values()),
        "per_proxy_mean": sum(per_proxy) / max(1, len(per_proxy)),
        "per_proxy_max": max(per_proxy, default=0),
    }


def summary(result: dict[str, Any]) -> str:
    rows = []
    for m in result["meshes"]:
        mesh, rebuild = m["mesh"], m["full_rebuild"]
        rows.append([
            f"{mesh['services']} svc / {mesh['proxies']} px / {mesh['namespaces']} ns",
            ms(m["translate_mesh"]["median_s"]),
            ms(m["translate_namespace"]["per_call_s"]),
            f"{m['translate_proxy']['per_proxy_s'] * 1e6:.0f} us",
            f"{m['snapshot_assembly']['per_proxy_s'] * 1e6:.0f} us",
            ms(rebuild["median_s"]),
            ms(m["after_endpoint_change"]["median_s"]),
            f"{m['bytes']['per_proxy_mean'] / 1024:.0f} KiB",
            f"{m['sharing']['ratio']:.1f}",
            m["sharing"]["serialized_more_than_once"],
        ])
    header = ["mesh", "mesh xl", "ns xl/call", "proxy xl", "assembly", "full rebuild",
              "EDS chg rebuild", "bytes/proxy", "sharing", "dup ser."]
    return table("Translation (xl = translate, median)", header, rows)
