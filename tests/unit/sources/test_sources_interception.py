"""Interception mode: `sidecar.istio.io/interceptionMode` on Pods and WorkloadEntries."""

from __future__ import annotations

import pytest
from sources_builders import convert, marked_line, only

from legation.mesh.store import MeshStore
from legation.model import InterceptionMode, Severity, Workload
from legation.translators import resolve_proxy

T, E = InterceptionMode.TRANSPARENT, InterceptionMode.EXPLICIT


def pod(annotation: str = "") -> str:
    meta = f"  annotations:\n    sidecar.istio.io/interceptionMode: {annotation}  # <-\n" \
        if annotation else ""
    return (
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web-1\n  namespace: shop\n"
        f"{meta}spec:\n  containers: [{{name: app, image: web}}]\n"
        "status:\n  phase: Running\n  podIP: 10.1.0.5\n"
    )


def entry(annotation: str = "") -> str:
    meta = f"  annotations:\n    sidecar.istio.io/interceptionMode: {annotation}  # <-\n" \
        if annotation else ""
    return (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n"
        f"  name: vm\n  namespace: shop\n{meta}spec:\n  address: 10.2.0.5\n"
    )


@pytest.mark.parametrize(
    ("manifest", "mode"),
    [
        (pod(), T),  # Kubernetes pods are redirected by iptables (Istio injects it)
        (pod("REDIRECT"), T),
        (pod("NONE"), E),
        (entry(), E),  # outside Kubernetes: explicit (DESIGN.md §4)
        (entry("REDIRECT"), T),
        (entry("NONE"), E),
    ],
    ids=["pod-default", "pod-redirect", "pod-none", "entry-default", "entry-redirect",
         "entry-none"],
)
def test_mode_from_annotation_and_kind(manifest: str, mode: InterceptionMode) -> None:
    result = convert(manifest)
    w = only(result)
    assert isinstance(w, Workload)
    assert w.interception is mode
    assert result.diagnostics == ()


def test_tproxy_is_transparent_and_warned_about() -> None:
    text = pod("TPROXY")
    result = convert(text)
    w = only(result)
    assert isinstance(w, Workload) and w.interception is T
    (d,) = result.diagnostics
    assert (d.code, d.severity, d.line) == ("pod.interception-mode-tproxy", Severity.WARNING,
                                            marked_line(text))
    assert "REDIRECT" in d.message


@pytest.mark.parametrize(
    ("manifest", "default", "code"),
    [
        (pod("redirect"), T, "pod.interception-mode-invalid"),
        (pod("SIDECAR"), T, "pod.interception-mode-invalid"),
        (entry("nope"), E, "workloadentry.interception-mode-invalid"),
    ],
    ids=["pod-lowercase", "pod-unknown", "entry-unknown"],
)
def test_a_bad_value_is_a_warning_and_the_default_applies(
    manifest: str, default: InterceptionMode, code: str
) -> None:
    result = convert(manifest)
    w = only(result)  # still served
    assert isinstance(w, Workload) and w.interception is default
    (d,) = result.diagnostics
    assert (d.code, d.severity) == (code, Severity.WARNING)
    assert d.field == "metadata.annotations[sidecar.istio.io/interceptionMode]"
    assert d.line == marked_line(manifest)
    assert "expected REDIRECT, TPROXY or NONE" in d.message


@pytest.mark.parametrize(("manifest", "mode"), [(pod(), T), (pod("NONE"), E), (entry(), E)],
                         ids=["pod", "pod-none", "entry"])
def test_resolve_proxy_takes_the_workloads_mode(manifest: str, mode: InterceptionMode) -> None:
    store = MeshStore()
    result = convert(manifest)
    store.replace_source("test", result.objects, result.diagnostics)
    w = only(result)
    assert isinstance(w, Workload)
    proxy = resolve_proxy(store.snapshot(), f"{w.name}.{w.namespace}")
    assert proxy is not None and proxy.mode is mode
