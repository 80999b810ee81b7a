"""The optional parts of a VirtualService HTTP rule: fault, mirrors, CORS, header edits.

Split from httproute.py (which reads the rule itself); same conventions:
istio/api virtual_service.proto field names, Istio's validation rules, a
diagnostic on the exact field path for anything wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from legation.model.traffic import (
    CorsPolicy,
    Fault,
    FaultAbort,
    FaultDelay,
    HeaderOperations,
    Headers,
    MatchKind,
    Mirror,
    StringMatch,
    UnmatchedPreflights,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx
from legation.sources.convert.yamlload import child_path

GRPC_STATUS = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
    "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
    "UNAUTHENTICATED",
)
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")  # RFC 9110 token: a header name
STATUS_EXPECTED = "an HTTP status code from 200 to 599"


def fault(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> Fault | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("delay", "abort"), what="a fault")
    delay = _delay(ctx, istio.section(ctx, r, "delay", path), child_path(path, "delay"))
    abort = _abort(ctx, istio.section(ctx, r, "abort", path), child_path(path, "abort"))
    if r.get("delay") is None and r.get("abort") is None:
        ctx.error(path, "fault-invalid", "the fault is empty; expected delay, abort or both.")
    return Fault(delay=delay, abort=abort)


def _legacy_percent(ctx: Ctx, r: Mapping[str, Any], path: str) -> float:
    pct = istio.percent(ctx, r, "percentage", path)
    if pct is None and r.get("percent") is not None:
        legacy = istio.integer(ctx, r, "percent", path, low=0, high=100)
        pct = float(legacy) if legacy is not None else None
    # Istio documents "If left unspecified, all requests will be delayed/aborted".
    return 100.0 if pct is None else pct


def _delay(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> FaultDelay | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("fixedDelay", "percentage", "percent"),
                       what="a fault delay",
                       unsupported={"exponentialDelay": "only fixedDelay is implemented"},
                       deprecated={"percent": "use percentage: {value: <percent>}"})
    fixed = istio.duration_ms(ctx, r, "fixedDelay", path)
    if r.get("fixedDelay") is None:
        ctx.missing(child_path(path, "fixedDelay"), "fixed-delay", "a duration such as 5s")
    pct = _legacy_percent(ctx, r, path)
    return FaultDelay(fixed_delay_ms=fixed, percentage=pct) if fixed is not None else None


def _abort(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> FaultAbort | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("httpStatus", "grpcStatus", "percentage"),
                       what="a fault abort",
                       unsupported={"http2Error": "only httpStatus and grpcStatus are "
                                    "implemented"})
    status = ctx.integer(r, "httpStatus", path, problem="http-status", low=200, high=599,
                         expected=STATUS_EXPECTED)
    grpc = istio.enum_value(ctx, r, "grpcStatus", path, GRPC_STATUS)
    given = [k for k in ("httpStatus", "grpcStatus") if r.get(k) is not None]
    if len(given) != 1:
        ctx.error(path, "abort-invalid", "expected exactly one of httpStatus or grpcStatus, "
                  f"found {' and '.join(given) or 'neither'}.")
    pct = _legacy_percent(ctx, r, path)
    if status is None and grpc is None:
        return None
    return FaultAbort(http_status=status or 0,
                      grpc_status=GRPC_STATUS.index(grpc) if grpc else None, percentage=pct)


def mirrors(ctx: Ctx, r: Mapping[str, Any], path: str, destination: Any) -> tuple[Mirror, ...]:
    out: list[Mirror] = []
    if r.get("mirror") is not None and r.get("mirrors") is not None:
        ctx.error(child_path(path, "mirrors"), "mirror-conflict",
                  "sets both mirror and mirrors; expected one of them.")
    if r.get("mirror") is not None:
        dest = destination(ctx, r["mirror"], child_path(path, "mirror"))
        pct = istio.percent(ctx, r, "mirrorPercentage", path)
        if pct is None and r.get("mirrorPercent") is not None:
            legacy = istio.integer(ctx, r, "mirrorPercent", path, low=0, high=100)
            pct = float(legacy) if legacy is not None else None
        if dest is not None:
            out.append(Mirror(destination=dest, percentage=100.0 if pct is None else pct,
                              path=child_path(path, "mirror")))
    for item_path, item in ctx.items(r, "mirrors", path, problem="mirrors"):
        m = ctx.as_mapping(item, item_path, problem="mirrors")
        if m is None:
            continue
        istio.check_fields(ctx, m, item_path, ("destination", "percentage"),
                           what="a mirror policy")
        dest = destination(ctx, m.get("destination"), child_path(item_path, "destination"))
        pct = istio.percent(ctx, m, "percentage", item_path)
        if dest is not None:
            out.append(Mirror(destination=dest, percentage=100.0 if pct is None else pct,
                              path=child_path(item_path, "destination")))
    return tuple(out)


def cors(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> CorsPolicy | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("allowOrigins", "allowMethods", "allowHeaders",
                                      "exposeHeaders", "maxAge", "allowCredentials",
                                      "unmatchedPreflights", "allowOrigin"),
                       what="a CORS policy",
                       deprecated={"allowOrigin": "use allowOrigins: [{exact: <origin>}]"})
    origins = []
    for item_path, item in ctx.items(r, "allowOrigins", path, problem="allow-origins"):
        ok, sm = istio.string_match(ctx, item, item_path)
        if ok and sm is not None:
            origins.append(sm)
    if not origins:
        origins = [StringMatch(kind=MatchKind.EXACT, value=o)
                   for o in istio.strings(ctx, r, "allowOrigin", path)]
    preflights = istio.enum_value(ctx, r, "unmatchedPreflights", path,
                                  [u.value for u in UnmatchedPreflights])
    return CorsPolicy(
        allow_origins=tuple(origins),
        allow_methods=istio.strings(ctx, r, "allowMethods", path),
        allow_headers=istio.strings(ctx, r, "allowHeaders", path),
        expose_headers=istio.strings(ctx, r, "exposeHeaders", path),
        max_age_ms=istio.duration_ms(ctx, r, "maxAge", path, allow_zero=True),
        allow_credentials=istio.boolean(ctx, r, "allowCredentials", path),
        unmatched_preflights=UnmatchedPreflights(preflights or "UNSPECIFIED"),
    )


def headers(ctx: Ctx, obj: Mapping[str, Any], path: str) -> Headers:
    section = istio.section(ctx, obj, "headers", path)
    if section is None:
        return Headers()
    hpath = child_path(path, "headers")
    istio.check_fields(ctx, section, hpath, ("request", "response"), what="headers")
    return Headers(request=_header_ops(ctx, section, "request", hpath),
                   response=_header_ops(ctx, section, "response", hpath))


def _header_ops(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> HeaderOperations:
    section = istio.section(ctx, obj, key, path)
    if section is None:
        return HeaderOperations()
    p = child_path(path, key)
    istio.check_fields(ctx, section, p, ("set", "add", "remove"), what="header operations")

    def pairs(op: str) -> tuple[tuple[str, str], ...]:
        values = ctx.string_map(section, op, p, problem="header-value")
        return tuple((k, v) for k, v in sorted(values.items())
                     if _header_name(ctx, k, child_path(child_path(p, op), k), key)
                     and _header_value(ctx, v, child_path(child_path(p, op), k)))

    removed = tuple(n for i, n in enumerate(istio.strings(ctx, section, "remove", p))
                    if _header_name(ctx, n, child_path(child_path(p, "remove"), i), key))
    return HeaderOperations(set=pairs("set"), add=pairs("add"), remove=removed)


def _header_value(ctx: Ctx, value: str, path: str) -> bool:
    if istio.bad_header_value(value):
        ctx.error(path, "header-value-invalid", f"found {value!r}, which holds a line break or "
                  f"NUL; Envoy refuses such a header value ({istio.HEADER_VALUE_HINT}).")
        return False
    problem = format_problem(value)
    if problem is not None:
        ctx.error(path, "header-value-invalid", f"found {value!r}: {problem}.")
        return False
    return True


# Envoy reads a header value to add as a substitution format: `%%` is a literal percent
# sign, `%COMMAND%`, `%COMMAND(args)%` and `%COMMAND(args):N%` are substituted
# (envoy/source/common/formatter/substitution_format_string.cc); a lone `%` makes Envoy
# refuse the whole route configuration ("Couldn't find valid command").
_COMMAND = re.compile(r"%[A-Z][A-Z0-9_]*(\([^)]*\))?(:[0-9]+)?%")


def format_problem(value: str) -> str | None:
    """Why Envoy would refuse `value` as a header value format, or None."""
    i = 0
    while (i := value.find("%", i)) >= 0:
        if value.startswith("%%", i):
            i += 2
            continue
        m = _COMMAND.match(value, i)
        if m is None:
            return (f"the % at offset {i} starts no Envoy command: Envoy substitutes "
                    "%COMMAND% in header values (e.g. %DOWNSTREAM_REMOTE_ADDRESS%); write "
                    "%% for a percent sign")
        i = m.end()
    return None


def _header_name(ctx: Ctx, name: str, path: str, direction: str) -> bool:
    lowered = name.lower()
    if direction == "request" and lowered in (":authority", "host"):
        return True  # Istio turns it into an authority rewrite
    if name.startswith(":") or lowered == "host":
        ctx.warn(path, "header-name-ignored",
                 f"{name!r} is a pseudo-header or Host, which Envoy does not let routes change; "
                 "it is ignored (to rewrite the authority, set :authority under request.set).")
        return False
    if not TOKEN.match(name):
        ctx.invalid(path, "header-name", name,
                    "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)")
        return False
    return True
