"""Scenario: config proportional to use. Cold bytes per proxy with and without a Sidecar.

The mesh has `services` Services in namespaces of `per_namespace` each; a
mesh-wide default Sidecar in the root namespace (`egress: [{hosts: ["./*"]}]`)
limits every proxy to the services of its own namespace. For a sample of
proxies, the bytes of everything each is sent on connect (every resource
body of its snapshot) are summed with and without the Sidecar, in the same
run, and so are the distinct shared bases (one per scope).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import meshgen
from legation.cache import Snapshot, SnapshotCache
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics

ROOT_SIDECAR = (
    "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
    "metadata: {name: default, namespace: istio-system}\n"
    "spec:\n  egress:\n  - hosts: ['./*']\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopingConfig:
    services: int
    per_namespace: int
    sample: int

    @classmethod
    def make(cls, *, quick: bool) -> ScopingConfig:
        if quick:
            return cls(services=40, per_namespace=10, sample=8)
        return cls(services=1000, per_namespace=10, sample=100)


def run(config: ScopingConfig) -> dict[str, Any]:
    spec = meshgen.MeshSpec(services=config.services,
                            namespaces=max(1, config.services // config.per_namespace),
                            canary_every=0)
    nodes = spec.node_ids()[:: max(1, len(spec.node_ids()) // config.sample)][: config.sample]
    out: dict[str, Any] = {"config": asdict(config)}
    for label, extra in (("unscoped", {}), ("sidecar", {"sidecar.yaml": ROOT_SIDECAR})):
        store = MeshStore()
        meshgen.load(store, {**meshgen.mesh_files(spec), **extra})
        pipeline = Pipeline(store, SnapshotCache(), Metrics())
        started = time.perf_counter()
        snaps = [s for n in nodes if isinstance(s := pipeline.snapshot_for(n), Snapshot)]
        built = time.perf_counter() - started
        sizes = [sum(len(r.body) for rs in s.resources.values() for r in rs.values())
                 for s in snaps]
        out[label] = {"proxies": len(snaps), "bytes_per_proxy": statistics.median(sizes),
                      "build_s": built, "distinct_bases": len({id(s.base) for s in snaps})}
    out["ratio"] = out["sidecar"]["bytes_per_proxy"] / out["unscoped"]["bytes_per_proxy"]
    return out


def summary(result: dict[str, Any]) -> str:
    c = result["config"]
    rows = [f"Scoping: {c['services']} services, {c['per_namespace']} per namespace; a root "
            "Sidecar './*' limits each proxy to its namespace (cold bytes per proxy, median)"]
    for label in ("unscoped", "sidecar"):
        r = result[label]
        rows.append(f"  {label:9} {r['bytes_per_proxy'] / 1024:9.1f} KiB per proxy, "
                    f"{r['distinct_bases']} shared base(s) for {r['proxies']} proxies")
    rows.append(f"  scoped / unscoped: {100 * result['ratio']:.1f}%")
    return "\n".join(rows)
