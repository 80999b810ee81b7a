"""Typed readers for the value types shared by Istio's networking API.

Used by the VirtualService and DestinationRule converters. Every reader
reports a bad value on its exact field path and returns a neutral default
(None, empty) so the converter can go on and report every problem at once.

Istio's CRDs are strict (`preserveUnknownFields: false`): the API server
rejects a field the schema does not know. `check_fields` does the same,
naming the field, the closest known name and the allowed ones.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from legation.model import Severity, labels_of
from legation.model.traffic import Labels, MatchKind, StringMatch
from legation.sources.convert.duration import (
    EXPECTED as DURATION_EXPECTED,
)
from legation.sources.convert.duration import (
    DurationError,
    parse_go_duration,
    to_milliseconds,
)
from legation.sources.convert.fields import Ctx, describe, is_dns1123_label, is_ip
from legation.sources.convert.regex import check_re2
from legation.sources.convert.yamlload import child_path

# Envoy's HTTP_HEADER_VALUE rule (protoc-gen-validate well_known_regex): no NUL, CR or LF.
HEADER_VALUE_HINT = ("a YAML `|` block ends with a newline: use a plain or quoted scalar, "
                     "or `|-`")


def bad_header_value(value: str) -> bool:
    """Envoy refuses a header value holding NUL, CR or LF (HTTP_HEADER_VALUE)."""
    return any(c in value for c in "\x00\r\n")


PERCENT_EXPECTED = "a mapping {value: <number from 0 to 100>}"
INT32_MAX = 2**31 - 1
UINT32_MAX = 2**32 - 1


def check_fields(
    ctx: Ctx,
    obj: Mapping[str, Any],
    path: str,
    allowed: Iterable[str],
    *,
    what: str,
    unsupported: Mapping[str, str] | None = None,
    deprecated: Mapping[str, str] | None = None,
) -> None:
    """Report keys of `obj` that its schema does not have (errors), ones Legation
    ignores (`unsupported`, warnings) and deprecated ones (warnings)."""
    known = list(allowed)
    unsupported = unsupported or {}
    deprecated = deprecated or {}
    for key in obj:
        name = str(key)
        p = child_path(path, name)
        if name in deprecated:
            ctx.warn(p, "field-deprecated", f"{name} is deprecated: {deprecated[name]}.")
        elif name in unsupported:
            ctx.warn(p, "field-unsupported",
                     f"{name} is not supported by Legation and is ignored: {unsupported[name]}.")
        elif name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.error(p, "field-unknown",
                      f"{what} has no field {name!r}.{hint} Expected one of: "
                      f"{', '.join(sorted(known))}.")


def section(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    """The mapping at `key`, None when absent (or invalid: reported)."""
    if obj.get(key) is None:
        return None
    value = ctx.as_mapping(obj[key], child_path(path, key), problem=_problem(key))
    return value


def duration_ms(
    ctx: Ctx, obj: Mapping[str, Any], key: str, path: str, *, allow_zero: bool = False
) -> int | None:
    """A duration field in whole milliseconds; None when absent or invalid."""
    value = obj.get(key)
    if value is None:
        return None
    p = child_path(path, key)
    if not isinstance(value, str):
        hint = f" (write {value}s for seconds)" if isinstance(value, int | float) else ""
        ctx.invalid(p, "duration", value, DURATION_EXPECTED + hint)
        return None
    try:
        return to_milliseconds(parse_go_duration(value), allow_zero=allow_zero)
    except DurationError as exc:
        ctx.error(p, "duration-invalid",
                  f"found {describe(value)}: {exc}; expected {DURATION_EXPECTED}.")
        return None


def integer(
    ctx: Ctx, obj: Mapping[str, Any], key: str, path: str, *,
    low: int = 0, high: int = INT32_MAX, problem: str | None = None,
) -> int | None:
    return ctx.integer(obj, key, path, problem=problem or _problem(key), low=low, high=high)


def boolean(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    return ctx.boolean(obj, key, path, problem=_problem(key))


def string(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str, *, required: bool = False,
           expected: str = "a string") -> str:
    return ctx.string(obj, key, path, problem=_problem(key), required=required,
                      expected=expected)


def strings(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    """A list of strings; bad items are reported and dropped."""
    out = []
    for item_path, item in ctx.items(obj, key, path, problem=_problem(key)):
        if isinstance(item, str):
            out.append(item)
        else:
            ctx.invalid(item_path, _problem(key), item, "a string")
    return tuple(out)


def labels(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> Labels:
    return labels_of(ctx.string_map(obj, key, path, problem=_problem(key)))


def percent(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> float | None:
    """Istio's `Percent` ({value: 0-100}); None when absent or invalid."""
    raw = obj.get(key)
    if raw is None:
        return None
    p = child_path(path, key)
    m = ctx.as_mapping(raw, p, problem="percentage", expected=PERCENT_EXPECTED)
    if m is None:
        return None
    check_fields(ctx, m, p, ("value",), what="a percentage")
    value = m.get("value", 0)
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 <= value <= 100:
        ctx.invalid(child_path(p, "value"), "percentage", value, "a number from 0 to 100")
        return None
    return float(value)


def workload_selector(ctx: Ctx, spec: Mapping[str, Any], *, key: str = "labels") -> Labels:
    """`spec.workloadSelector.<key>` (Istio's `labels`; `matchLabels` for some kinds);
    () when there is none."""
    section_ = section(ctx, spec, "workloadSelector", "spec")
    if section_ is None:
        return ()
    check_fields(ctx, section_, "spec.workloadSelector", (key,), what="a workload selector")
    return labels(ctx, section_, key, "spec.workloadSelector")


def port_selector(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> int:
    """Istio's `PortSelector` ({number: n}); 0 when absent or invalid."""
    raw = obj.get(key)
    if raw is None:
        return 0
    p = child_path(path, key)
    m = ctx.as_mapping(raw, p, problem="port", expected="a mapping {number: <port>}")
    if m is None:
        return 0
    check_fields(ctx, m, p, ("number",), what="a port selector")
    return ctx.port(m, "number", p, problem="port", required=True) or 0


def string_match(ctx: Ctx, raw: Any, path: str, *, presence_ok: bool = False
                 ) -> tuple[bool, StringMatch | None]:
    """Istio's `StringMatch` (exactly one of exact, prefix, regex).

    Returns (ok, match): an empty mapping (or regex `*`, which Istio treats
    the same) is a presence test when `presence_ok`, i.e. (True, None).
    """
    m = ctx.as_mapping(raw, path, problem="match", expected="a mapping with one of exact, "
                       "prefix or regex")
    if m is None:
        return False, None
    check_fields(ctx, m, path, [k.value for k in MatchKind], what="a string match")
    given = [k for k in MatchKind if k.value in m]
    if not given:
        if presence_ok:
            return True, None
        ctx.error(path, "match-invalid", "the match is empty; expected one of exact, prefix "
                  "or regex.")
        return False, None
    if len(given) > 1:
        ctx.error(path, "match-invalid", f"sets {' and '.join(k.value for k in given)}; "
                  "expected exactly one of exact, prefix or regex.")
        return False, None
    kind = given[0]
    value = m[kind.value]
    if not isinstance(value, str):
        ctx.invalid(child_path(path, kind.value), "match", value, "a string")
        return False, None
    if bad_header_value(value):
        ctx.error(child_path(path, kind.value), "match-invalid",
                  f"found {value!r}, which holds a line break or NUL; expected a value "
                  f"without them ({HEADER_VALUE_HINT}).")
        return False, None
    if kind is MatchKind.REGEX:
        if presence_ok and value == "*":  # istio/istio#20629: "*" means "present"
            return True, None
        problem = check_re2(value)
        if problem is not None:
            ctx.error(child_path(path, kind.value), "regex-invalid",
                      f"the regex {value!r} is not valid RE2: {problem}.")
            return False, None
    return True, StringMatch(kind=kind, value=value)


def host(ctx: Ctx, value: str, path: str, *, wildcard: bool) -> str:
    """A host name as Istio validates it (DNS labels, an optional `*.` prefix); '' if bad."""
    text = value.lower().rstrip(".")
    body = text
    if wildcard and text == "*":
        return text
    if wildcard and text.startswith("*."):
        body = text[2:]
    ok = 0 < len(body) <= 255 and (is_ip(body) or all(is_dns1123_label(p) for p in body.split(".")))
    if ok:
        return text
    expected = "a host name (DNS labels separated by dots"
    expected += ", optionally starting with '*.')" if wildcard else "; no wildcard here)"
    ctx.invalid(path, "host", value, expected)
    return ""


def enum_value(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str,
               allowed: Iterable[str]) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    names = list(allowed)
    if not isinstance(value, str) or value not in names:
        ctx.invalid(child_path(path, key), _problem(key), value, "one of " + ", ".join(names))
        return None
    return value


def warn_ignored(ctx: Ctx, path: str, message: str) -> None:
    ctx.report(path, "field-unsupported", message, Severity.WARNING)


def _problem(key: str) -> str:
    """`retryOn` -> `retry-on`: the problem part of a diagnostic code."""
    out = []
    for ch in key:
        if ch.isupper():
            out.append("-")
        out.append(ch.lower())
    return "".join(out).strip("-")
