"""Kubernetes Gateway API v1 -> `legation.model.gatewayapi`, with per-object checks.

GatewayClass, Gateway, HTTPRoute, GRPCRoute and ReferenceGrant, as the
standard-channel CRDs define them (kubernetes-sigs/gateway-api,
`config/crd/standard`). What needs only the object is checked here: types,
enums, ports, hostnames, RE2 regexes, one action per rule; what needs other
objects (the class, the listeners a route attaches to, grants, backends) is
`legation.mesh.gatewayapi`'s job, which reports it as status conditions.

The API server prunes fields a CRD does not define; here such a field gets a
warning naming it. Fields Legation does not apply (e.g. `infrastructure`,
`sessionPersistence`, ExtensionRef filters) get a warning too.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from legation.model.gatewayapi import (
    GATEWAY_API_GROUP,
    ApiGateway,
    ApiRoute,
    BackendRef,
    GatewayClass,
    GrantFrom,
    GrantTo,
    HeaderModifier,
    Listener,
    ObjectRef,
    ParentRef,
    ReferenceGrant,
    RouteRule,
)
from legation.model.traffic import (
    HttpMatch,
    KeyMatch,
    MatchKind,
    Redirect,
    RegexRewrite,
    Rewrite,
    StringMatch,
)
from legation.sources.convert import istio
from legation.sources.convert.duration import DurationError, parse_go_duration, to_milliseconds
from legation.sources.convert.fields import Ctx, describe, is_dns1123_subdomain
from legation.sources.convert.meta import Meta
from legation.sources.convert.regex import check_re2
from legation.sources.convert.yamlload import child_path

PROTOCOLS = ("HTTP", "HTTPS", "TLS", "TCP", "UDP")
SERVED_PROTOCOLS = ("HTTP", "HTTPS")
PATH_TYPES = ("Exact", "PathPrefix", "RegularExpression")
VALUE_TYPES = ("Exact", "RegularExpression")
METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH")
REDIRECT_CODES = (301, 302, 303, 307, 308)
_HOSTNAME = ("a host name (DNS labels, optionally starting with '*.'), not an IP address, "
             "e.g. shop.example.com or *.example.com")


# -- GatewayClass ---------------------------------------------------------------------


def convert_gateway_class(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> GatewayClass | None:
    spec = ctx.mapping(data, "spec", "", problem="spec", required=True,
                       expected="a mapping with controllerName")
    _fields(ctx, spec, "spec", ("controllerName", "parametersRef", "description"),
            what="a GatewayClass spec")
    if "parametersRef" in spec:
        _not_applied(ctx, "spec.parametersRef", "parametersRef is not read")
    controller = istio.string(ctx, spec, "controllerName", "spec", required=True,
                              expected="a controller name, e.g. istio.io/gateway-controller")
    return GatewayClass(ref=ctx.ref, name=meta.name, controller=controller)


# -- Gateway ------------------------------------------------------------------------


def convert_api_gateway(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> ApiGateway | None:
    spec = ctx.mapping(data, "spec", "", problem="spec", required=True,
                       expected="a mapping with gatewayClassName and listeners")
    _fields(ctx, spec, "spec", ("gatewayClassName", "listeners", "addresses", "infrastructure",
                                "backendTLS", "allowedListeners"), what="a Gateway spec")
    for key, why in (("addresses", "the gateway workload's own address is used"),
                     ("infrastructure", "gateways are deployed by the user"),
                     ("backendTLS", "gateways do not present a client certificate upstream")):
        if key in spec:
            _not_applied(ctx, f"spec.{key}", f"{key} is not applied: {why}")
    class_name = istio.string(ctx, spec, "gatewayClassName", "spec", required=True,
                              expected="the name of a GatewayClass")
    listeners: list[Listener] = []
    names: dict[str, str] = {}
    for i, (path, item) in enumerate(ctx.mapping_items(spec, "listeners", "spec",
                                                       problem="listener")):
        listener = _listener(ctx, i, path, item)
        if listener is None:
            continue
        if listener.name in names:
            ctx.error(child_path(path, "name"), "listener-name-duplicate",
                      f"listener name {listener.name!r} is already used by "
                      f"{names[listener.name]} (expected unique listener names).")
            continue
        names[listener.name] = path
        listeners.append(listener)
    if not spec.get("listeners"):
        ctx.missing("spec.listeners", "listeners", "at least one listener")
    return ApiGateway(ref=ctx.ref, name=meta.name, namespace=meta.namespace,
                      class_name=class_name, listeners=tuple(listeners),
                      lines=tuple(sorted(ctx.lines.items())))


def _listener(ctx: Ctx, index: int, path: str, item: Mapping[str, Any]) -> Listener | None:
    _fields(ctx, item, path, ("name", "hostname", "port", "protocol", "tls", "allowedRoutes"),
            what="a listener")
    name = istio.string(ctx, item, "name", path, required=True, expected="a listener name")
    port = ctx.port(item, "port", path, problem="port", required=True)
    protocol = istio.string(ctx, item, "protocol", path, required=True,
                            expected="one of " + ", ".join(PROTOCOLS))
    if protocol and protocol not in PROTOCOLS and "/" not in protocol:
        ctx.invalid(child_path(path, "protocol"), "protocol", protocol,
                    "one of " + ", ".join(PROTOCOLS) + " (or a domain-prefixed protocol)")
        return None
    hostname = _hostname(ctx, item.get("hostname"), child_path(path, "hostname"))
    tls_mode, certs = _listener_tls(ctx, item, path, protocol)
    routes_from, selector, kinds = _allowed_routes(ctx, item, path)
    if not name or port is None or not protocol:
        return None
    return Listener(index=index, name=name, port=port, protocol=protocol,
                    hostname=hostname or "", tls_mode=tls_mode, certificate_refs=certs,
                    routes_from=routes_from, routes_selector=selector, route_kinds=kinds)


def _listener_tls(ctx: Ctx, item: Mapping[str, Any], path: str, protocol: str
                  ) -> tuple[str, tuple[ObjectRef, ...]]:
    tls_path = child_path(path, "tls")
    tls = istio.section(ctx, item, "tls", path)
    if tls is None:
        if protocol == "HTTPS":
            ctx.missing(tls_path, "tls", "TLS settings for an HTTPS listener: "
                        "{mode: Terminate, certificateRefs: [{name: <Secret>}]}")
        return "", ()
    _fields(ctx, tls, tls_path, ("mode", "certificateRefs", "options", "frontendValidation"),
            what="listener TLS settings")
    for key in ("options", "frontendValidation"):
        if key in tls:
            _not_applied(ctx, child_path(tls_path, key), f"tls.{key} is not applied")
    mode = istio.enum_value(ctx, tls, "mode", tls_path, ["Terminate", "Passthrough"]) \
        or "Terminate"
    refs = []
    for ref_path, raw in ctx.mapping_items(tls, "certificateRefs", tls_path,
                                           problem="certificate-ref"):
        _fields(ctx, raw, ref_path, ("group", "kind", "name", "namespace"),
                what="a certificate reference")
        ref = _object_ref(ctx, raw, ref_path, default_kind="Secret", default_group="")
        if ref is not None:
            refs.append(ref)
    if mode == "Terminate" and protocol == "HTTPS" and not refs:
        ctx.missing(child_path(tls_path, "certificateRefs"), "certificate-refs",
                    "a Secret holding the listener's certificate")
    return mode, tuple(refs)


def _allowed_routes(ctx: Ctx, item: Mapping[str, Any], path: str
                    ) -> tuple[str, tuple[tuple[str, str], ...], tuple[str, ...]]:
    allowed_path = child_path(path, "allowedRoutes")
    allowed = istio.section(ctx, item, "allowedRoutes", path)
    if allowed is None:
        return "Same", (), ()
    _fields(ctx, allowed, allowed_path, ("namespaces", "kinds"), what="allowedRoutes")
    ns_path = child_path(allowed_path, "namespaces")
    namespaces = istio.section(ctx, allowed, "namespaces", allowed_path) or {}
    _fields(ctx, namespaces, ns_path, ("from", "selector"), what="allowedRoutes.namespaces")
    origin = istio.enum_value(ctx, namespaces, "from", ns_path, ["All", "Same", "Selector"]) \
        or "Same"
    selector: tuple[tuple[str, str], ...] = ()
    sel = istio.section(ctx, namespaces, "selector", ns_path)
    if sel is not None:
        sel_path = child_path(ns_path, "selector")
        _fields(ctx, sel, sel_path, ("matchLabels", "matchExpressions"), what="a label selector")
        if "matchExpressions" in sel:
            ctx.error(child_path(sel_path, "matchExpressions"), "selector-unsupported",
                      "matchExpressions are not supported yet (expected matchLabels).")
        selector = istio.labels(ctx, sel, "matchLabels", sel_path)
    if origin == "Selector" and sel is None:
        ctx.missing(child_path(ns_path, "selector"), "selector",
                    "a namespace selector when from is Selector")
    kinds = []
    for kind_path, raw in ctx.mapping_items(allowed, "kinds", allowed_path, problem="kind"):
        _fields(ctx, raw, kind_path, ("group", "kind"), what="a route kind")
        kind = istio.string(ctx, raw, "kind", kind_path, required=True, expected="a route kind")
        if kind:
            kinds.append(kind)
    return origin, selector, tuple(kinds)


# -- HTTPRoute / GRPCRoute ----------------------------------------------------------


def convert_http_route(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> ApiRoute | None:
    return _route(ctx, meta, data, grpc=False)


def convert_grpc_route(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> ApiRoute | None:
    return _route(ctx, meta, data, grpc=True)


def _route(ctx: Ctx, meta: Meta, data: Mapping[str, Any], *, grpc: bool) -> ApiRoute | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    _fields(ctx, spec, "spec", ("parentRefs", "hostnames", "rules", "useDefaultGateways"),
            what=f"a {ctx.ref.kind} spec")
    parents = []
    for i, (path, raw) in enumerate(ctx.mapping_items(spec, "parentRefs", "spec",
                                                      problem="parent-ref")):
        _fields(ctx, raw, path, ("group", "kind", "name", "namespace", "sectionName", "port"),
                what="a parent reference")
        name = istio.string(ctx, raw, "name", path, required=True, expected="a Gateway name")
        port = ctx.port(raw, "port", path, problem="port") or 0
        if name:
            parents.append(ParentRef(
                index=i, name=name, namespace=str(raw.get("namespace") or meta.namespace),
                section_name=istio.string(ctx, raw, "sectionName", path), port=port,
                kind=str(raw.get("kind") or "Gateway"),
                group=str(raw.get("group", GATEWAY_API_GROUP))))
    if not parents:
        ctx.warn("spec.parentRefs", "parent-refs-missing",
                 "the route names no parent Gateway, so no gateway serves it (mesh routes "
                 "from Gateway API are not served; expected parentRefs to a Gateway).")
    hostnames = []
    for i, written in enumerate(istio.strings(ctx, spec, "hostnames", "spec")):
        host = _hostname(ctx, written, f"spec.hostnames[{i}]")
        if host:
            hostnames.append(host)
    rules = []
    for i, (path, raw) in enumerate(ctx.mapping_items(spec, "rules", "spec", problem="rule")):
        rule = _rule(ctx, i, path, raw, meta.namespace, grpc=grpc)
        if rule is not None:
            rules.append(rule)
    if not spec.get("rules"):  # the API's default: one rule, every request, no backend
        rules.append(RouteRule(index=0))
    return ApiRoute(ref=ctx.ref, name=meta.name, namespace=meta.namespace,
                    parents=tuple(parents), hostnames=tuple(hostnames), rules=tuple(rules),
                    lines=tuple(sorted(ctx.lines.items())))


def _rule(ctx: Ctx, index: int, path: str, raw: Mapping[str, Any], namespace: str, *,
          grpc: bool) -> RouteRule | None:
    _fields(ctx, raw, path, ("name", "matches", "filters", "backendRefs", "timeouts", "retry",
                             "sessionPersistence"), what="a route rule")
    for key in ("retry", "sessionPersistence"):
        if key in raw:
            _not_applied(ctx, child_path(path, key), f"{key} is not applied")
    matches = tuple(
        m for mpath, mraw in ctx.mapping_items(raw, "matches", path, problem="match")
        if (m := (_grpc_match if grpc else _http_match)(ctx, mpath, mraw)) is not None)
    backends = tuple(
        b for bpath, braw in ctx.mapping_items(raw, "backendRefs", path, problem="backend-ref")
        if (b := _backend(ctx, bpath, braw)) is not None)
    request, response = HeaderModifier(), HeaderModifier()
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    mirrors: list[BackendRef] = []
    for fpath, f in ctx.mapping_items(raw, "filters", path, problem="filter"):
        kind = istio.string(ctx, f, "type", fpath, required=True, expected="a filter type")
        if kind == "RequestHeaderModifier":
            request = _header_modifier(ctx, f, fpath, "requestHeaderModifier")
        elif kind == "ResponseHeaderModifier":
            response = _header_modifier(ctx, f, fpath, "responseHeaderModifier")
        elif kind == "RequestRedirect" and not grpc:
            redirect = _redirect(ctx, f, fpath)
        elif kind == "URLRewrite" and not grpc:
            rewrite = _rewrite(ctx, f, fpath)
        elif kind == "RequestMirror":
            section = ctx.mapping(f, "requestMirror", fpath, problem="request-mirror")
            mirror = _backend(ctx, child_path(child_path(fpath, "requestMirror"), "backendRef"),
                              ctx.mapping(section, "backendRef", child_path(fpath,
                                                                            "requestMirror"),
                                          problem="backend-ref"))
            if mirror is not None:
                mirrors.append(mirror)
        elif kind:
            ctx.warn(child_path(fpath, "type"), "filter-not-applied",
                     f"filter {kind} is not applied by Legation (served: RequestHeaderModifier, "
                     "ResponseHeaderModifier, RequestRedirect, URLRewrite, RequestMirror).")
    if redirect is not None and backends:
        ctx.error(child_path(path, "backendRefs"), "redirect-with-backends",
                  "a rule with a RequestRedirect filter must not have backendRefs (the API "
                  "forbids both).")
    timeout = None
    timeouts = istio.section(ctx, raw, "timeouts", path)
    if timeouts is not None:
        _fields(ctx, timeouts, child_path(path, "timeouts"), ("request", "backendRequest"),
                what="timeouts")
        timeout = _duration(ctx, timeouts, "request", child_path(path, "timeouts"))
    return RouteRule(index=index, matches=matches, backends=backends,
                     request_headers=request, response_headers=response, redirect=redirect,
                     rewrite=rewrite, mirrors=tuple(mirrors), timeout_ms=timeout)


def _http_match(ctx: Ctx, path: str, raw: Mapping[str, Any]) -> HttpMatch | None:
    _fields(ctx, raw, path, ("path", "headers", "queryParams", "method"), what="a match")
    uri = None
    section = istio.section(ctx, raw, "path", path)
    if section is not None:
        ppath = child_path(path, "path")
        kind = istio.enum_value(ctx, section, "type", ppath, PATH_TYPES) or "PathPrefix"
        value = istio.string(ctx, section, "value", ppath) or "/"
        if kind != "RegularExpression" and not value.startswith("/"):
            ctx.invalid(child_path(ppath, "value"), "path", value, "a path starting with '/'")
            return None
        uri = _path_match(ctx, kind, value, child_path(ppath, "value"))
    method = None
    if "method" in raw:
        verb = istio.enum_value(ctx, raw, "method", path, METHODS)
        method = StringMatch(kind=MatchKind.EXACT, value=verb) if verb else None
    return HttpMatch(uri=uri, method=method,
                     headers=_key_matches(ctx, raw, "headers", path),
                     query_params=_key_matches(ctx, raw, "queryParams", path))


def _path_match(ctx: Ctx, kind: str, value: str, path: str) -> StringMatch | None:
    if kind == "Exact":
        return StringMatch(kind=MatchKind.EXACT, value=value)
    if kind == "RegularExpression":
        return _regex(ctx, value, path)
    # PathPrefix matches whole path elements: /foo matches /foo and /foo/bar, not /foobar
    # (Gateway API HTTPPathMatch). A trailing slash is ignored.
    trimmed = value.rstrip("/")
    if not trimmed:
        return StringMatch(kind=MatchKind.PREFIX, value="/")
    return StringMatch(kind=MatchKind.REGEX, value=_re_escape(trimmed) + "(/.*)?")


def _grpc_match(ctx: Ctx, path: str, raw: Mapping[str, Any]) -> HttpMatch | None:
    _fields(ctx, raw, path, ("method", "headers"), what="a match")
    uri = None
    section = istio.section(ctx, raw, "method", path)
    if section is not None:
        mpath = child_path(path, "method")
        _fields(ctx, section, mpath, ("type", "service", "method"), what="a gRPC method match")
        kind = istio.enum_value(ctx, section, "type", mpath, VALUE_TYPES) or "Exact"
        service = istio.string(ctx, section, "service", mpath)
        method = istio.string(ctx, section, "method", mpath)
        if not service and not method:
            ctx.error(mpath, "method-empty", "a method match needs a service, a method or "
                      "both.")
            return None
        if kind == "Exact":  # gRPC's path is /<service>/<method>
            if service and method:
                uri = StringMatch(kind=MatchKind.EXACT, value=f"/{service}/{method}")
            elif service:
                uri = StringMatch(kind=MatchKind.PREFIX, value=f"/{service}/")
            else:
                uri = StringMatch(kind=MatchKind.REGEX, value=f"/[^/]+/{_re_escape(method)}")
        else:
            for key, value in (("service", service), ("method", method)):
                if value and (problem := check_re2(value)) is not None:
                    ctx.error(child_path(mpath, key), "regex-invalid",
                              f"{value!r} is not valid RE2: {problem}.")
                    return None
            uri = StringMatch(kind=MatchKind.REGEX,
                              value=f"/{service or '[^/]+'}/{method or '[^/]+'}")
    return HttpMatch(uri=uri, headers=_key_matches(ctx, raw, "headers", path))


def _key_matches(ctx: Ctx, raw: Mapping[str, Any], key: str, path: str
                 ) -> tuple[KeyMatch, ...]:
    out = []
    for kpath, item in ctx.mapping_items(raw, key, path, problem=key):
        _fields(ctx, item, kpath, ("type", "name", "value"), what=f"a {key} match")
        kind = istio.enum_value(ctx, item, "type", kpath, VALUE_TYPES) or "Exact"
        name = istio.string(ctx, item, "name", kpath, required=True, expected="a name")
        value = istio.string(ctx, item, "value", kpath, required=True, expected="a value")
        if not name:
            continue
        match = (_regex(ctx, value, child_path(kpath, "value")) if kind == "RegularExpression"
                 else StringMatch(kind=MatchKind.EXACT, value=value))
        if match is not None:
            out.append(KeyMatch(name=name.lower() if key == "headers" else name, match=match))
    return tuple(out)


def _regex(ctx: Ctx, value: str, path: str) -> StringMatch | None:
    problem = check_re2(value)
    if problem is not None:
        ctx.error(path, "regex-invalid", f"the regex {value!r} is not valid RE2: {problem}.")
        return None
    return StringMatch(kind=MatchKind.REGEX, value=value)


def _re_escape(text: str) -> str:
    return "".join("\\" + c if c in r".^$*+?()[]{}|\\" else c for c in text)


def _backend(ctx: Ctx, path: str, raw: Mapping[str, Any]) -> BackendRef | None:
    _fields(ctx, raw, path, ("group", "kind", "name", "namespace", "port", "weight", "filters"),
            what="a backend reference")
    if "filters" in raw:
        _not_applied(ctx, child_path(path, "filters"), "per-backend filters are not applied")
    ref = _object_ref(ctx, raw, path, default_kind="Service", default_group="")
    port = ctx.port(raw, "port", path, problem="port") or 0
    weight = ctx.integer(raw, "weight", path, problem="weight", low=0, high=1_000_000)
    if ref is None:
        return None
    return BackendRef(ref=ref, port=port, weight=1 if weight is None else weight, path=path)


def _object_ref(ctx: Ctx, raw: Mapping[str, Any], path: str, *, default_kind: str,
                default_group: str) -> ObjectRef | None:
    name = istio.string(ctx, raw, "name", path, required=True, expected="the referent's name")
    if not name:
        return None
    return ObjectRef(name=name, namespace=str(raw.get("namespace") or ""),
                     kind=str(raw.get("kind") or default_kind),
                     group=str(raw.get("group", default_group) or ""))


def _header_modifier(ctx: Ctx, f: Mapping[str, Any], path: str, key: str) -> HeaderModifier:
    section = ctx.mapping(f, key, path, problem="header-modifier")
    mpath = child_path(path, key)
    _fields(ctx, section, mpath, ("set", "add", "remove"), what="a header modifier")

    def pairs(op: str) -> tuple[tuple[str, str], ...]:
        out = []
        for ipath, item in ctx.mapping_items(section, op, mpath, problem="header"):
            name = istio.string(ctx, item, "name", ipath, required=True, expected="a name")
            value = istio.string(ctx, item, "value", ipath)
            if name:
                out.append((name.lower(), value))
        return tuple(out)

    return HeaderModifier(set=pairs("set"), add=pairs("add"),
                          remove=tuple(h.lower() for h in istio.strings(ctx, section, "remove",
                                                                         mpath)))


def _redirect(ctx: Ctx, f: Mapping[str, Any], path: str) -> Redirect | None:
    section = ctx.mapping(f, "requestRedirect", path, problem="request-redirect")
    rpath = child_path(path, "requestRedirect")
    _fields(ctx, section, rpath, ("scheme", "hostname", "path", "port", "statusCode"),
            what="a request redirect")
    scheme = istio.enum_value(ctx, section, "scheme", rpath, ["http", "https"]) or ""
    host = _hostname(ctx, section.get("hostname"), child_path(rpath, "hostname"),
                     wildcard=False) or ""
    port = ctx.port(section, "port", rpath, problem="port") or 0
    code = ctx.integer(section, "statusCode", rpath, problem="status-code", low=301, high=308)
    if code is not None and code not in REDIRECT_CODES:
        ctx.invalid(child_path(rpath, "statusCode"), "status-code", code,
                    "one of 301, 302, 303, 307, 308")
        code = None
    uri = ""
    ppath = istio.section(ctx, section, "path", rpath)
    if ppath is not None:
        kind, value = _path_modifier(ctx, ppath, child_path(rpath, "path"))
        if kind == "ReplacePrefixMatch":
            _not_applied(ctx, child_path(rpath, "path"), "a redirect's ReplacePrefixMatch is "
                         "not served yet (ReplaceFullPath is); the path is kept")
        uri = value if kind == "ReplaceFullPath" else ""
    return Redirect(uri=uri, authority=host, port=port, scheme=scheme, code=code or 302)


def _rewrite(ctx: Ctx, f: Mapping[str, Any], path: str) -> Rewrite | None:
    section = ctx.mapping(f, "urlRewrite", path, problem="url-rewrite")
    rpath = child_path(path, "urlRewrite")
    _fields(ctx, section, rpath, ("hostname", "path"), what="a URL rewrite")
    host = _hostname(ctx, section.get("hostname"), child_path(rpath, "hostname"),
                     wildcard=False) or ""
    ppath = istio.section(ctx, section, "path", rpath)
    if ppath is None:
        return Rewrite(authority=host)
    kind, value = _path_modifier(ctx, ppath, child_path(rpath, "path"))
    if kind == "ReplaceFullPath":
        return Rewrite(authority=host, uri_regex=RegexRewrite(match=".*", rewrite=value))
    return Rewrite(authority=host, uri=value)  # the matched prefix is replaced (as Istio's)


def _path_modifier(ctx: Ctx, section: Mapping[str, Any], path: str) -> tuple[str, str]:
    _fields(ctx, section, path, ("type", "replaceFullPath", "replacePrefixMatch"),
            what="a path modifier")
    kind = istio.enum_value(ctx, section, "type", path,
                            ["ReplaceFullPath", "ReplacePrefixMatch"]) or ""
    key = "replaceFullPath" if kind == "ReplaceFullPath" else "replacePrefixMatch"
    value = istio.string(ctx, section, key, path, required=bool(kind), expected="a path")
    return kind, value


def _duration(ctx: Ctx, obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    try:
        return to_milliseconds(parse_go_duration(str(value)), allow_zero=True)
    except DurationError as exc:
        ctx.error(child_path(path, key), "duration-invalid",
                  f"found {describe(value)}: {exc}; expected a duration such as 10s.")
        return None


# -- ReferenceGrant -------------------------------------------------------------------


def convert_reference_grant(ctx: Ctx, meta: Meta, data: Mapping[str, Any]
                            ) -> ReferenceGrant | None:
    spec = ctx.mapping(data, "spec", "", problem="spec", required=True,
                       expected="a mapping with from and to")
    _fields(ctx, spec, "spec", ("from", "to"), what="a ReferenceGrant spec")
    sources = []
    for path, raw in ctx.mapping_items(spec, "from", "spec", problem="from"):
        _fields(ctx, raw, path, ("group", "kind", "namespace"), what="a grant source")
        kind = istio.string(ctx, raw, "kind", path, required=True, expected="a kind")
        ns = istio.string(ctx, raw, "namespace", path, required=True, expected="a namespace")
        if kind and ns:
            sources.append(GrantFrom(group=str(raw.get("group") or ""), kind=kind, namespace=ns))
    targets = []
    for path, raw in ctx.mapping_items(spec, "to", "spec", problem="to"):
        _fields(ctx, raw, path, ("group", "kind", "name"), what="a grant target")
        kind = istio.string(ctx, raw, "kind", path, required=True, expected="a kind")
        if kind:
            targets.append(GrantTo(group=str(raw.get("group") or ""), kind=kind,
                                   name=str(raw.get("name") or "")))
    if not sources or not targets:
        ctx.error("spec", "grant-empty", "a ReferenceGrant needs at least one from and one to.")
    return ReferenceGrant(ref=ctx.ref, name=meta.name, namespace=meta.namespace,
                          sources=tuple(sources), targets=tuple(targets))


# -- shared ----------------------------------------------------------------------------


def _hostname(ctx: Ctx, value: Any, path: str, *, wildcard: bool = True) -> str | None:
    if value is None:
        return None
    text = value.lower() if isinstance(value, str) else ""
    body = text[2:] if wildcard and text.startswith("*.") else text
    if not text or not is_dns1123_subdomain(body) or body.replace(".", "").isdigit():
        ctx.invalid(path, "hostname", value, _HOSTNAME)
        return None
    return text


def _fields(ctx: Ctx, obj: Mapping[str, Any], path: str, allowed: Iterable[str], *,
            what: str) -> None:
    """A field the CRD does not define: the API server would prune it. Said, not fatal."""
    known = list(allowed)
    for key in obj:
        name = str(key)
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.warn(child_path(path, name), "field-unknown",
                     f"{what} has no field {name!r}; it is ignored (the API server prunes "
                     f"it).{hint}")


def _not_applied(ctx: Ctx, path: str, message: str) -> None:
    ctx.warn(path, "field-not-applied", message + ".")
