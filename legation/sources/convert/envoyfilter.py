"""`networking.istio.io` EnvoyFilter -> `EnvoyFilter`: selector, ordering, checked patches.

Every patch is checked when read: `applyTo`, `match.context` and
`patch.operation` are Istio's names and the operation is one the kind allows;
the `match` fields are those of the kind; `patch.value` parses as the Envoy v3
message the kind patches (a Listener, FilterChain, listener Filter, HttpFilter,
ListenerFilter, RouteConfiguration, VirtualHost, Route or Cluster), every
`@type` resolved (model/envoyproto.py). A bad patch is an error at its path and
the whole filter is held back (its last good version stays in force): half a
filter can break a proxy as surely as a bad one. What Legation cannot apply is
an error too, never dropped in silence: `EXTENSION_CONFIG` (ECDS is not served),
`BOOTSTRAP` (a bootstrap is written once, by `legation bootstrap`), a
`match.proxy` condition (proxies report no Istio version or metadata to match),
and `targetRefs` to anything but a Gateway API Gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf import message

from legation.model.envoyfilter import (
    OPERATIONS,
    ApplyTo,
    ClusterMatch,
    ConfigPatch,
    EnvoyFilter,
    ListenerMatch,
    Operation,
    PatchContext,
    RouteMatch,
)
from legation.model.envoyproto import ProtoError, parse
from legation.model.gatewayapi import GATEWAY_API_GROUP
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("workloadSelector", "targetRefs", "configPatches", "priority")
MESSAGES: dict[ApplyTo, type[message.Message]] = {
    ApplyTo.LISTENER: listener_pb2.Listener,
    ApplyTo.FILTER_CHAIN: listener_components_pb2.FilterChain,
    ApplyTo.NETWORK_FILTER: listener_components_pb2.Filter,
    ApplyTo.HTTP_FILTER: http_connection_manager_pb2.HttpFilter,
    ApplyTo.LISTENER_FILTER: listener_components_pb2.ListenerFilter,
    ApplyTo.ROUTE_CONFIGURATION: route_pb2.RouteConfiguration,
    ApplyTo.VIRTUAL_HOST: route_components_pb2.VirtualHost,
    ApplyTo.HTTP_ROUTE: route_components_pb2.Route,
    ApplyTo.CLUSTER: cluster_pb2.Cluster,
}
NOT_APPLIED = {
    "EXTENSION_CONFIG": "Legation serves no ECDS (extension config discovery)",
    "BOOTSTRAP": "a bootstrap is written once, by `legation bootstrap` / `legation proxy`, "
                 "not served over xDS",
}
LISTENER_KINDS = (ApplyTo.LISTENER, ApplyTo.FILTER_CHAIN, ApplyTo.NETWORK_FILTER,
                  ApplyTo.HTTP_FILTER, ApplyTo.LISTENER_FILTER)
ROUTE_KINDS = (ApplyTo.ROUTE_CONFIGURATION, ApplyTo.VIRTUAL_HOST, ApplyTo.HTTP_ROUTE)


def convert_envoy_filter(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> EnvoyFilter | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="an EnvoyFilter spec")
    selector = istio.workload_selector(ctx, spec)
    gateways = _target_refs(ctx, spec)
    if selector and gateways:
        ctx.error("spec.targetRefs", "selector-conflict",
                  "workloadSelector and targetRefs exclude each other (Istio); expected one.")
    priority = istio.integer(ctx, spec, "priority", "spec", low=-(2**31), high=2**31 - 1)
    patches: list[ConfigPatch] = []
    for path, raw in ctx.items(spec, "configPatches", "spec", problem="config-patches"):
        item = ctx.as_mapping(raw, path, problem="config-patch")
        if item is not None:
            found = _patch(ctx, item, path, len(patches))
            if found is not None:
                patches.append(found)
    if "configPatches" not in spec:
        ctx.missing("spec.configPatches", "config-patches", "at least one patch")
    return EnvoyFilter(ref=ctx.ref, name=meta.name, namespace=meta.namespace,
                       selector=selector, gateways=gateways, priority=priority or 0,
                       patches=tuple(patches))


def _target_refs(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[str, ...]:
    out: list[str] = []
    for path, raw in ctx.items(spec, "targetRefs", "spec", problem="target-refs"):
        ref = ctx.as_mapping(raw, path, problem="target-ref")
        if ref is None:
            continue
        group = ref.get("group", "")
        kind = ref.get("kind", "")
        if (group, kind) != (GATEWAY_API_GROUP, "Gateway"):
            ctx.error(path, "target-ref-unsupported",
                      f"found {group or '(core)'}/{kind or '(no kind)'}; expected a Gateway "
                      f"of {GATEWAY_API_GROUP}: Legation applies targetRefs to Gateway API "
                      "Gateways only.")
            continue
        name = ctx.string(ref, "name", path, problem="target-ref-name", required=True,
                          expected="the Gateway's name")
        if name:
            out.append(name)
    return tuple(out)


def _patch(ctx: Ctx, item: Mapping[str, Any], path: str, index: int) -> ConfigPatch | None:
    istio.check_fields(ctx, item, path, ("applyTo", "match", "patch"), what="a config patch")
    raw_kind = item.get("applyTo")
    if raw_kind in NOT_APPLIED:
        ctx.error(child_path(path, "applyTo"), "apply-to-unsupported",
                  f"{raw_kind} patches are not applied: {NOT_APPLIED[raw_kind]}.")
        return None
    kind = istio.enum_value(ctx, item, "applyTo", path, [k.value for k in ApplyTo])
    if kind is None:
        if "applyTo" not in item:
            ctx.missing(child_path(path, "applyTo"), "apply-to", "what the patch applies to")
        return None
    apply_to = ApplyTo(kind)
    match = _match(ctx, item, path, apply_to)
    body = istio.section(ctx, item, "patch", path)
    if body is None:
        ctx.missing(child_path(path, "patch"), "patch", "an operation and a value")
        return None
    ppath = child_path(path, "patch")
    istio.check_fields(ctx, body, ppath, ("operation", "value", "filterClass"), what="a patch")
    op_name = istio.enum_value(ctx, body, "operation", ppath, [o.value for o in Operation])
    if op_name is None:
        if "operation" not in body:
            ctx.missing(child_path(ppath, "operation"), "operation", "MERGE, ADD, REMOVE, ...")
        return None
    operation = Operation(op_name)
    if operation not in OPERATIONS[apply_to]:
        allowed = ", ".join(sorted(o.value for o in OPERATIONS[apply_to]))
        ctx.invalid(child_path(ppath, "operation"), "operation", op_name,
                    f"one of {allowed} for {apply_to.value}")
        return None
    if "filterClass" in body:
        ctx.warn(child_path(ppath, "filterClass"), "field-not-applied",
                 "filterClass is not applied: Legation has no Wasm filter phases; the "
                 "filter goes where the operation puts it.")
    value = b""
    if operation is not Operation.REMOVE:
        if "value" not in body:
            ctx.missing(child_path(ppath, "value"), "value",
                        f"an Envoy v3 {MESSAGES[apply_to].DESCRIPTOR.name}")
            return None
        try:
            value = parse(body["value"], MESSAGES[apply_to]).SerializeToString(
                deterministic=True)
        except ProtoError as e:
            ctx.error(child_path(ppath, "value"), "value-invalid",
                      f"not a valid Envoy v3 {MESSAGES[apply_to].DESCRIPTOR.name}: {e}")
            return None
    if match is None:
        return None
    context, listener, route, cluster = match
    return ConfigPatch(apply_to=apply_to, context=context, listener=listener, route=route,
                       cluster=cluster, operation=operation, value=value, index=index)


_Match = tuple[PatchContext, ListenerMatch | None, RouteMatch | None, ClusterMatch | None]


def _match(ctx: Ctx, item: Mapping[str, Any], patch_path: str, apply_to: ApplyTo
           ) -> _Match | None:
    section = istio.section(ctx, item, "match", patch_path)
    if section is None:
        return PatchContext.ANY, None, None, None
    path = child_path(patch_path, "match")
    allowed = ["context", "proxy"]
    allowed += (["listener"] if apply_to in LISTENER_KINDS else
                ["routeConfiguration"] if apply_to in ROUTE_KINDS else ["cluster"])
    istio.check_fields(ctx, section, path, tuple(allowed),
                       what=f"a match of an {apply_to.value} patch")
    if "proxy" in section:
        ctx.error(child_path(path, "proxy"), "proxy-match-unsupported",
                  "match.proxy is not applied: proxies report no Istio version or metadata "
                  "to match against; expected no proxy condition.")
        return None
    name = istio.enum_value(ctx, section, "context", path, [c.value for c in PatchContext])
    context = PatchContext(name) if name else PatchContext.ANY
    listener = route = cluster = None
    if "listener" in section:
        listener = _listener(ctx, section["listener"], child_path(path, "listener"))
    if "routeConfiguration" in section:
        route = _route(ctx, section["routeConfiguration"],
                       child_path(path, "routeConfiguration"))
    if "cluster" in section:
        cluster = _cluster(ctx, section["cluster"], child_path(path, "cluster"))
    return context, listener, route, cluster


def _listener(ctx: Ctx, raw: Any, path: str) -> ListenerMatch | None:
    data = ctx.as_mapping(raw, path, problem="listener-match")
    if data is None:
        return None
    istio.check_fields(ctx, data, path, ("portNumber", "portName", "filterChain", "name",
                                         "listenerFilter"), what="a listener match")
    if "portName" in data:
        ctx.warn(child_path(path, "portName"), "field-not-applied",
                 "portName is not applied (Istio ignores it too); expected portNumber.")
    chain: Mapping[str, Any] = {}
    filt: Mapping[str, Any] = {}
    sub = ""
    if "filterChain" in data:
        cpath = child_path(path, "filterChain")
        chain = ctx.as_mapping(data["filterChain"], cpath, problem="filter-chain-match") or {}
        istio.check_fields(ctx, chain, cpath, ("name", "sni", "transportProtocol",
                                               "applicationProtocols", "filter",
                                               "destinationPort"), what="a filter chain match")
        if "filter" in chain:
            fpath = child_path(cpath, "filter")
            filt = ctx.as_mapping(chain["filter"], fpath, problem="filter-match") or {}
            istio.check_fields(ctx, filt, fpath, ("name", "subFilter"), what="a filter match")
            if "subFilter" in filt:
                spath = child_path(fpath, "subFilter")
                subf = ctx.as_mapping(filt["subFilter"], spath, problem="sub-filter") or {}
                istio.check_fields(ctx, subf, spath, ("name",), what="a sub-filter match")
                sub = istio.string(ctx, subf, "name", spath)
    protocols = chain.get("applicationProtocols", "")
    return ListenerMatch(
        port=_port(ctx, data, path),
        name=istio.string(ctx, data, "name", path),
        chain=istio.string(ctx, chain, "name", child_path(path, "filterChain")),
        sni=istio.string(ctx, chain, "sni", child_path(path, "filterChain")),
        transport_protocol=istio.string(ctx, chain, "transportProtocol",
                                        child_path(path, "filterChain")),
        application_protocols=tuple(p.strip() for p in str(protocols).split(",") if p.strip()),
        destination_port=ctx.port(chain, "destinationPort", child_path(path, "filterChain"),
                                  problem="destination-port") or 0,
        filter=istio.string(ctx, filt, "name", f"{path}.filterChain.filter"),
        sub_filter=sub,
        listener_filter=istio.string(ctx, data, "listenerFilter", path),
    )


def _route(ctx: Ctx, raw: Any, path: str) -> RouteMatch | None:
    data = ctx.as_mapping(raw, path, problem="route-configuration-match")
    if data is None:
        return None
    istio.check_fields(ctx, data, path, ("portNumber", "portName", "gateway", "vhost", "name"),
                       what="a route configuration match")
    for key, why in (("portName", "route configurations are matched by portNumber or name"),
                     ("gateway", "a gateway's route configurations are matched by portNumber "
                                 "or name")):
        if key in data:
            ctx.error(child_path(path, key), "field-not-applied",
                      f"{key} is not applied: {why}; expected those instead.")
    vhost: Mapping[str, Any] = {}
    route: Mapping[str, Any] = {}
    if "vhost" in data:
        vpath = child_path(path, "vhost")
        vhost = ctx.as_mapping(data["vhost"], vpath, problem="vhost-match") or {}
        istio.check_fields(ctx, vhost, vpath, ("name", "route", "domainName"),
                           what="a virtual host match")
        if "domainName" in vhost:
            ctx.error(child_path(vpath, "domainName"), "field-not-applied",
                      "domainName is not applied; expected the virtual host's name "
                      "(<host>:<port>).")
        if "route" in vhost:
            rpath = child_path(vpath, "route")
            route = ctx.as_mapping(vhost["route"], rpath, problem="route-match") or {}
            istio.check_fields(ctx, route, rpath, ("name", "action"), what="a route match")
    action = istio.enum_value(ctx, route, "action", f"{path}.vhost.route",
                              ["ANY", "ROUTE", "REDIRECT", "DIRECT_RESPONSE"]) or ""
    return RouteMatch(
        port=_port(ctx, data, path),
        name=istio.string(ctx, data, "name", path),
        vhost=istio.string(ctx, vhost, "name", f"{path}.vhost"),
        route=istio.string(ctx, route, "name", f"{path}.vhost.route"),
        action="" if action == "ANY" else action,
    )


def _cluster(ctx: Ctx, raw: Any, path: str) -> ClusterMatch | None:
    data = ctx.as_mapping(raw, path, problem="cluster-match")
    if data is None:
        return None
    istio.check_fields(ctx, data, path, ("portNumber", "service", "subset", "name"),
                       what="a cluster match")
    return ClusterMatch(port=_port(ctx, data, path),
                        service=istio.string(ctx, data, "service", path),
                        subset=istio.string(ctx, data, "subset", path),
                        name=istio.string(ctx, data, "name", path))


def _port(ctx: Ctx, data: Mapping[str, Any], path: str) -> int:
    return ctx.port(data, "portNumber", path, problem="port-number") or 0
