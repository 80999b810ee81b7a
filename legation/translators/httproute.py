"""VirtualService `http[]` -> the Envoy routes of one virtual host (one service port).

`virtual_service_routes` follows Istio's sidecar translation
(istio/istio pilot/pkg/networking/core/route/route.go,
BuildHTTPRoutesForVirtualService and translateRoute):

- rules in order; a rule with several match blocks becomes one route per
  block (OR); a block whose `port` is not this port, whose `sourceNamespace`
  is not the client's, or whose `sourceLabels` the client lacks is skipped
  (a block with `gateways` applies to sidecars only when it names `mesh`);
- after a catch-all route nothing more is added, and a request no route
  matches gets Envoy's 404: Istio adds no default route behind a
  VirtualService;
- a destination without a port goes to the service's only port, else to the
  port the request came in on (GetDestinationCluster);
- no `retries` means Istio's default policy; `attempts: 0` means none; a
  consistent-hash destination keeps retries on the same host;
- no `timeout` means none (0s), as for the default route.

Which `sourceLabels` blocks a client satisfies is its `SourceKey`: proxies
with equal keys share one route configuration (see translate.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import struct_pb2

from legation.model import (
    Diagnostic,
    MeshSnapshot,
    Proxy,
    Severity,
    gateway_key,
    selector_matches,
)
from legation.model.destination import ConsistentHash, HashKey, effective_policy
from legation.model.traffic import (
    MESH_GATEWAY,
    Destination,
    Headers,
    HttpMatch,
    HttpRoute,
    Mirror,
    VirtualService,
)
from legation.translators import names, ratelimit
from legation.translators.common import pack
from legation.translators.retry import retry_policy
from legation.translators.routeparts import (
    CORS_FILTER,
    FAULT_FILTER,
    cors_config,
    direct_action,
    fault_config,
    fraction,
    header_ops,
    is_catch_all,
    redirect_action,
    route_match,
)
from legation.translators.trafficpolicy import millis

MatchId = tuple[str, str, int, int]  # (vs namespace, vs name, rule index, match index)
SourceKey = frozenset[MatchId]
_CONFIG_PATH = "/apis/networking.istio.io/v1/namespaces/{ns}/virtual-service/{name}"


def source_key(mesh: MeshSnapshot, proxy: Proxy,
               services: Iterable[VirtualService] | None = None) -> SourceKey:
    """The `sourceLabels` match blocks this proxy's workload satisfies, among `services`
    (default: the VirtualServices its sidecar applies; a gateway passes those bound to it:
    Istio matches sourceLabels against the gateway's own labels there)."""
    found: set[MatchId] = set()
    for vs in mesh.virtual_services_for(proxy.namespace) if services is None else services:
        for rule in vs.http:
            for i, m in enumerate(rule.match):
                if m.source_labels and not m.gateways and selector_matches(
                    m.source_labels, proxy.workload.labels
                ):
                    found.add((vs.namespace, vs.name, rule.index, i))
    return frozenset(found)


def _applies(vs: VirtualService, rule: HttpRoute, index: int, match: HttpMatch, *, port: int,
             namespace: str, source: SourceKey, gateway: str = "") -> bool:
    if match.port and match.port != port:
        return False
    if match.gateways:  # Istio: gateways in a match override the source conditions
        if gateway:
            return any(gateway_key(g, vs.namespace) == gateway for g in match.gateways)
        return MESH_GATEWAY in match.gateways
    if match.source_namespace and match.source_namespace != namespace:
        return False
    return not match.source_labels or (vs.namespace, vs.name, rule.index, index) in source


def virtual_service_routes(
    mesh: MeshSnapshot, vs: VirtualService, *, port: int, namespace: str, source: SourceKey,
    gateway: str = "",
) -> tuple[list[rc.Route], list[Diagnostic]]:
    """The routes `vs` gives requests arriving for `port`, seen from a client (a sidecar
    of `namespace`, or the gateway `gateway`, ``ns/name``)."""
    out: list[rc.Route] = []
    diagnostics: list[Diagnostic] = []
    for rule in vs.http:
        blocks: list[tuple[int, HttpMatch | None]] = (
            [(i, m) for i, m in enumerate(rule.match)] if rule.match else [(0, None)])
        for i, match in blocks:
            if match is not None and not _applies(vs, rule, i, match, port=port,
                                                  namespace=namespace, source=source,
                                                  gateway=gateway):
                continue
            route = _route(mesh, vs, rule, match, port, diagnostics)
            out.append(route)
            if is_catch_all(route.match):
                return out, diagnostics
    return out, diagnostics


def _route(mesh: MeshSnapshot, vs: VirtualService, rule: HttpRoute, match: HttpMatch | None,
           port: int, diagnostics: list[Diagnostic]) -> rc.Route:
    name = rule.name + ("." + match.name if match is not None and match.name else "")
    route = rc.Route(name=name, match=route_match(match))
    route.metadata.filter_metadata["istio"].CopyFrom(struct_pb2.Struct(fields={
        "config": struct_pb2.Value(string_value=_CONFIG_PATH.format(ns=vs.namespace,
                                                                    name=vs.name))}))
    authority = _edit_headers(route, rule.headers)
    if rule.redirect is not None:
        route.redirect.CopyFrom(redirect_action(rule.redirect, port))
    elif rule.direct_response is not None:
        route.direct_response.CopyFrom(direct_action(rule.direct_response))
    else:
        route.route.CopyFrom(_action(mesh, vs, rule, route, port, authority, diagnostics))
    if rule.fault is not None:
        route.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(fault_config(rule.fault)))
    if rule.cors is not None:
        route.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(cors_config(rule.cors)))
    if rule.rate_limit is not None:  # ratelimit.legation.io/routes (translators/ratelimit.py)
        route.typed_per_filter_config[ratelimit.LOCAL_FILTER].CopyFrom(
            pack(ratelimit.local_config(rule.rate_limit)))
    return route


def _action(mesh: MeshSnapshot, vs: VirtualService, rule: HttpRoute, route: rc.Route,
            port: int, authority: str, diagnostics: list[Diagnostic]) -> rc.RouteAction:
    action = rc.RouteAction(timeout=millis(rule.timeout_ms or 0))
    rewrite = rule.rewrite
    if rewrite is not None and rewrite.uri_regex is not None:
        action.regex_rewrite.pattern.regex = rewrite.uri_regex.match
        action.regex_rewrite.substitution = rewrite.uri_regex.rewrite
    elif rewrite is not None and rewrite.uri:
        action.prefix_rewrite = rewrite.uri
    authority = (rewrite.authority if rewrite is not None and rewrite.authority else authority)
    if authority:
        action.host_rewrite_literal = authority
    for mirror in rule.mirrors:
        if mirror.percentage > 0:
            action.request_mirror_policies.append(_mirror(mesh, vs, mirror, port, diagnostics))
    hashed = False
    # Istio drops 0-weight destinations when there are several.
    dests = [(f"{rule.path}.route[{i}].destination", d) for i, d in enumerate(rule.route)
             if d.weight > 0 or len(rule.route) == 1]
    if len(dests) == 1:
        path, d = dests[0]
        action.cluster = _cluster(mesh, vs, d.destination, port, diagnostics, path)
        dest_authority = _edit_headers(route, d.headers)
        if dest_authority and not action.host_rewrite_literal:
            action.host_rewrite_literal = dest_authority
    else:
        for path, d in dests:
            weight = action.weighted_clusters.clusters.add(
                name=_cluster(mesh, vs, d.destination, port, diagnostics, path))
            weight.weight.value = d.weight
            dest_authority = _edit_headers(weight, d.headers)
            if dest_authority:
                weight.host_rewrite_literal = dest_authority
    for _, d in dests:
        policy = _hash_policy(mesh, vs, d.destination, port)
        if policy is not None:
            action.hash_policy.append(policy)
            hashed = hashed or len(dests) == 1
    retry = retry_policy(rule.retries, consistent_hash=hashed)
    if retry is not None:
        action.retry_policy.CopyFrom(retry)
    return action


def _edit_headers(target: Any, headers: Headers) -> str:
    """Add a rule's or a destination's header edits to a Route or a ClusterWeight (same
    fields); returns the authority a `:authority`/`host` set asks for ("" if none)."""
    adds, removes, authority = header_ops(headers.request)
    target.request_headers_to_add.extend(adds)
    target.request_headers_to_remove.extend(removes)
    response_adds, response_removes, _ = header_ops(headers.response)
    target.response_headers_to_add.extend(response_adds)
    target.response_headers_to_remove.extend(response_removes)
    return authority


def _target(mesh: MeshSnapshot, vs: VirtualService, dest: Destination, port: int
            ) -> tuple[str, int, bool]:
    """(fqdn, port, port-exists) a destination resolves to on this listener port."""
    fqdn = mesh.qualify_host(dest.host, vs.namespace).fqdn
    svc = mesh.service_by_fqdn(fqdn)
    target = dest.port or (svc.ports[0].port if svc and len(svc.ports) == 1 else port)
    return fqdn, target, svc is None or svc.port(target) is not None


def _cluster(mesh: MeshSnapshot, vs: VirtualService, dest: Destination, port: int,
             diagnostics: list[Diagnostic], path: str) -> str:
    fqdn, target, exists = _target(mesh, vs, dest, port)
    if not exists:
        diagnostics.append(Diagnostic(
            ref=vs.ref, field=path, code="virtualservice.destination-port-missing",
            message=f"requests arriving on port {port} go to {fqdn} without a port, so to its "
            f"port {port}, which it does not have; they fail with 503 (set destination.port).",
            severity=Severity.WARNING, line=vs.line_of(path)))
    return names.outbound_cluster(fqdn, target, dest.subset)


def _mirror(mesh: MeshSnapshot, vs: VirtualService, mirror: Mirror, port: int,
            diagnostics: list[Diagnostic]) -> rc.RouteAction.RequestMirrorPolicy:
    policy = rc.RouteAction.RequestMirrorPolicy(
        cluster=_cluster(mesh, vs, mirror.destination, port, diagnostics, mirror.path))
    policy.runtime_fraction.default_value.CopyFrom(fraction(mirror.percentage))
    policy.trace_sampled.value = False
    return policy


def _hash_policy(mesh: MeshSnapshot, vs: VirtualService, dest: Destination, port: int
                 ) -> rc.RouteAction.HashPolicy | None:
    fqdn, target, _ = _target(mesh, vs, dest, port)
    lb = effective_policy(mesh.destination_rule_for(fqdn), dest.subset, target).load_balancer
    return hash_policy(lb.consistent_hash if lb else None)


def hash_policy(ch: ConsistentHash | None) -> rc.RouteAction.HashPolicy | None:
    """A DestinationRule consistentHash as the route's hash policy (Istio's mapping)."""
    if ch is None:
        return None
    hp = rc.RouteAction.HashPolicy
    if ch.key is HashKey.HEADER:
        return hp(header=hp.Header(header_name=ch.header_name))
    if ch.key is HashKey.COOKIE and ch.cookie is not None:
        cookie = hp.Cookie(name=ch.cookie.name, path=ch.cookie.path)
        if ch.cookie.ttl_ms is not None:
            cookie.ttl.CopyFrom(millis(ch.cookie.ttl_ms))
        return hp(cookie=cookie)
    if ch.key is HashKey.QUERY_PARAMETER:
        return hp(query_parameter=hp.QueryParameter(name=ch.query_parameter))
    return hp(connection_properties=hp.ConnectionProperties(source_ip=True))


def needed_filters(mesh: MeshSnapshot, namespace: str) -> frozenset[str]:
    """The optional HTTP filters (CORS, fault) some route seen from `namespace` may use."""
    return filters_used(filter_sources(mesh, namespace))


def filters_used(services: Iterable[VirtualService]) -> frozenset[str]:
    """The optional HTTP filters (CORS, fault, local rate limit) the rules of `services`
    use."""
    found: set[str] = set()
    for vs in services:
        for rule in vs.http:
            if rule.cors is not None:
                found.add(CORS_FILTER)
            if rule.fault is not None:
                found.add(FAULT_FILTER)
            if rule.rate_limit is not None:
                found.add(ratelimit.LOCAL_FILTER)
    return frozenset(found)


def filter_sources(mesh: MeshSnapshot, namespace: str) -> tuple[VirtualService, ...]:
    """The VirtualServices seen from `namespace` that `needed_filters` depends on: those
    with a CORS policy or a fault. (A proxy's listeners keep while these are unchanged,
    whatever routing edits the others get: see `translate.proxy_view`.)"""
    return tuple(
        vs for vs in mesh.virtual_services_for(namespace)
        if any(rule.cors is not None or rule.fault is not None or rule.rate_limit is not None
               for rule in vs.http)
    )
