"""Kinds Legation reads but does not implement are never accepted in silence (issue 10)."""

from __future__ import annotations

import pytest

from legation.sources.convert import convert_text

MANIFESTS = {
    "TCPRoute": "gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n"
                "spec: {parentRefs: [{name: gw}],\n"
                "       rules: [{backendRefs: [{name: db, port: 5432}]}]}",
}


@pytest.mark.parametrize("kind", sorted(MANIFESTS), ids=str)
def test_an_unimplemented_kind_gets_a_warning_naming_it(kind: str) -> None:
    api, rest = MANIFESTS[kind].split("\n", 1)
    text = f"# a comment\napiVersion: {api}\nmetadata: {{name: thing, namespace: shop}}\n{rest}\n"
    result = convert_text(text, file="edge.yaml")
    (d,) = [d for d in result.diagnostics if d.code == "object.kind-not-implemented"]
    assert d.severity == "warning"
    assert d.ref.kind == kind and d.ref.file == "edge.yaml" and d.ref.name == "thing"
    assert f"{kind} shop/thing is read but not implemented yet" in d.message
    assert d.message.endswith("It has no effect.")
    assert (d.ref.line, d.at_line, d.location) == (2, 4, "edge.yaml:4")  # the kind: line
