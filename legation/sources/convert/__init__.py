"""Manifests -> model: pure conversion of Kubernetes / Istio YAML into `legation.model`.

The one place (with `sources/kubernetes.py`) that knows manifest shapes.
`convert_text` turns one file's text into valid objects, the keys of objects
that are present but invalid (the caller keeps their last good version), and
diagnostics; `broken` says the whole file could not be read (YAML syntax) and
the caller should keep everything it had from it. `convert_object` converts
one manifest dict (also used for Kubernetes API objects). No I/O, no logging.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from legation.model import Diagnostic, MeshObject, ObjectKey, Severity, SourceRef, object_key
from legation.sources.convert.dispatch import KINDS, convert_object
from legation.sources.convert.yamlload import Document, load_documents

__all__ = ["KINDS", "ConvertResult", "ObjectKey", "convert_object", "convert_text"]

_LIST_ITEM = re.compile(r"items\[(\d+)\]\.?(.*)\Z", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConvertResult:
    objects: tuple[MeshObject, ...]  # valid objects
    failed_keys: tuple[ObjectKey, ...]  # present but invalid: the caller keeps the last good one
    diagnostics: tuple[Diagnostic, ...]
    broken: bool = False  # the whole file is unreadable: keep ALL its last good objects


def convert_text(text: str, *, file: str) -> ConvertResult:
    """Convert every document of a YAML file. Never raises for bad input."""
    loaded = load_documents(text, file=file)
    if loaded.broken:
        return ConvertResult(
            objects=(), failed_keys=(), diagnostics=loaded.diagnostics, broken=True
        )
    objects: dict[ObjectKey, MeshObject] = {}
    failed: dict[ObjectKey, int] = {}  # key -> line
    diagnostics = list(loaded.diagnostics)
    for doc in loaded.documents:
        for data, line, lines in _manifests(doc):
            obj, key, diags = convert_object(data, file=file, line=line, lines=lines)
            diagnostics.extend(diags)
            if obj is not None:
                key = object_key(obj)
            if key is None:
                continue
            first = objects[key].ref.line if key in objects else failed.get(key)
            if first is not None:
                diagnostics.append(_duplicate(key, file=file, line=line, first=first))
            elif obj is not None:
                objects[key] = obj
            else:
                failed[key] = line
    return ConvertResult(
        objects=tuple(objects.values()),
        failed_keys=tuple(failed),
        diagnostics=tuple(sorted(diagnostics, key=lambda d: d.at_line)),
    )


def _manifests(doc: Document) -> Iterator[tuple[Mapping[str, Any], int, Mapping[str, int]]]:
    """The manifests of a document: itself, or the items of a `v1 List` (`kubectl get -o yaml`)."""
    data = doc.data
    items = data.get("items")
    kind = data.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List") and isinstance(items, list)):
        yield data, doc.line, doc.lines
        return
    per_item: dict[int, dict[str, int]] = {}
    for path, line in doc.lines.items():
        m = _LIST_ITEM.match(path)
        if m is not None:
            per_item.setdefault(int(m.group(1)), {})[m.group(2)] = line
    for i, item in enumerate(items):
        lines = per_item.get(i, {})
        line = lines.pop("", doc.line)
        if isinstance(item, Mapping):
            yield item, line, lines
        # non-mapping items: nothing to convert; a List is a transport, not config


def _duplicate(key: ObjectKey, *, file: str, line: int, first: int) -> Diagnostic:
    kind, namespace, name = key
    return Diagnostic(
        ref=SourceRef(kind=kind, namespace=namespace, name=name, file=file, line=line),
        field="metadata.name",
        code="object.duplicate",
        message=f"{kind} is defined twice in this file; the first definition (line {first}) "
        "is used and this one is ignored.",
        severity=Severity.WARNING,
        line=line,
    )
