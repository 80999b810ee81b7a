"""Golden files: translator output for every case under tests/golden/<case>/.

A case is `in.yaml` (manifests) and `proxies.txt` (node ids, one per line).
Expected outputs are `out.mesh.yaml`, `out.<node-id>.yaml` and
`out.diagnostics.yaml`. Regenerate with `pytest tests/golden --update-golden`,
which also deletes stale `out.*` files; review the result as a diff.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from .render import render

HERE = Path(__file__).resolve().parent
CASES = sorted(p.parent for p in HERE.glob("*/in.yaml"))


def test_there_are_cases() -> None:
    assert len(CASES) >= 7


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.name)
def test_golden(case: Path, update_golden: bool) -> None:
    expected = render(case)
    present = {p.name for p in case.glob("out.*")}
    if update_golden:
        for name, text in expected.items():
            path = case / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
        for stale in sorted(present - set(expected)):
            (case / stale).unlink()
        return
    problems = []
    for name, text in sorted(expected.items()):
        path = case / name
        if not path.exists():
            problems.append(f"{case.name}/{name} is missing")
            continue
        actual = path.read_text()
        if actual != text:
            diff = difflib.unified_diff(
                actual.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"{case.name}/{name} (golden)",
                tofile=f"{case.name}/{name} (translated)",
            )
            problems.append("".join(diff))
    problems += [f"{case.name}/{n} is stale" for n in sorted(present - set(expected))]
    assert not problems, (
        "\n".join(problems) + "\n(run `pytest tests/golden --update-golden` and review the diff)"
    )
