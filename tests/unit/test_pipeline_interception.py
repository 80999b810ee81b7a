"""The pipeline keeps explicit and transparent proxies of one namespace apart: each
gets its mode's namespace-level resources (`translate_namespace(..., mode)`), and
proxies of the same mode share them."""

from __future__ import annotations

from legation.cache import CLUSTER, LISTENER, ROUTE, Snapshot, SnapshotCache
from legation.mesh.analyze import analyze
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import Severity
from legation.sources.convert import convert_text

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  clusterIP: 10.96.0.10
  selector: {app: catalog}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.example.com]
  tcp: [{route: [{destination: {host: catalog}}]}]
"""


def pod(name: str, ip: str, mode: str = "") -> str:
    annotation = f"  annotations: {{sidecar.istio.io/interceptionMode: {mode}}}\n" if mode else ""
    return (f"---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\n"
            f"{annotation}spec: {{containers: [{{name: app, image: x}}]}}\n"
            f"status: {{phase: Running, podIP: {ip}}}\n")


def store() -> MeshStore:
    """Pods a and b are transparent (the default), c explicit."""
    mesh = MeshStore()
    text = MESH + pod("a", "10.1.0.1") + pod("b", "10.1.0.2") + pod("c", "10.1.0.3", "NONE")
    result = convert_text(text, file="mesh.yaml")
    mesh.replace_source("test", result.objects, result.diagnostics)
    return mesh


def test_each_mode_gets_its_own_namespace_resources_shared_within_the_mode() -> None:
    p = Pipeline(store(), SnapshotCache(), Metrics())
    a, b, c = (p.snapshot_for(f"{n}.shop") for n in "abc")
    assert isinstance(a, Snapshot) and isinstance(b, Snapshot) and isinstance(c, Snapshot)
    assert set(a.of_type(ROUTE)) == {"9080"}
    assert set(a.of_type(LISTENER)) == {"virtualOutbound", "virtualInbound"}
    assert {"PassthroughCluster", "BlackHoleCluster"} <= set(a.of_type(CLUSTER))
    assert set(c.of_type(ROUTE)) == {"http_proxy"}
    assert set(c.of_type(LISTENER)) == {"10.1.0.3_15001"}
    # each mode has its own PassthroughCluster: original destination, forward proxy
    assert a.of_type(CLUSTER)["PassthroughCluster"] != c.of_type(CLUSTER)["PassthroughCluster"]
    # serialized once per namespace and mode
    assert a.of_type(LISTENER)["virtualOutbound"] is b.of_type(LISTENER)["virtualOutbound"]
    assert a.of_type(ROUTE)["9080"] is b.of_type(ROUTE)["9080"]


def test_analyze_reports_what_each_mode_found() -> None:
    found = [d for d in analyze(store().snapshot()) if d.code == "virtualservice.tcp-not-applied"]
    assert {d.severity for d in found} == {Severity.INFO}
    assert len(found) == 2, [d.message for d in found]  # explicit's and transparent's
