"""VirtualService `http[]` rules -> `HttpRoute`: every field, checked on its own path.

Called by virtualservice.py once per rule. Field names and meanings follow
istio/api networking/v1alpha3/virtual_service.proto; where Istio's own
validation (istio/istio pkg/config/validation) rejects something, so does
this module, with a sentence saying what was expected.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from legation.model.traffic import (
    DerivePort,
    DirectResponse,
    HttpMatch,
    HttpRoute,
    KeyMatch,
    Redirect,
    RegexRewrite,
    Retry,
    Rewrite,
    RouteDestination,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, is_dns1123_label
from legation.sources.convert.httpparts import (
    STATUS_EXPECTED,
    TOKEN,
    cors,
    fault,
    headers,
    mirrors,
)
from legation.sources.convert.regex import check_re2
from legation.sources.convert.yamlload import child_path

HTTP_ROUTE_FIELDS = (
    "name", "match", "route", "redirect", "directResponse", "delegate", "rewrite", "timeout",
    "retries", "fault", "mirror", "mirrors", "mirrorPercent", "mirrorPercentage", "corsPolicy",
    "headers",
)
MATCH_FIELDS = (
    "name", "uri", "scheme", "method", "authority", "headers", "port", "sourceLabels",
    "gateways", "queryParams", "ignoreUriCase", "withoutHeaders", "sourceNamespace", "statPrefix",
)
# Envoy's x-envoy-retry-on and x-envoy-retry-grpc-on conditions (router filter docs).
RETRY_ON = (
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure",
    "envoy-ratelimited", "retriable-4xx", "refused-stream", "retriable-status-codes",
    "retriable-headers", "http3-post-connect-failure", "cancelled", "deadline-exceeded",
    "internal", "resource-exhausted", "unavailable",
)
REDIRECT_CODES = (301, 302, 303, 307, 308)  # what Envoy's RedirectAction can send
MAX_DIRECT_BODY = 1024 * 1024  # Istio's webhook limit, and what Legation lets Envoy send


def http_route(ctx: Ctx, index: int, path: str, raw: Any,
               destination: Any) -> HttpRoute | None:
    """One rule; `destination(ctx, raw, path)` reads a Destination (shared with tcp[])."""
    r = ctx.as_mapping(raw, path, problem="http-route")
    if r is None:
        return None
    istio.check_fields(ctx, r, path, HTTP_ROUTE_FIELDS, what="an HTTP route",
                       deprecated={"mirrorPercent": "use mirrorPercentage: {value: <percent>}"})
    if r.get("delegate") is not None:
        ctx.error(child_path(path, "delegate"), "delegate-unsupported",
                  "delegate VirtualServices are not supported by Legation; write the delegate's "
                  "rules into this VirtualService.")
    matches = tuple(
        m for i, item in enumerate(_list(ctx, r, "match", path))
        if (m := _match(ctx, child_path(child_path(path, "match"), i), item)) is not None
    )
    route = _destinations(ctx, r, path, destination)
    redirect = _redirect(ctx, istio.section(ctx, r, "redirect", path), child_path(path, "redirect"))
    direct = _direct(ctx, istio.section(ctx, r, "directResponse", path),
                     child_path(path, "directResponse"))
    rewrite = _rewrite(ctx, istio.section(ctx, r, "rewrite", path), child_path(path, "rewrite"))
    _check_actions(ctx, r, path)
    return HttpRoute(
        index=index,
        name=istio.string(ctx, r, "name", path),
        match=matches,
        route=route,
        redirect=redirect,
        direct_response=direct,
        rewrite=rewrite,
        timeout_ms=istio.duration_ms(ctx, r, "timeout", path, allow_zero=True),
        retries=_retries(ctx, istio.section(ctx, r, "retries", path), child_path(path, "retries")),
        fault=fault(ctx, istio.section(ctx, r, "fault", path), child_path(path, "fault")),
        mirrors=mirrors(ctx, r, path, destination),
        cors=cors(ctx, istio.section(ctx, r, "corsPolicy", path), child_path(path, "corsPolicy")),
        headers=headers(ctx, r, path),
    )


def _list(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
    return [item for _, item in ctx.items(obj, key, path, problem=key)]


def _check_actions(ctx: Ctx, r: Mapping[str, Any], path: str) -> None:
    given = [n for n in ("route", "redirect", "directResponse") if r.get(n)]
    if not given and r.get("delegate") is None:
        ctx.error(path, "action-missing", "the rule does nothing; expected one of route, "
                  "redirect or directResponse.")
    elif len(given) > 1:
        ctx.error(child_path(path, given[1]), "action-conflict",
                  f"sets both {given[0]} and {given[1]}; expected exactly one of route, "
                  "redirect or directResponse.")
    if r.get("rewrite") is not None and (r.get("redirect") or r.get("directResponse")):
        ctx.error(child_path(path, "rewrite"), "action-conflict",
                  "rewrite applies to forwarded requests only; it cannot be combined with "
                  "redirect or directResponse.")


def _destinations(ctx: Ctx, r: Mapping[str, Any], path: str,
                  destination: Any) -> tuple[RouteDestination, ...]:
    out = []
    for item_path, item in ctx.items(r, "route", path, problem="route"):
        d = ctx.as_mapping(item, item_path, problem="route")
        if d is None:
            continue
        istio.check_fields(ctx, d, item_path, ("destination", "weight", "headers"),
                           what="a route destination")
        dest = destination(ctx, d.get("destination"), child_path(item_path, "destination"))
        weight = istio.integer(ctx, d, "weight", item_path, low=0, high=100)
        if dest is not None:
            out.append(RouteDestination(destination=dest, weight=weight or 0,
                                        headers=headers(ctx, d, item_path)))
    check_weights(ctx, r, path, out)
    return tuple(out)


def check_weights(ctx: Ctx, r: Mapping[str, Any], path: str,
                  found: list[RouteDestination]) -> None:
    """Istio: with more than one destination the weights must add up to 100."""
    raw = r.get("route")
    if not isinstance(raw, list) or len(raw) < 2 or len(found) != len(raw):
        return
    total = sum(d.weight for d in found)
    if total != 100:
        shown = " + ".join(str(d.weight) for d in found)
        ctx.error(child_path(path, "route"), "weights-sum",
                  f"the destination weights add up to {total} ({shown}); expected them to add "
                  "up to 100, the percentage of requests each destination gets.")


def _match(ctx: Ctx, path: str, raw: Any) -> HttpMatch | None:
    m = ctx.as_mapping(raw, path, problem="match")
    if m is None:
        return None
    istio.check_fields(ctx, m, path, MATCH_FIELDS, what="an HTTP match")
    fields: dict[str, Any] = {}
    for key in ("uri", "scheme", "method", "authority"):
        if m.get(key) is not None:
            ok, sm = istio.string_match(ctx, m[key], child_path(path, key))
            fields[key] = sm if ok else None
    ns = istio.string(ctx, m, "sourceNamespace", path)
    if ns and not is_dns1123_label(ns):
        ctx.invalid(child_path(path, "sourceNamespace"), "source-namespace", ns,
                    "a namespace name")
    return HttpMatch(
        name=istio.string(ctx, m, "name", path),
        headers=_key_matches(ctx, m, "headers", path),
        without_headers=_key_matches(ctx, m, "withoutHeaders", path),
        query_params=_key_matches(ctx, m, "queryParams", path, query=True),
        port=istio.integer(ctx, m, "port", path, low=1, high=65535) or 0,
        source_labels=istio.labels(ctx, m, "sourceLabels", path),
        source_namespace=ns,
        gateways=istio.strings(ctx, m, "gateways", path),
        ignore_uri_case=bool(istio.boolean(ctx, m, "ignoreUriCase", path)),
        stat_prefix=istio.string(ctx, m, "statPrefix", path),
        **fields,
    )


def _key_matches(ctx: Ctx, m: Mapping[str, Any], key: str, path: str, *,
                 query: bool = False) -> tuple[KeyMatch, ...]:
    section = istio.section(ctx, m, key, path)
    if section is None:
        return ()
    out = []
    for name, raw in sorted(section.items(), key=lambda kv: str(kv[0])):
        p = child_path(child_path(path, key), str(name))
        if not query and (not TOKEN.match(str(name)) or str(name) != str(name).lower()):
            ctx.invalid(p, "header-name", name, "a lowercase header name, e.g. x-request-id")
            continue
        if raw is None:
            out.append(KeyMatch(name=str(name)))
            continue
        if query and isinstance(raw, Mapping) and "prefix" in raw:
            ctx.error(child_path(p, "prefix"), "match-invalid",
                      "prefix is not supported for query parameters; expected exact or regex.")
            continue
        ok, sm = istio.string_match(ctx, raw, p, presence_ok=True)
        if ok:
            out.append(KeyMatch(name=str(name), match=sm))
    return tuple(out)


def _redirect(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> Redirect | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("uri", "authority", "port", "derivePort", "scheme",
                                      "redirectCode"), what="a redirect")
    if r.get("port") is not None and r.get("derivePort") is not None:
        ctx.error(child_path(path, "derivePort"), "redirect-invalid",
                  "sets both port and derivePort; expected at most one of them.")
    code = istio.integer(ctx, r, "redirectCode", path, low=0, high=999)
    if code is not None and code not in REDIRECT_CODES:
        ctx.invalid(child_path(path, "redirectCode"), "redirect-code", code,
                    "one of " + ", ".join(map(str, REDIRECT_CODES)))
        code = None
    derive = istio.enum_value(ctx, r, "derivePort", path, [d.value for d in DerivePort])
    return Redirect(
        uri=istio.string(ctx, r, "uri", path),
        authority=istio.string(ctx, r, "authority", path),
        port=istio.integer(ctx, r, "port", path, low=1, high=65535) or 0,
        derive_port=DerivePort(derive) if derive else None,
        scheme=istio.string(ctx, r, "scheme", path),
        code=code or 301,
    )


def _direct(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> DirectResponse | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("status", "body"), what="a direct response")
    status = ctx.integer(r, "status", path, problem="status", low=200, high=599, required=True,
                         expected=STATUS_EXPECTED)
    body_string: str | None = None
    body_bytes: bytes | None = None
    body = istio.section(ctx, r, "body", path)
    bpath = child_path(path, "body")
    if body is not None:
        istio.check_fields(ctx, body, bpath, ("string", "bytes"), what="a response body")
        if "string" in body and "bytes" in body:
            ctx.error(bpath, "body-invalid", "sets both string and bytes; expected one.")
        body_string = istio.string(ctx, body, "string", bpath) if "string" in body else None
        raw = body.get("bytes")
        if isinstance(raw, str):
            try:
                body_bytes = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                ctx.invalid(child_path(bpath, "bytes"), "body", raw, "base64-encoded bytes")
        elif raw is not None:
            ctx.invalid(child_path(bpath, "bytes"), "body", raw, "base64-encoded bytes")
        size = len(body_bytes or b"") + len((body_string or "").encode())
        if size > MAX_DIRECT_BODY:
            ctx.error(bpath, "body-invalid",
                      f"the body is {size} bytes; expected at most {MAX_DIRECT_BODY}.")
    return DirectResponse(status=status or 200, body_string=body_string, body_bytes=body_bytes)


def _rewrite(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> Rewrite | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("uri", "authority", "uriRegexRewrite"), what="a rewrite")
    regex = None
    section = istio.section(ctx, r, "uriRegexRewrite", path)
    if section is not None:
        rpath = child_path(path, "uriRegexRewrite")
        istio.check_fields(ctx, section, rpath, ("match", "rewrite"), what="a regex rewrite")
        pattern = istio.string(ctx, section, "match", rpath, required=True,
                               expected="an RE2 regex")
        problem = check_re2(pattern) if pattern else None
        if problem is not None:
            ctx.error(child_path(rpath, "match"), "regex-invalid",
                      f"the regex {pattern!r} is not valid RE2: {problem}.")
        regex = RegexRewrite(match=pattern,
                             rewrite=istio.string(ctx, section, "rewrite", rpath))
        if r.get("uri"):
            ctx.error(rpath, "rewrite-invalid", "sets both uri and uriRegexRewrite; expected "
                      "at most one of them.")
    return Rewrite(uri=istio.string(ctx, r, "uri", path),
                   authority=istio.string(ctx, r, "authority", path), uri_regex=regex)


def _retries(ctx: Ctx, r: Mapping[str, Any] | None, path: str) -> Retry | None:
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("attempts", "perTryTimeout", "retryOn",
                                      "retryRemoteLocalities", "retryIgnorePreviousHosts",
                                      "backoff"), what="a retry policy")
    conditions: list[str] = []
    codes: list[int] = []
    retry_on = istio.string(ctx, r, "retryOn", path)
    for part in (p.strip() for p in retry_on.split(",")):
        if not part:
            continue
        if part.isdigit() and 100 <= int(part) <= 599:
            codes.append(int(part))
        elif part in RETRY_ON:
            conditions.append(part)
        else:
            ctx.error(child_path(path, "retryOn"), "retry-on-invalid",
                      f"{part!r} is not a retry condition; expected a comma-separated list of "
                      f"HTTP status codes and of: {', '.join(RETRY_ON)}.")
    return Retry(
        attempts=istio.integer(ctx, r, "attempts", path) or 0,
        per_try_timeout_ms=istio.duration_ms(ctx, r, "perTryTimeout", path),
        retry_on=tuple(conditions),
        retriable_status_codes=tuple(codes),
        retry_remote_localities=istio.boolean(ctx, r, "retryRemoteLocalities", path),
        retry_ignore_previous_hosts=istio.boolean(ctx, r, "retryIgnorePreviousHosts", path),
        backoff_ms=istio.duration_ms(ctx, r, "backoff", path),
    )
