"""Import layers (STYLE.md §2), as written in legation/__init__.py, enforced by reading
every module's imports: folders import only what the table allows, no import cycles
(TYPE_CHECKING imports count), only entry points at the top, and only settings.py
reads the environment. Each check is shown failing on a synthetic package first."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import legation

PKG = Path(legation.__file__).resolve().parent
ENTRY_POINTS = {"__init__", "__main__", "cli", "settings", "logs", "metrics", "bootstrap"}
LEAVES = {"settings", "logs", "metrics", "bootstrap"}  # entry points importing nothing of ours


def layer_table(doc: str) -> dict[str, set[str] | None]:
    """folder -> what it may import (None: anything), from the package docstring."""
    table: dict[str, set[str] | None] = {}
    lines = doc.split("folder        may import (besides its own folder)", 1)[1].splitlines()
    for line in lines[1:]:
        m = re.match(r"^    (\w+)\s+(.*)$", line)
        if not m:
            if table and not line.strip():
                break
            continue
        folder, rest = m.groups()
        table[folder] = None if rest.startswith("anything") else (
            set() if rest.strip() == "-" else set(rest.split()))
    return table


def imports_of(path: Path, package: str, modules: set[str]) -> list[str]:
    """Every module of ours a file imports (`from pkg import mod` names pkg.mod)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative imports are not used here"
            if node.module:
                subs = [f"{node.module}.{a.name}" for a in node.names]
                found += [s for s in subs if s in modules] or [node.module]
    return [f for f in found if f == package or f.startswith(package + ".")]


def module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def check(root: Path) -> list[str]:
    """Every violation of the layering rules in the package at `root`."""
    package = root.name
    doc = ast.get_docstring(ast.parse((root / "__init__.py").read_text())) or ""
    table = layer_table(doc)
    modules = {module_name(root, p): p for p in sorted(root.rglob("*.py"))}
    problems: list[str] = []
    for p in sorted(root.glob("*.py")):
        if p.stem not in ENTRY_POINTS:
            problems.append(f"{p.name}: a loose module at the top (only {sorted(ENTRY_POINTS)})")
    for d in sorted(q for q in root.iterdir() if q.is_dir() and (q / "__init__.py").exists()):
        if d.name not in table:
            problems.append(f"{d.name}/: a folder the layer table in __init__.py does not name")
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        parts = name.split(".")
        folder = parts[1] if len(parts) > 2 or (path.name == "__init__.py" and len(parts) > 1) \
            else None
        top = parts[1] if len(parts) == 2 and path.name != "__init__.py" else None
        edges = graph.setdefault(name, set())
        for imported in imports_of(path, package, set(modules)):
            target = imported
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            # a package's facade (__init__) re-exporting its modules is no cycle
            if target in modules and not name.startswith(target + "."):
                edges.add(target)
            first = imported.split(".")[1] if "." in imported else ""
            if not first or first == folder or first == "__version__":
                continue
            if top is not None:
                if top in LEAVES:
                    problems.append(f"{name} imports {imported}: {top} imports nothing of ours")
                continue
            allowed = table.get(folder or "", set())
            if allowed is not None and first not in allowed:
                problems.append(f"{name} imports {imported}: {folder}/ may import only "
                                f"{sorted(allowed) or 'nothing of ours'}")
    problems += [f"import cycle: {' -> '.join(c)}" for c in _cycles(graph)]
    return problems


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_legation_respects_its_layers() -> None:
    problems = check(PKG)
    assert not problems, "\n".join(problems)


def test_the_table_names_every_folder() -> None:
    table = layer_table(legation.__doc__ or "")
    assert {"model", "translators", "cache", "security", "mesh", "sources", "kube", "xds",
            "admin", "agent", "demo", "app"} == set(table)
    assert table["model"] == set() and table["translators"] == {"model"}


def _fake(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "legation"
    doc = (legation.__doc__ or "").replace('"""', "")
    files = {"__init__.py": f'"""{doc}"""\n', **files}
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


def test_check_catches_an_upward_import(tmp_path: Path) -> None:
    root = _fake(tmp_path, {"model/__init__.py": "", "xds/__init__.py": "",
                            "model/m.py": "from legation.xds import server\n"})
    assert check(root) == ["legation.model.m imports legation.xds: model/ may import only "
                           "nothing of ours"]


def test_check_catches_a_sideways_import(tmp_path: Path) -> None:
    root = _fake(tmp_path, {"kube/__init__.py": "", "mesh/__init__.py": "",
                            "kube/k.py": "import legation.mesh.store\n"})
    assert any("kube/ may import only ['model', 'security']" in p for p in check(root))


def test_check_catches_a_cycle_closed_under_type_checking(tmp_path: Path) -> None:
    root = _fake(tmp_path, {
        "security/__init__.py": "",
        "security/a.py": "from legation.security.b import B\n",
        "security/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                         "    from legation.security.a import A\n",
    })
    assert check(root) == ["import cycle: legation.security.a -> legation.security.b"]


def test_check_catches_a_loose_module_and_an_unknown_folder(tmp_path: Path) -> None:
    root = _fake(tmp_path, {"helpers.py": "", "misc/__init__.py": ""})
    problems = check(root)
    assert any(p.startswith("helpers.py: a loose module") for p in problems)
    assert any(p.startswith("misc/: a folder the layer table") for p in problems)


def test_check_catches_a_leaf_entry_point_importing_ours(tmp_path: Path) -> None:
    root = _fake(tmp_path, {"metrics.py": "from legation.model import x\n"})
    assert check(root) == ["legation.metrics imports legation.model: metrics imports "
                           "nothing of ours"]


def test_only_settings_reads_the_environment() -> None:
    offenders = []
    for path in sorted(PKG.rglob("*.py")):
        if path.name == "settings.py" and path.parent == PKG:
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text or "getenv(" in text:
            offenders.append(str(path.relative_to(PKG.parent)))
    assert not offenders, f"only legation/settings.py may read the environment: {offenders}"
