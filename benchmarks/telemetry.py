"""Scenario: what telemetry config costs. Bytes per proxy and build time, with and without.

The same mesh as `scoping` (services in namespaces, their workloads) is built
for a sample of proxies three ways in one run: no Telemetry; a mesh-wide
Telemetry with access logs (a JSON file provider from MeshConfig); and that
plus tracing (an OpenTelemetry provider, 1% sampling, two custom tags). For
each: the median of the bytes every sampled proxy is sent on connect (all its
resource bodies), the bytes of its own resources (listeners and clusters,
where telemetry lives), and the time to build the sample's snapshots.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks import meshgen
from legation.cache import CLUSTER, LISTENER, Snapshot, SnapshotCache
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics

MESH_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: json-file
      envoyFileAccessLog:
        path: /dev/stdout
        logFormat: {labels: {code: "%RESPONSE_CODE%", path: "%REQ(:PATH)%",
                             upstream: "%UPSTREAM_CLUSTER_RAW%"}}
    - name: otel
      opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}
"""
LOGS = """\
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: json-file}]}]
"""
TRACING = """\
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 1
    customTags:
      mesh: {literal: {value: legation}}
      user: {header: {name: x-user}}
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetryConfig:
    services: int
    per_namespace: int
    sample: int

    @classmethod
    def make(cls, *, quick: bool) -> TelemetryConfig:
        if quick:
            return cls(services=40, per_namespace=10, sample=8)
        return cls(services=1000, per_namespace=10, sample=100)


def run(config: TelemetryConfig) -> dict[str, Any]:
    spec = meshgen.MeshSpec(services=config.services,
                            namespaces=max(1, config.services // config.per_namespace),
                            canary_every=0)
    nodes = spec.node_ids()[:: max(1, len(spec.node_ids()) // config.sample)][: config.sample]
    out: dict[str, Any] = {"config": asdict(config)}
    variants: tuple[tuple[str, dict[str, str]], ...] = (
        ("none", {}),
        ("access_logs", {"mesh-config.yaml": MESH_CONFIG, "telemetry.yaml": LOGS}),
        ("logs_and_tracing", {"mesh-config.yaml": MESH_CONFIG,
                              "telemetry.yaml": LOGS + TRACING}),
    )
    for label, extra in variants:
        store = MeshStore()
        meshgen.load(store, {**meshgen.mesh_files(spec), **extra})
        pipeline = Pipeline(store, SnapshotCache(), Metrics())
        started = time.perf_counter()
        snaps = [s for n in nodes if isinstance(s := pipeline.snapshot_for(n), Snapshot)]
        built = time.perf_counter() - started
        total = [sum(len(r.body) for rs in s.resources.values() for r in rs.values())
                 for s in snaps]
        own = [sum(len(r.body) for t in (LISTENER, CLUSTER) for r in s.of_type(t).values()
                   if not r.name.startswith("outbound|")) for s in snaps]
        out[label] = {"proxies": len(snaps), "bytes_per_proxy": statistics.median(total),
                      "own_bytes_per_proxy": statistics.median(own), "build_s": built}
    base = out["none"]
    for label, _ in variants[1:]:
        out[label]["added_bytes_per_proxy"] = (out[label]["bytes_per_proxy"]
                                               - base["bytes_per_proxy"])
        out[label]["build_ratio"] = out[label]["build_s"] / base["build_s"]
    return out


def summary(result: dict[str, Any]) -> str:
    c = result["config"]
    rows = [f"Telemetry cost: {c['services']} services, {c['sample']} proxies sampled "
            "(cold bytes per proxy, median; build time of the sample's snapshots)"]
    for label in ("none", "access_logs", "logs_and_tracing"):
        r = result[label]
        added = r.get("added_bytes_per_proxy")
        rows.append(f"  {label:17} {r['bytes_per_proxy'] / 1024:9.1f} KiB per proxy "
                    f"(own listeners and clusters {r['own_bytes_per_proxy']:.0f} B"
                    + (f", +{added:.0f} B" if added is not None else "")
                    + f"), build {r['build_s'] * 1000:.0f} ms"
                    + (f" ({r['build_ratio']:.2f}x)" if "build_ratio" in r else ""))
    return "\n".join(rows)
