"""Builders for traffic-policy tests: a small mesh as YAML, stores, and marked lines.

A manifest marks the line a diagnostic must point at with `# <-`; expected
lines are computed, never hand-counted.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, MeshSnapshot, Severity
from legation.sources.convert import ConvertResult, convert_text

MARK = "# <-"
FILE = "mesh/traffic.yaml"

# catalog (v1, v2), reviews (two ports), a client; a DestinationRule with v1, v2.
BASE = """\
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  selector: {app: catalog}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: http-admin, port: 9090}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v1, namespace: shop}
spec: {address: 10.0.0.1, labels: {app: catalog, version: v1}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v2, namespace: shop}
spec: {address: 10.0.0.2, labels: {app: catalog, version: v2}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: client, namespace: shop}
spec: {address: 10.0.0.9, labels: {app: client, env: test}}
"""

CATALOG_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: shop}
spec:
  host: catalog
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


def vs(body: str, name: str = "catalog") -> str:
    """A VirtualService in shop; `body` is the YAML under `spec:` (dedented)."""
    spec = textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            f"metadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n")


def dr(body: str, name: str = "catalog") -> str:
    spec = textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")
    return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
            f"metadata: {{name: {name}, namespace: shop}}\nspec:\n{spec}\n")


def marked_line(text: str) -> int:
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if MARK in line]
    assert len(hits) == 1, f"expected exactly one {MARK} marker, found {len(hits)}"
    return hits[0]


def convert(text: str, file: str = FILE) -> ConvertResult:
    return convert_text(text, file=file)


class Mesh:
    """A MeshStore fed from named YAML files, as the file source would."""

    def __init__(self, **files: str) -> None:
        self.store = MeshStore()
        self.load(base=BASE, **files)

    def load(self, **files: str) -> None:
        for name, text in files.items():
            result = convert(text, file=f"{name}.yaml")
            self.store.replace_source(f"file:{name}", result.objects, result.diagnostics)

    def remove(self, name: str) -> None:
        self.store.replace_source(f"file:{name}", ())

    def snapshot(self) -> MeshSnapshot:
        """The current mesh, put in force as the pipeline does once it has served it."""
        snap = self.store.snapshot()
        self.store.accept(snap)
        return snap

    def findings(self, code: str) -> list[Diagnostic]:
        return [d for d in self.snapshot().diagnostics if d.code == code]


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """A manifest with one mistake, and the diagnostic it must produce."""

    id: str
    yaml: str
    code: str
    field: str
    message: str  # a substring of the message
    severity: Severity = Severity.ERROR
