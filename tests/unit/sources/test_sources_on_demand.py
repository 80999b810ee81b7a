"""On-demand config: the `sidecar.legation.io/on-demand` annotation on workloads."""

from __future__ import annotations

import pytest
from sources_builders import convert, marked_line, only

from legation.model import Severity, Workload


def entry(value: str, mode: str = "") -> str:
    extra = f"    sidecar.istio.io/interceptionMode: {mode}\n" if mode else ""
    return (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n"
        f"  name: vm\n  namespace: shop\n  annotations:\n{extra}"
        f"    sidecar.legation.io/on-demand: {value}  # <-\nspec:\n  address: 10.2.0.5\n"
    )


@pytest.mark.parametrize(("value", "on"), [('"true"', True), ('"false"', False)])
def test_the_annotation_turns_it_on_or_off(value: str, on: bool) -> None:
    result = convert(entry(value))
    w = only(result)
    assert isinstance(w, Workload) and w.on_demand is on
    assert result.diagnostics == ()


@pytest.mark.parametrize(("text", "code"), [
    (entry('"yes"'), "workloadentry.on-demand-invalid"),
    (entry('"true"', mode="REDIRECT"), "workloadentry.on-demand-transparent"),
], ids=["bad-value", "transparent"])
def test_what_cannot_apply_is_a_warning_and_off(text: str, code: str) -> None:
    result = convert(text)
    w = only(result)
    assert isinstance(w, Workload) and not w.on_demand
    (d,) = result.diagnostics
    assert (d.code, d.severity, d.line) == (code, Severity.WARNING, marked_line(text))
    assert d.field == "metadata.annotations[sidecar.legation.io/on-demand]"
