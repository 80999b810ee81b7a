"""Typed field access for converters: every problem becomes a Diagnostic.

A `Ctx` belongs to one object being converted. Its getters take the parent
mapping, the key and the parent's field path; when a value is missing they
return the default, when it has the wrong type or range they record an ERROR
(code `<kind>.<problem>-invalid` or `-missing`, the field path, the line of
that field) and return the default too, so a converter can keep going and
report every problem at once. At the end, `ctx.failed` says whether the object
may be produced. Nothing here raises for bad input.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from legation.model import Diagnostic, Severity, SourceRef
from legation.sources.convert.yamlload import child_path, line_for

PORT_RANGE = "an integer from 1 to 65535"

_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_IANA_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")


# -- validators (pure) ----------------------------------------------------


def is_dns1123_label(value: str) -> bool:
    """Kubernetes DNS-1123 label: namespaces, port names (at most 63 characters)."""
    return len(value) <= 63 and _DNS1123_LABEL.match(value) is not None


def is_dns1035_label(value: str) -> bool:
    """Kubernetes DNS-1035 label: Service names (must start with a letter)."""
    return len(value) <= 63 and _DNS1035_LABEL.match(value) is not None


def is_dns1123_subdomain(value: str) -> bool:
    """Kubernetes DNS-1123 subdomain: most object names (at most 253 characters)."""
    return 0 < len(value) <= 253 and all(is_dns1123_label(p) for p in value.split("."))


def is_iana_port_name(value: str) -> bool:
    """RFC 6335 service name, as Kubernetes checks named ports (IsValidPortName):
    1-15 lowercase letters, digits and '-', at least one letter, no '--', no '-' at the ends."""
    return (
        0 < len(value) <= 15
        and _IANA_NAME.match(value) is not None
        and "--" not in value
        and any(c.isalpha() for c in value)
    )


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def describe(value: Any) -> str:
    """How a found value reads in a message: `'abc' (a string)`, `a list`, `null`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if isinstance(value, int | float):
        return f"{value} (a number)"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:57] + "..."
        return f"{shown!r} (a string)"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


# -- per-object context ---------------------------------------------------


class Ctx:
    """Collects the diagnostics of one object; typed getters report bad fields."""

    __slots__ = ("_lines", "diagnostics", "prefix", "ref")

    def __init__(self, *, ref: SourceRef, lines: Mapping[str, int] | None) -> None:
        self.ref = ref
        self.prefix = ref.kind.lower()
        self._lines = lines
        self.diagnostics: list[Diagnostic] = []

    @property
    def failed(self) -> bool:
        return any(d.severity is Severity.ERROR for d in self.diagnostics)

    def line_of(self, path: str) -> int:
        return line_for(self._lines, path, self.ref.line)

    @property
    def lines(self) -> Mapping[str, int]:
        """Field path -> line of every field of the object (empty without a file)."""
        return self._lines or {}

    def report(
        self, path: str, problem: str, message: str, severity: Severity = Severity.ERROR
    ) -> None:
        """Record `<kind>.<problem>` at `path` (a `problem` with a dot is a full code)."""
        code = problem if "." in problem else f"{self.prefix}.{problem}"
        self.diagnostics.append(
            Diagnostic(
                ref=self.ref,
                field=path,
                code=code,
                message=message,
                severity=severity,
                line=self.line_of(path),
            )
        )

    def error(self, path: str, problem: str, message: str) -> None:
        self.report(path, problem, message, Severity.ERROR)

    def warn(self, path: str, problem: str, message: str) -> None:
        self.report(path, problem, message, Severity.WARNING)

    def info(self, path: str, problem: str, message: str) -> None:
        self.report(path, problem, message, Severity.INFO)

    def invalid(self, path: str, problem: str, value: Any, expected: str) -> None:
        self.error(path, f"{problem}-invalid", f"found {describe(value)}; expected {expected}.")

    def missing(self, path: str, problem: str, expected: str) -> None:
        self.error(path, f"{problem}-missing", f"this field is required; expected {expected}.")

    # -- getters ------------------------------------------------------------

    def string(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        problem: str,
        required: bool = False,
        default: str = "",
        expected: str = "a string",
    ) -> str:
        p = child_path(path, key)
        value = obj.get(key)
        if value is None or (required and value == ""):
            if required:
                self.missing(p, problem, expected)
            return default
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, int | float | bool) else ""
            self.invalid(p, problem, value, expected + hint)
            return default
        return value

    def integer(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        problem: str,
        low: int,
        high: int,
        required: bool = False,
        expected: str = "",
    ) -> int | None:
        p = child_path(path, key)
        value = obj.get(key)
        expected = expected or f"an integer from {low} to {high}"
        if value is None:
            if required:
                self.missing(p, problem, expected)
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            self.invalid(p, problem, value, expected)
            return None
        return value

    def port(
        self, obj: Mapping[str, Any], key: str, path: str, *, problem: str, required: bool = False
    ) -> int | None:
        return self.integer(
            obj, key, path, problem=problem, low=1, high=65535, required=required,
            expected=PORT_RANGE,
        )

    def boolean(
        self, obj: Mapping[str, Any], key: str, path: str, *, problem: str
    ) -> bool | None:
        value = obj.get(key)
        if value is None or isinstance(value, bool):
            return value
        self.invalid(child_path(path, key), problem, value, "true or false")
        return None

    def mapping(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        problem: str,
        required: bool = False,
        expected: str = "a mapping",
    ) -> Mapping[str, Any]:
        """The mapping at `key`; {} when missing or invalid (invalid is reported)."""
        p = child_path(path, key)
        value = obj.get(key)
        if value is None:
            if required:
                self.missing(p, problem, expected)
            return {}
        return self.as_mapping(value, p, problem=problem, expected=expected) or {}

    def as_mapping(
        self, value: Any, path: str, *, problem: str, expected: str = "a mapping"
    ) -> Mapping[str, Any] | None:
        if isinstance(value, Mapping):
            return value
        self.invalid(path, problem, value, expected)
        return None

    def items(
        self, obj: Mapping[str, Any], key: str, path: str, *, problem: str
    ) -> list[tuple[str, Any]]:
        """(path, item) for each item of the list at `key`; [] when missing or invalid."""
        p = child_path(path, key)
        value = obj.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.invalid(p, problem, value, "a list")
            return []
        return [(child_path(p, i), item) for i, item in enumerate(value)]

    def mapping_items(
        self, obj: Mapping[str, Any], key: str, path: str, *, problem: str
    ) -> list[tuple[str, Mapping[str, Any]]]:
        """Like `items`, for a list whose items must be mappings (others are reported)."""
        out = []
        for item_path, item in self.items(obj, key, path, problem=problem):
            m = self.as_mapping(item, item_path, problem=problem)
            if m is not None:
                out.append((item_path, m))
        return out

    def string_map(
        self,
        obj: Mapping[str, Any],
        key: str,
        path: str,
        *,
        problem: str,
        severity: Severity = Severity.ERROR,
    ) -> dict[str, str]:
        """A map of string to string (labels, selectors); bad entries are reported and dropped."""
        p = child_path(path, key)
        value = obj.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            self.invalid(p, problem, value, "a mapping of strings to strings")
            return {}
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(k, str) and isinstance(v, str):
                out[k] = v
                continue
            entry = child_path(p, str(k))
            found = describe(v) if isinstance(k, str) else f"the key {describe(k)}"
            quotable = isinstance(v, int | float | bool) or not isinstance(k, str)
            hint = " (quote it)" if quotable else ""
            self.report(
                entry, f"{problem}-invalid", f"found {found}; expected a string{hint}.", severity
            )
        return out
