"""`networking.istio.io` VirtualService -> `VirtualService`, with every per-object check.

What needs only the object itself is checked here: the schema (unknown
fields, types, durations, RE2 regexes), and meaning (weights adding up to
100, exactly one action per rule, rules after a catch-all that can never
match). What needs the rest of the mesh (do the subsets and hosts exist, do
two VirtualServices claim one host) is `legation.model.validate`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from legation.model import Severity
from legation.model.ratelimit import ROUTES_ANNOTATION
from legation.model.traffic import (
    MESH_GATEWAY,
    Destination,
    HttpRoute,
    L4Match,
    RouteDestination,
    TcpRoute,
    TlsMatch,
    TlsRoute,
    VirtualService,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, is_dns1123_label, is_dns1123_subdomain
from legation.sources.convert.httproute import check_weights, http_route
from legation.sources.convert.meta import Meta
from legation.sources.convert.ratelimit import route_limits
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("hosts", "gateways", "http", "tls", "tcp", "exportTo")


def convert_virtual_service(
    ctx: Ctx, meta: Meta, data: Mapping[str, Any]
) -> VirtualService | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a VirtualService spec")
    gateways = _gateways(ctx, spec)
    hosts = _hosts(ctx, spec, mesh=not gateways or MESH_GATEWAY in gateways)
    http = tuple(
        r for i, (path, raw) in enumerate(ctx.items(spec, "http", "spec", problem="http"))
        if (r := http_route(ctx, i, path, raw, destination)) is not None
    )
    tcp = tuple(
        t for i, (path, raw) in enumerate(ctx.items(spec, "tcp", "spec", problem="tcp"))
        if (t := _tcp_route(ctx, i, path, raw)) is not None
    )
    tls = tuple(
        sni for i, (path, raw) in enumerate(ctx.items(spec, "tls", "spec", problem="tls"))
        if (sni := _tls_route(ctx, i, path, raw)) is not None
    )
    if not spec.get("http") and not spec.get("tcp") and not spec.get("tls"):
        ctx.error("spec", "routes-missing", "the VirtualService has no rules; expected http, "
                  "tcp or tls routes.")
    if not ctx.failed:  # a rule with a bad match may look like a catch-all: judge only valid ones
        _unreachable(ctx, http)
    http = _route_limits(ctx, meta, http)
    return VirtualService(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        hosts=hosts,
        gateways=gateways,
        http=http,
        tcp=tcp,
        tls=tls,
        export_to=export_to(ctx, spec),
        lines=tuple(sorted((p, n) for p, n in ctx.lines.items() if p.startswith("spec"))),
    )


def _route_limits(ctx: Ctx, meta: Meta, http: tuple[HttpRoute, ...]) -> tuple[HttpRoute, ...]:
    """`ratelimit.legation.io/routes`: a local rate limit on the named http routes."""
    limits = route_limits(ctx, meta)
    named = {r.name for r in http if r.name}
    for name in sorted(set(limits) - named):
        ctx.error(f"metadata.annotations[{ROUTES_ANNOTATION}].{name}", "rate-limit-route",
                  f"no http route is named {name!r}; expected one of "
                  f"{', '.join(sorted(named)) or '(no named routes: give routes a name)'}.")
    return tuple(replace(r, rate_limit=limits[r.name]) if r.name in limits else r
                 for r in http)


def destination(ctx: Ctx, raw: Any, path: str) -> Destination | None:
    """Istio's `Destination`: host (no wildcard), subset, port."""
    if raw is None:
        ctx.missing(path, "destination", "a mapping with at least a host")
        return None
    d = ctx.as_mapping(raw, path, problem="destination")
    if d is None:
        return None
    istio.check_fields(ctx, d, path, ("host", "subset", "port"), what="a destination")
    host = istio.string(ctx, d, "host", path, required=True, expected="a service host name")
    host = istio.host(ctx, host, child_path(path, "host"), wildcard=False) if host else ""
    subset = istio.string(ctx, d, "subset", path)
    if subset and not is_dns1123_label(subset):
        ctx.invalid(child_path(path, "subset"), "subset", subset,
                    "a subset name (a DNS-1123 label)")
    port = istio.port_selector(ctx, d, "port", path)
    if not host:
        return None
    return Destination(host=host, subset=subset, port=port)


def export_to(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[str, ...]:
    """`exportTo`: `.`, `*` or namespace names; `*` cannot be mixed with others."""
    values = istio.strings(ctx, spec, "exportTo", "spec")
    for i, v in enumerate(values):
        if v not in (".", "*") and not is_dns1123_label(v):
            ctx.invalid(f"spec.exportTo[{i}]", "export-to", v,
                        "'.', '*' or a namespace name")
    if "*" in values and len(set(values)) > 1:
        ctx.error("spec.exportTo", "export-to-invalid",
                  "'*' already exports everywhere; expected it alone.")
    return values


def _gateways(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[str, ...]:
    values = istio.strings(ctx, spec, "gateways", "spec")
    for i, g in enumerate(values):
        ns, _, name = g.rpartition("/")
        if g != MESH_GATEWAY and not (is_dns1123_subdomain(name) and (not ns or
                                                                      is_dns1123_label(ns))):
            ctx.invalid(f"spec.gateways[{i}]", "gateway", g,
                        "'mesh' or a gateway name, optionally as <namespace>/<name>")
    return values


def _hosts(ctx: Ctx, spec: Mapping[str, Any], *, mesh: bool) -> tuple[str, ...]:
    if not spec.get("hosts"):
        ctx.missing("spec.hosts", "hosts", "a list of the host names these rules apply to")
        return ()
    out = []
    for i, raw in enumerate(istio.strings(ctx, spec, "hosts", "spec")):
        path = f"spec.hosts[{i}]"
        h = istio.host(ctx, raw, path, wildcard=True)
        if h == "*" and mesh:
            ctx.error(path, "host-invalid", "the wildcard host '*' would capture every "
                      "request of every sidecar; expected service host names (Istio rejects "
                      "'*' for VirtualServices bound to the mesh).")
            continue
        if h and h in out:
            ctx.warn(path, "host-duplicate", f"host {h!r} is listed twice.")
            continue
        if h:
            out.append(h)
    return tuple(out)


def _tcp_route(ctx: Ctx, index: int, path: str, raw: Any) -> TcpRoute | None:
    r = ctx.as_mapping(raw, path, problem="tcp-route")
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("match", "route"), what="a TCP route")
    matches = []
    for mpath, item in ctx.items(r, "match", path, problem="match"):
        m = ctx.as_mapping(item, mpath, problem="match")
        if m is None:
            continue
        istio.check_fields(ctx, m, mpath, L4_MATCH_FIELDS, what="a TCP match",
                           unsupported={"sourceSubnet": "hidden in Istio"})
        matches.append(L4Match(**_l4_match(ctx, m, mpath)))
    route: list[RouteDestination] = []
    for dpath, item in ctx.items(r, "route", path, problem="route"):
        d = ctx.as_mapping(item, dpath, problem="route")
        if d is None:
            continue
        istio.check_fields(ctx, d, dpath, ("destination", "weight"), what="a TCP destination")
        dest = destination(ctx, d.get("destination"), child_path(dpath, "destination"))
        weight = istio.integer(ctx, d, "weight", dpath, low=0, high=100)
        if dest is not None:
            route.append(RouteDestination(destination=dest, weight=weight or 0))
    if not r.get("route"):
        ctx.missing(child_path(path, "route"), "route", "at least one destination")
    check_weights(ctx, r, path, route)
    return TcpRoute(index=index, match=tuple(matches), route=tuple(route))


def _tls_route(ctx: Ctx, index: int, path: str, raw: Any) -> TlsRoute | None:
    """Istio's TLSRoute: every match needs sniHosts (istio/api virtual_service.proto)."""
    r = ctx.as_mapping(raw, path, problem="tls-route")
    if r is None:
        return None
    istio.check_fields(ctx, r, path, ("match", "route"), what="a TLS route")
    matches = []
    for mpath, item in ctx.items(r, "match", path, problem="match"):
        m = ctx.as_mapping(item, mpath, problem="match")
        if m is None:
            continue
        istio.check_fields(ctx, m, mpath, ("sniHosts", *L4_MATCH_FIELDS), what="a TLS match")
        hosts = tuple(h for i, raw_host in enumerate(istio.strings(ctx, m, "sniHosts", mpath))
                      if (h := istio.host(ctx, raw_host, f"{mpath}.sniHosts[{i}]",
                                          wildcard=True)))
        if not hosts:
            ctx.missing(child_path(mpath, "sniHosts"), "sni-hosts",
                        "at least one SNI host name to match")
        matches.append(TlsMatch(sni_hosts=hosts, **_l4_match(ctx, m, mpath)))
    if not matches:
        ctx.missing(child_path(path, "match"), "match", "at least one match with sniHosts")
    tcp = _tcp_route(ctx, index, path, {"route": r.get("route")})
    if tcp is None:
        return None
    return TlsRoute(index=index, match=tuple(matches), route=tcp.route)


L4_MATCH_FIELDS = ("destinationSubnets", "port", "sourceLabels", "gateways", "sourceNamespace")


def _l4_match(ctx: Ctx, m: Mapping[str, Any], mpath: str) -> dict[str, Any]:
    """The conditions TCP and TLS matches share, as L4Match keyword arguments."""
    return {
        "port": istio.integer(ctx, m, "port", mpath, low=1, high=65535) or 0,
        "destination_subnets": istio.strings(ctx, m, "destinationSubnets", mpath),
        "source_labels": istio.labels(ctx, m, "sourceLabels", mpath),
        "source_namespace": istio.string(ctx, m, "sourceNamespace", mpath),
        "gateways": istio.strings(ctx, m, "gateways", mpath),
    }


def _unreachable(ctx: Ctx, http: tuple[HttpRoute, ...]) -> None:
    """Rules after a catch-all, and match blocks identical to an earlier one, are dead.

    Istio's analyzer reports both as IST0130 VirtualServiceUnreachableRule
    (a warning): the routes are valid, they just never match.
    """
    catch_all: HttpRoute | None = None
    seen: dict[Any, str] = {}
    for rule in http:
        if catch_all is not None:
            ctx.report(rule.path, "rule-unreachable",
                       f"this rule can never match: {catch_all.path} before it matches every "
                       "request. Move it above that rule or remove it.", Severity.WARNING)
            continue
        if not rule.match or any(m.matches_everything for m in rule.match):
            catch_all = rule
        for i, m in enumerate(rule.match):
            key = (m.uri, m.scheme, m.method, m.authority, m.headers, m.without_headers,
                   m.query_params, m.port, m.source_labels, m.source_namespace, m.gateways,
                   m.ignore_uri_case)
            path = f"{rule.path}.match[{i}]"
            if key in seen:
                ctx.report(path, "rule-unreachable",
                           f"this match can never be used: {seen[key]} before it matches "
                           "exactly the same requests.", Severity.WARNING)
            else:
                seen[key] = path
