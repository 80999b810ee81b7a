"""Diagnostics: bad user config is data, not an exception.

Every converter and translator reports problems as `Diagnostic` values with a
stable `code` (e.g. ``service.port-invalid``) so that the CLI, the admin API,
logs and metrics can all show the same finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceRef:
    """Where an object came from: a file and line, or a Kubernetes object."""

    kind: str
    namespace: str
    name: str
    file: str = ""
    line: int = 0  # 1-based; 0 when unknown
    generation: int = 0  # Kubernetes metadata.generation (0: unknown, a file)

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line else self.file

    def __str__(self) -> str:
        obj = (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind} {self.name}"
        )
        loc = self.location
        return f"{loc}: {obj}" if loc else obj


@dataclass(frozen=True, slots=True, kw_only=True)
class Diagnostic:
    ref: SourceRef
    field: str  # dotted field path, e.g. "spec.ports[0].port"; "" for the whole object
    code: str  # stable, e.g. "service.port-invalid"
    message: str  # a sentence a user understands: what is wrong, what was expected
    severity: Severity = Severity.ERROR
    line: int = 0  # line of the field itself when known, else the object's line

    @property
    def at_line(self) -> int:
        """The line a user is pointed to: the field's when known, else the object's first
        line. The one rule for `analyze`, the serve log and /debug/diagnostics."""
        return self.line or self.ref.line

    @property
    def location(self) -> str:
        """`file:line` (see `at_line`); the file alone when the line is unknown."""
        ref, line = self.ref, self.at_line
        return f"{ref.file}:{line}" if ref.file and line else ref.file

    @property
    def subject(self) -> str:
        ref = self.ref
        return f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else \
            f"{ref.kind} {ref.name}"

    def format(self) -> str:
        """One line: `file:line: severity code: Kind ns/name: field: message`."""
        loc, obj = self.location, self.subject
        parts = [p for p in (loc, f"{self.severity} {self.code}", obj) if p]
        where = f" {self.field}:" if self.field else ""
        return ": ".join(parts) + ":" + where + " " + self.message

    def as_dict(self) -> dict[str, object]:
        return {
            "severity": str(self.severity),
            "code": self.code,
            "kind": self.ref.kind,
            "namespace": self.ref.namespace,
            "name": self.ref.name,
            "file": self.ref.file,
            "line": self.at_line,
            "field": self.field,
            "message": self.message,
        }
