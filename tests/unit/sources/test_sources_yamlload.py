"""YAML loading: documents, field-path line maps, syntax errors; name validation."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sources_builders import convert

from legation.model import Severity
from legation.sources.convert import yamlload
from legation.sources.convert.fields import (
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_iana_port_name,
)
from legation.sources.convert.yamlload import child_path, line_for, load_documents, parent_path

TEXT = """\
# comment
apiVersion: v1
kind: Service
metadata:
  name: a
  labels:
    app.kubernetes.io/name: a
spec:
  ports:
  - name: http
    port: 80
  -
    port: 81
---
---
kind: Second
list:
- [1, 2]
"""


def test_documents_and_lines() -> None:
    loaded = load_documents(TEXT, file="f.yaml")
    assert not loaded.diagnostics and not loaded.broken
    first, second = loaded.documents
    assert (first.line, first.index, second.line, second.index) == (2, 0, 16, 2)
    assert first.data["spec"]["ports"][1] == {"port": 81}
    assert first.lines["metadata.labels[app.kubernetes.io/name]"] == 7
    assert first.lines["spec.ports[0].port"] == 11
    assert first.lines["spec.ports[1]"] == 13
    assert first.line_of("spec.ports[1].port") == 13
    assert first.line_of("spec.ports[1].targetPort") == 13  # missing: nearest ancestor
    assert first.line_of("spec.selector") == 8
    assert first.line_of("status") == 2  # nothing known: the document's line
    assert second.lines["list[0][1]"] == 18


def test_merge_keys_map_to_their_lines() -> None:
    text = textwrap.dedent("""\
        base: &base
          port: 80
          name: web
        spec:
          <<: *base
          name: api
        """)
    (doc,) = load_documents(text, file="f.yaml").documents
    assert doc.data["spec"] == {"port": 80, "name": "api"}
    assert doc.lines["spec.name"] == 6  # the explicit key wins
    assert doc.lines["spec.port"] == 2  # merged from the anchor
    assert "spec[<<]" not in doc.lines


SYNTAX = [
    ("unclosed-flow", "a: 1\n---\nb: [1, 2\nc: 3\n", 4),
    ("bad-indent", "a:\n  b: 1\n c: 2\n", 3),
    ("tab", "a:\n\tb: 1\n", 2),
    ("undefined-alias", "a: 1\nb: *nope\n", 2),
    ("unknown-tag", "a: !vault secret\n", 1),
    ("control-char", "a: 1\nb: \x07\n", 2),
]


@pytest.mark.parametrize(("text", "line"), [c[1:] for c in SYNTAX], ids=[c[0] for c in SYNTAX])
def test_syntax_error_breaks_the_file(text: str, line: int) -> None:
    result = convert(text)
    assert result.broken and result.objects == () and result.failed_keys == ()
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity, diag.line, diag.ref.file) == (
        "yaml.syntax", Severity.ERROR, line, "mesh/test.yaml"
    )
    assert diag.format().startswith(f"mesh/test.yaml:{line}: error yaml.syntax:")


NOT_OBJECTS = [
    ("list", "- a\n- b\n", "a list"),
    ("string", "hello\n", "a string"),
    ("number", "42\n", "a number"),
]


@pytest.mark.parametrize(("text", "found"), [c[1:] for c in NOT_OBJECTS],
                         ids=[c[0] for c in NOT_OBJECTS])
def test_not_an_object(text: str, found: str) -> None:
    result = convert("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n" + text)
    assert not result.broken and len(result.objects) == 1
    (diag,) = result.diagnostics
    assert (diag.code, diag.line, diag.ref.name) == ("yaml.not-an-object", 5, "#2")
    assert found in diag.message


def test_empty_documents_are_skipped_silently() -> None:
    result = convert("---\n---\n# only a comment\n---\n~\n---\n")
    assert result == type(result)(objects=(), failed_keys=(), diagnostics=())


def test_duplicate_key_warns() -> None:
    result = convert("apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\nkind: Namespace\n")
    assert len(result.objects) == 1
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity, diag.line) == ("yaml.duplicate-key", Severity.WARNING, 4)


def test_recursive_alias_is_rejected() -> None:
    result = convert("apiVersion: v1\nkind: Namespace\nmetadata: &m {name: a, self: *m}\n")
    assert [d.code for d in result.diagnostics] == ["yaml.recursive"]
    assert result.objects == ()


def test_alias_expansion_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlload, "MAX_NODES", 1000)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for prev, name in zip("abcd", "bcde", strict=True):
        bomb += f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]\n"
    result = convert(bomb)
    assert [d.code for d in result.diagnostics] == ["yaml.too-large"]


_keys = st.one_of(
    st.from_regex(r"[A-Za-z_][A-Za-z0-9_-]{0,10}", fullmatch=True),
    st.from_regex(r"[a-z0-9./-]{1,20}", fullmatch=True),
    st.integers(min_value=0, max_value=99),
)


@given(st.lists(_keys, min_size=1, max_size=6))
def test_parent_path_inverts_child_path(keys: list[str | int]) -> None:
    path = ""
    paths = []
    for key in keys:
        if isinstance(key, int) and not path:
            key = str(key)  # a document's root is a mapping
        path = child_path(path, key)
        paths.append(path)
    for parent, child in zip(["", *paths], paths, strict=False):
        assert parent_path(child) == parent
    lines = {p: i + 1 for i, p in enumerate(paths)}
    assert line_for(lines, paths[-1] + ".missing", 99) == len(paths)


# -- names -----------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", fullmatch=True)


@given(_label)
def test_dns_labels(name: str) -> None:
    assert is_dns1123_label(name)
    assert is_dns1123_subdomain(name)
    assert is_dns1035_label(name) == name[0].isalpha()
    assert not is_dns1123_label(name.upper()) or name.upper() == name
    assert not is_dns1123_label(name + "-")
    assert not is_dns1123_label(name + "." + name)
    assert is_dns1123_subdomain(name + "." + name) == (len(name) * 2 + 1 <= 253)


@given(st.text(max_size=70))
def test_dns_label_rejects_what_kubernetes_rejects(name: str) -> None:
    ok = (
        0 < len(name) <= 63
        and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in name)
        and name[0] != "-" and name[-1] != "-"
    )
    assert is_dns1123_label(name) == ok


NAMES = [
    ("http", True), ("grpc-web", True), ("h2c", True), ("a" * 15, True), ("a" * 16, False),
    ("8080", False), ("http--x", False), ("-http", False), ("HTTP", False), ("", False),
]


@pytest.mark.parametrize(("name", "ok"), NAMES, ids=[n or "empty" for n, _ in NAMES])
def test_iana_port_names(name: str, ok: bool) -> None:
    assert is_iana_port_name(name) is ok
