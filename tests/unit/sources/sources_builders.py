"""Test builders for the source converters: YAML in, results and expectations out.

Manifests in tests mark the line a diagnostic must point at with `# <-`, so
expected lines are computed, not hand-counted.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from legation.model import Diagnostic, MeshObject, Severity
from legation.sources.convert import ConvertResult, convert_text

MARK = "# <-"
FILE = "mesh/test.yaml"


def convert(text: str) -> ConvertResult:
    return convert_text(textwrap.dedent(text), file=FILE)


def marked_line(text: str) -> int:
    """1-based line of the `# <-` marker in `text` (after dedent)."""
    lines = textwrap.dedent(text).splitlines()
    hits = [i + 1 for i, line in enumerate(lines) if MARK in line]
    assert len(hits) == 1, f"expected exactly one {MARK} marker, found {len(hits)}"
    return hits[0]


def only(result: ConvertResult) -> MeshObject:
    assert not errors(result), [d.format() for d in result.diagnostics]
    assert len(result.objects) == 1, result.objects
    return result.objects[0]


def errors(result: ConvertResult) -> list[Diagnostic]:
    return [d for d in result.diagnostics if d.severity is Severity.ERROR]


@dataclass(frozen=True, slots=True, kw_only=True)
class Bad:
    """An invalid manifest and the one diagnostic it must produce."""

    id: str
    yaml: str
    code: str
    field: str
    severity: Severity = Severity.ERROR
    keyed: bool = True  # an invalid object that can be identified is reported in failed_keys


def assert_bad(case: Bad) -> ConvertResult:
    """The case yields its diagnostic at the marked line, and no object."""
    result = convert(case.yaml)
    found = [d for d in result.diagnostics if d.code == case.code]
    assert found, [d.format() for d in result.diagnostics]
    diag = found[0]
    assert diag.field == case.field
    assert diag.severity is case.severity
    assert diag.line == marked_line(case.yaml), diag.format()
    assert diag.ref.file == FILE
    assert diag.message.endswith("."), diag.message
    if case.severity is Severity.ERROR:
        assert result.objects == ()
        # an identifiable invalid object is reported as failed: its last good version is kept
        ref = diag.ref
        assert result.failed_keys == (((ref.kind, ref.namespace, ref.name),) if case.keyed else ())
    return result
