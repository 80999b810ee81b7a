"""Envoy pieces of a VirtualService rule: matches, header edits, fault, CORS, redirect.

Each function turns one model value into the Envoy message Istio builds for
it (istio/istio pilot/pkg/networking/core/route/route.go: TranslateRouteMatch,
TranslateHeadersOperations, TranslateFault, TranslateCORSPolicy,
ApplyRedirect, ApplyDirectResponse); httproute.py assembles them.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2

from legation.model.traffic import (
    CorsPolicy,
    DerivePort,
    DirectResponse,
    Fault,
    HeaderOperations,
    HttpMatch,
    KeyMatch,
    MatchKind,
    Redirect,
    StringMatch,
)
from legation.translators.trafficpolicy import millis

FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
HeaderAdds = list[base_pb2.HeaderValueOption]

_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def fraction(percent: float) -> percent_pb2.FractionalPercent:
    """Istio's Percent (0-100, a double) as a per-million fraction."""
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def string_matcher(m: StringMatch) -> string_pb2.StringMatcher:
    if m.kind is MatchKind.EXACT:
        return string_pb2.StringMatcher(exact=m.value)
    if m.kind is MatchKind.PREFIX:
        if not m.value:  # matches any value; Envoy requires a non-empty prefix (PGV min_len)
            return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".*"))
        return string_pb2.StringMatcher(prefix=m.value)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=m.value))


def route_match(match: HttpMatch | None) -> rc.RouteMatch:
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    uri = match.uri
    if uri is not None and uri.kind is MatchKind.EXACT:
        out.path = uri.value
    elif uri is not None and uri.kind is MatchKind.PREFIX:
        out.prefix = uri.value
    elif uri is not None:
        out.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=uri.value))
    if match.ignore_uri_case:
        out.case_sensitive.value = False
    headers = [_header(h, invert=False) for h in match.headers]
    headers += [_header(h, invert=True) for h in match.without_headers]
    out.headers.extend(sorted(headers, key=lambda h: h.name))
    for name, value in ((":method", match.method), (":authority", match.authority),
                        (":scheme", match.scheme)):
        if value is not None:
            out.headers.append(rc.HeaderMatcher(name=name, string_match=string_matcher(value)))
    for q in match.query_params:
        qm = rc.QueryParameterMatcher(name=q.name)
        if q.match is None:
            qm.present_match = True
        else:
            qm.string_match.CopyFrom(string_matcher(q.match))
        out.query_parameters.append(qm)
    return out


def _header(h: KeyMatch, *, invert: bool) -> rc.HeaderMatcher:
    out = rc.HeaderMatcher(name=h.name, invert_match=invert)
    if h.match is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(string_matcher(h.match))
        # withoutHeaders: a missing header does not match, so the rule applies
        out.treat_missing_header_as_empty = invert
    return out


def is_catch_all(match: rc.RouteMatch) -> bool:
    """Istio's IsCatchAllRoute: prefix `/` (or regex `.*`) and nothing else."""
    which = match.WhichOneof("path_specifier")
    path_all = (which == "prefix" and match.prefix == "/") or (
        which == "safe_regex" and match.safe_regex.regex == ".*")
    return path_all and not match.headers and not match.query_parameters


def header_ops(ops: HeaderOperations) -> tuple[HeaderAdds, list[str], str]:
    """(headers to add, headers to remove, authority) of one direction's operations.

    `set` overwrites, `add` appends. Setting `:authority` or `host` becomes an
    authority rewrite, as Istio does; a value in `set` wins over one in `add`.
    """
    adds: HeaderAdds = []
    authority = ""
    for pairs, action in ((ops.set, base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
                          (ops.add, base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD)):
        for key, value in pairs:
            if key.lower() in (":authority", "host"):
                authority = authority or value
                continue
            adds.append(base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key=key, value=value), append_action=action))
    return adds, list(ops.remove), authority


def fault_config(fault: Fault) -> fault_pb2.HTTPFault:
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        out.delay.CopyFrom(common_fault_pb2.FaultDelay(
            fixed_delay=millis(fault.delay.fixed_delay_ms),
            percentage=fraction(fault.delay.percentage)))
    if fault.abort is not None:
        abort = fault_pb2.FaultAbort(percentage=fraction(fault.abort.percentage))
        if fault.abort.grpc_status is not None:
            abort.grpc_status = fault.abort.grpc_status
        else:
            abort.http_status = fault.abort.http_status
        out.abort.CopyFrom(abort)
    return out


def cors_config(cors: CorsPolicy) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=[string_matcher(m) for m in cors.allow_origins],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
    )
    out.filter_enabled.default_value.CopyFrom(
        percent_pb2.FractionalPercent(numerator=100))  # HUNDRED: the filter is on
    if cors.max_age_ms is not None:
        out.max_age = str(cors.max_age_ms // 1000)
    if cors.allow_credentials is not None:
        out.allow_credentials.value = cors.allow_credentials
    # Istio: forward unmatched preflights unless told to IGNORE (Envoy < 1.30 behaviour).
    out.forward_not_matching_preflights.value = cors.unmatched_preflights.value != "IGNORE"
    return out


def redirect_action(redirect: Redirect, port: int) -> rc.RedirectAction:
    out = rc.RedirectAction(host_redirect=redirect.authority, path_redirect=redirect.uri,
                            response_code=_REDIRECT_CODES[redirect.code])
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.port or redirect.derive_port is not None:
        # FROM_REQUEST_PORT: routes are built per port, so the request's port is known.
        wanted = redirect.port or (port if redirect.derive_port is DerivePort.FROM_REQUEST_PORT
                                   else 0)
        scheme = redirect.scheme or "http"
        if not ((wanted == 80 and scheme == "http") or (wanted == 443 and scheme == "https")):
            out.port_redirect = wanted
    return out


def direct_action(direct: DirectResponse) -> rc.DirectResponseAction:
    out = rc.DirectResponseAction(status=direct.status)
    if direct.body_string is not None:
        out.body.inline_string = direct.body_string
    elif direct.body_bytes is not None:
        out.body.inline_bytes = direct.body_bytes
    return out
