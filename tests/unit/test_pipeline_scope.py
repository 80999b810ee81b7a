"""Config proportional to use (issue 9): Sidecar egress hosts and Service exportTo.

A proxy receives only the clusters, assignments and virtual hosts of the
services it may use; proxies with equal scope share every byte (one base
per scope); and what a scoped proxy gets is exactly the unscoped build cut to
its services, byte for byte.
"""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_pb2

from legation.cache import CLUSTER, ENDPOINT, ROUTE, Snapshot, SnapshotCache
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import OutboundPolicy, Sidecar
from legation.sources.convert import convert_text
from legation.translators import resolve_proxy

SERVICES = ["alpha", "beta", "gamma"]


def mesh_yaml(sidecars: str = "", export: dict[str, str] | None = None) -> str:
    docs = []
    for ns in ("shop", "other"):
        docs.append(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n")
        for i, name in enumerate(SERVICES):
            note = (export or {}).get(f"{name}.{ns}")
            meta = (f"{{name: {name}, namespace: {ns}, annotations: "
                    f"{{networking.istio.io/exportTo: '{note}'}}}}" if note else
                    f"{{name: {name}, namespace: {ns}}}")
            docs.append(f"apiVersion: v1\nkind: Service\nmetadata: {meta}\n"
                        f"spec:\n  selector: {{app: {name}}}\n"
                        "  ports: [{name: http, port: 9080}]\n")
            host = 1 + i + (10 if ns == "other" else 0)
            for w in ("a", "b"):
                docs.append(
                    "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
                    f"metadata: {{name: {name}-{w}, namespace: {ns}}}\n"
                    f"spec: {{address: 127.0.{host}.{1 if w == 'a' else 2}, "
                    f"labels: {{app: {name}, role: {w}}}}}\n")
    return "---\n".join(docs) + ("---\n" + sidecars if sidecars else "")


def pipeline_for(text: str) -> Pipeline:
    store = MeshStore()
    result = convert_text(text, file="mesh.yaml")
    assert not [d for d in result.diagnostics if d.severity == "error"], result.diagnostics
    store.replace_source("mesh", result.objects, result.diagnostics)
    return Pipeline(store, SnapshotCache(), Metrics())


def outbound(snap: object) -> set[str]:
    assert isinstance(snap, Snapshot)
    return {n for n in snap.of_type(CLUSTER) if n.startswith("outbound|")}


def fqdn(name: str, ns: str) -> str:
    return f"outbound|9080||{name}.{ns}.svc.cluster.local"


def sidecar(name: str, ns: str, hosts: list[str], selector: str = "") -> str:
    sel = f"  workloadSelector: {{labels: {{{selector}}}}}\n" if selector else ""
    return (f"apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
            f"metadata: {{name: {name}, namespace: {ns}}}\nspec:\n{sel}"
            f"  egress:\n  - hosts: {hosts}\n---\n")


ALL = {fqdn(n, ns) for n in SERVICES for ns in ("shop", "other")}


@pytest.mark.parametrize(("sidecars", "node", "want"), [
    ("", "alpha-a.shop", ALL),
    (sidecar("default", "shop", ["./*"]), "alpha-a.shop", {fqdn(n, "shop") for n in SERVICES}),
    (sidecar("default", "shop", ["./*"]), "alpha-a.other", ALL),
    (sidecar("mesh", "istio-system", ["./*"]), "alpha-a.other",
     {fqdn(n, "other") for n in SERVICES}),
    (sidecar("mesh", "istio-system", ["./*"]) + sidecar("ns", "shop", ["other/beta"]),
     "alpha-a.shop", {fqdn("beta", "other")}),
    (sidecar("ns", "shop", ["./*"]) + sidecar("one", "shop", ["*/gamma.other.svc.cluster.local"],
                                              selector="role: b"),
     "alpha-b.shop", {fqdn("gamma", "other")}),
    (sidecar("ns", "shop", ["./*"]) + sidecar("one", "shop", ["*/gamma.other.svc.cluster.local"],
                                              selector="role: b"),
     "alpha-a.shop", {fqdn(n, "shop") for n in SERVICES}),
    (sidecar("ns", "shop", ["*/*.shop.svc.cluster.local", "~/*"]), "beta-a.shop",
     {fqdn(n, "shop") for n in SERVICES}),
], ids=["no-sidecar", "namespace-default", "other-namespace-unaffected", "root-default",
        "namespace-beats-root", "selector-beats-namespace", "selector-not-matching",
        "wildcard-host"])
def test_a_proxy_gets_the_services_its_sidecar_names(sidecars: str, node: str,
                                                      want: set[str]) -> None:
    p = pipeline_for(mesh_yaml(sidecars))
    snap = p.snapshot_for(node)
    assert outbound(snap) == want
    assert isinstance(snap, Snapshot)
    assert {n.rsplit("|", 1)[0] for n in snap.of_type(ENDPOINT)} <= {n.rsplit("|", 1)[0]
                                                                     for n in want}
    (routes,) = snap.of_type(ROUTE).values()
    for name in SERVICES:
        for ns in ("shop", "other"):
            seen = f"{name}.{ns}.svc.cluster.local".encode() in routes.body
            assert seen == (fqdn(name, ns) in want), (name, ns)


def test_export_to_hides_a_service_from_other_namespaces() -> None:
    p = pipeline_for(mesh_yaml(export={"gamma.shop": ".", "beta.shop": "other"}))
    assert outbound(p.snapshot_for("alpha-a.shop")) == ALL - {fqdn("beta", "shop")}
    assert outbound(p.snapshot_for("alpha-a.other")) == ALL - {fqdn("gamma", "shop")}


def test_proxies_with_one_scope_share_everything_and_match_the_cut_rebuild() -> None:
    text = mesh_yaml(sidecar("default", "shop", ["./*", "other/alpha"]))
    p = pipeline_for(text)
    a, b = p.snapshot_for("alpha-a.shop"), p.snapshot_for("gamma-b.shop")
    assert isinstance(a, Snapshot) and isinstance(b, Snapshot)
    assert a.base is b.base and a.of_type(ENDPOINT) is b.of_type(ENDPOINT)
    unscoped = pipeline_for(mesh_yaml()).snapshot_for("alpha-a.shop")
    assert isinstance(unscoped, Snapshot)
    keep = outbound(a)
    for t in (CLUSTER, ENDPOINT):
        cut = {n: r.body for n, r in unscoped.of_type(t).items()
               if not n.startswith("outbound|") or n in keep}
        assert {n: r.body for n, r in a.of_type(t).items()} == cut
    mesh = p._store.snapshot()
    assert resolve_proxy(mesh, "alpha-a.shop") is not None


def test_bad_egress_hosts_are_diagnosed() -> None:
    result = convert_text(sidecar("bad", "shop", ["catalog", "shop/ca*t", "./*"]) +
                          "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
                          "metadata: {name: ports, namespace: shop}\nspec:\n"
                          "  egress: [{port: {number: 80}, hosts: ['./*']}]\n"
                          "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n",
                          file="sc.yaml")
    found = {(d.ref.name, d.code, d.field) for d in result.diagnostics}
    assert ("bad", "sidecar.egress-host-invalid", "spec.egress[0].hosts[0]") in found
    assert ("bad", "sidecar.egress-host-invalid", "spec.egress[0].hosts[1]") in found
    assert ("ports", "sidecar.field-not-applied", "spec.egress[0].port") in found
    assert not any(f == "spec.outboundTrafficPolicy" for _, _, f in found)  # applied
    (ports,) = [o for o in result.objects if isinstance(o, Sidecar) and o.name == "ports"]
    assert ports.outbound is OutboundPolicy.REGISTRY_ONLY


def _catch_all(snap: object) -> str:
    assert isinstance(snap, Snapshot)
    config = route_pb2.RouteConfiguration.FromString(snap.of_type(ROUTE)["http_proxy"].body)
    return config.virtual_hosts[-1].name


def test_a_sidecar_outbound_policy_overrides_the_mesh_for_its_proxies_only() -> None:
    p = pipeline_for(mesh_yaml(
        "apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
        "metadata: {name: strict, namespace: shop}\n"
        "spec:\n  workloadSelector: {labels: {role: a}}\n"
        "  outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n"))
    strict, relaxed = p.snapshot_for("alpha-a.shop"), p.snapshot_for("alpha-b.shop")
    assert (_catch_all(strict), _catch_all(relaxed)) == ("block_all", "allow_any")
    # no egress: every host, as Istio (only the policy differs)
    assert outbound(strict) == outbound(relaxed)
