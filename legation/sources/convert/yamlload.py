"""Multi-document YAML -> plain data, with the line of every field.

The first step of conversion (see `legation.sources.convert`): a file's text
becomes `Document`s (plain dicts plus a field-path -> line map built from the
composed nodes), so that converters can point a diagnostic at the exact line
of `spec.ports[0].port`. Uses libyaml (`CSafeLoader`) when available.

A YAML syntax error makes the whole file *broken*: one `yaml.syntax`
diagnostic with the file and line, and no documents, so the caller keeps what
it had (a half-written file must not delete half a mesh). Empty documents are
skipped; a document that is not a mapping gets `yaml.not-an-object`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from legation.model import Diagnostic, Severity, SourceRef

if TYPE_CHECKING:
    _AnyLoader = yaml.CSafeLoader | yaml.SafeLoader
# libyaml is ~10x faster; the pure-Python loader behaves the same.
_Loader: type[_AnyLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Bounds that keep hostile or broken input from exhausting memory or the stack:
# alias expansion ("billion laughs") and absurd nesting.
MAX_NODES = 1_000_000
MAX_DEPTH = 100

_NULL_TAG = "tag:yaml.org,2002:null"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


def child_path(path: str, key: str | int) -> str:
    """The path of `key` under `path`: `spec.ports[0].port`, `metadata.labels[app.k8s.io/name]`.

    Plain identifiers join with a dot; list indexes and keys with other
    characters (dots, slashes) go in brackets, as Kubernetes writes field paths.
    """
    if isinstance(key, int):
        return f"{path}[{key}]"
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key}]"


def parent_path(path: str) -> str:
    """`spec.ports[0].port` -> `spec.ports[0]` -> `spec.ports` -> `spec` -> ``."""
    if path.endswith("]"):
        return path[: path.rfind("[")]
    dot = path.rfind(".")
    close = path.rfind("]")
    return path[:dot] if dot > close else path[: close + 1]


def line_for(lines: Mapping[str, int] | None, path: str, default: int) -> int:
    """The line of `path`, else of its nearest ancestor present in `lines`, else `default`."""
    if not lines:
        return default
    while path:
        line = lines.get(path)
        if line:
            return line
        path = parent_path(path)
    return default


@dataclass(frozen=True, slots=True, kw_only=True)
class Document:
    """One YAML document that is a mapping."""

    data: Mapping[str, Any]
    file: str
    line: int  # 1-based line where the document's mapping starts
    index: int  # 0-based position among the file's documents
    lines: Mapping[str, int]  # field path -> 1-based line of its key

    def line_of(self, path: str) -> int:
        return line_for(self.lines, path, self.line)


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    documents: tuple[Document, ...]
    diagnostics: tuple[Diagnostic, ...]
    broken: bool = False


class _DocumentError(Exception):
    """A document that parsed but cannot be used as data (cycle, size, depth)."""

    def __init__(self, code: str, message: str, line: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.line = line


def load_documents(text: str, *, file: str) -> Loaded:
    """Parse every document of `text`; never raises for bad YAML."""
    documents: list[Document] = []
    diagnostics: list[Diagnostic] = []
    loader = _Loader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            doc = _document(loader, node, file=file, index=index, diagnostics=diagnostics)
            if doc is not None:
                documents.append(doc)
            index += 1
    except yaml.YAMLError as exc:
        return Loaded(documents=(), diagnostics=(_syntax(exc, text, file),), broken=True)
    except RecursionError:
        diag = _file_diag(file, 0, "yaml.syntax", f"the YAML nests deeper than {MAX_DEPTH} levels.")
        return Loaded(documents=(), diagnostics=(diag,), broken=True)
    finally:
        loader.dispose()
    return Loaded(documents=tuple(documents), diagnostics=tuple(diagnostics))


def _document(
    loader: _AnyLoader, node: Node, *, file: str, index: int, diagnostics: list[Diagnostic]
) -> Document | None:
    line = node.start_mark.line + 1
    if isinstance(node, ScalarNode) and node.tag == _NULL_TAG:
        return None  # an empty document (`---` followed by nothing): skipped silently
    lines: dict[str, int] = {}
    if isinstance(node, MappingNode):
        # Map lines before constructing: construction flattens `<<` merges in place.
        try:
            _LineMapper(lines, diagnostics, file=file, index=index).walk(node, "", 0)
        except _DocumentError as exc:
            diagnostics.append(_doc_diag(file, index, exc.line or line, exc.code, exc.message))
            return None
    data = loader.construct_document(node)
    if not isinstance(data, dict):
        diagnostics.append(
            _doc_diag(
                file, index, line, "yaml.not-an-object",
                f"found {_kind_of(data)}; expected a mapping with apiVersion, kind and metadata.",
            )
        )
        return None
    return Document(data=data, file=file, line=line, index=index, lines=lines)


class _LineMapper:
    """Walks composed nodes recording the line of every field path."""

    def __init__(
        self, lines: dict[str, int], diagnostics: list[Diagnostic], *, file: str, index: int
    ) -> None:
        self._lines = lines
        self._diagnostics = diagnostics
        self._file = file
        self._index = index
        self._active: set[int] = set()  # ids of nodes on the current path (cycle check)
        self._count = 0

    def walk(self, node: Node, path: str, depth: int) -> None:
        self._count += 1
        line = node.start_mark.line + 1
        if self._count > MAX_NODES:
            raise _DocumentError(
                "yaml.too-large", f"the document expands to more than {MAX_NODES} values "
                "(aliases included); split it or use fewer aliases.", line,
            )
        if depth > MAX_DEPTH:
            raise _DocumentError(
                "yaml.too-deep", f"the document nests deeper than {MAX_DEPTH} levels.", line
            )
        if isinstance(node, ScalarNode):
            return
        if id(node) in self._active:
            raise _DocumentError(
                "yaml.recursive", "an alias refers to one of its own parents; "
                "a manifest must be a tree.", line,
            )
        self._active.add(id(node))
        if isinstance(node, MappingNode):
            self._mapping(node, path, depth)
        elif isinstance(node, SequenceNode):
            for i, item in enumerate(node.value):
                p = child_path(path, i)
                self._lines[p] = item.start_mark.line + 1
                self.walk(item, p, depth + 1)
        self._active.discard(id(node))

    def _mapping(self, node: MappingNode, path: str, depth: int) -> None:
        seen: set[str] = set()
        merges: list[Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            key = str(key_node.value) if isinstance(key_node, ScalarNode) else "?"
            p = child_path(path, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                self._diagnostics.append(
                    _doc_diag(
                        self._file, self._index, line, "yaml.duplicate-key",
                        f"key {key!r} appears twice in the same mapping ({p}); "
                        "the last one is used.",
                        severity=Severity.WARNING,
                    )
                )
            seen.add(key)
            self._lines[p] = line
            self.walk(value_node, p, depth + 1)
        for merged in merges:  # `<<: *base` or `<<: [*a, *b]`; explicit keys win
            sources = merged.value if isinstance(merged, SequenceNode) else [merged]
            for source in sources:
                if isinstance(source, MappingNode):
                    self._merged(source, path, depth, seen)

    def _merged(self, node: MappingNode, path: str, depth: int, seen: set[str]) -> None:
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = str(key_node.value)
            if key in seen:
                continue
            seen.add(key)
            p = child_path(path, key)
            self._lines[p] = key_node.start_mark.line + 1
            self.walk(value_node, p, depth + 1)


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return type(value).__name__


def _syntax(exc: yaml.YAMLError, text: str, file: str) -> Diagnostic:
    line = 0
    problem = str(exc)
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        context = exc.context or ""
        if context and exc.context_mark is not None and exc.context_mark.line + 1 != line:
            context += f" started on line {exc.context_mark.line + 1}"
        problem = ": ".join(p for p in (context, exc.problem) if p) or problem
    elif isinstance(exc, yaml.reader.ReaderError):
        line = text.count("\n", 0, exc.position) + 1
        problem = f"unacceptable character #x{exc.character:04x}: {exc.reason}"
    return _file_diag(
        file, line, "yaml.syntax",
        f"the file is not valid YAML ({problem}); nothing in it was read",
    )


def _file_diag(file: str, line: int, code: str, message: str) -> Diagnostic:
    name = file.rsplit("/", 1)[-1] or file
    return Diagnostic(
        ref=SourceRef(kind="File", namespace="", name=name, file=file, line=line),
        field="",
        code=code,
        message=message,
        line=line,
    )


def _doc_diag(
    file: str, index: int, line: int, code: str, message: str,
    severity: Severity = Severity.ERROR,
) -> Diagnostic:
    return Diagnostic(
        ref=SourceRef(kind="Document", namespace="", name=f"#{index + 1}", file=file, line=line),
        field="",
        code=code,
        message=message,
        severity=severity,
        line=line,
    )
