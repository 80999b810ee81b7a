"""Import layers (STYLE.md §2), enforced by reading every module's imports."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "legation"

# package -> prefixes of ours it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "model": ("legation.",),
    "translators": ("legation.",),
    "sources": ("legation.xds", "legation.translators", "legation.cache"),
    "sds": ("legation.xds", "legation.sources"),
    "xds": ("legation.sources", "legation.translators", "legation.store"),
    "cache": ("legation.sources", "legation.translators", "legation.xds", "legation.model"),
}
ALLOWED: dict[str, tuple[str, ...]] = {
    "model": ("legation.model",),
    "translators": ("legation.model", "legation.translators"),
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
    return found


def _modules(package: str) -> list[Path]:
    return sorted((PKG / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(FORBIDDEN), ids=str)
def test_package_respects_its_layer(package: str) -> None:
    bad = []
    for path in _modules(package):
        for name in _imports(path):
            allowed = ALLOWED.get(package, ())
            if any(name == a or name.startswith(a + ".") for a in allowed):
                continue
            if any(name.startswith(f) or name + "." == f for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(PKG.parent)} imports {name}")
    assert not bad, "\n".join(bad)


def test_only_settings_reads_the_environment() -> None:
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "settings.py" and path.parent == PKG:
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text or "getenv(" in text:
            offenders.append(str(path.relative_to(PKG.parent)))
    assert not offenders, f"only legation/settings.py may read the environment: {offenders}"


def test_layer_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "m.py"
    bad.write_text("from legation.xds import server\nimport os\n")
    assert "legation.xds" in _imports(bad)
