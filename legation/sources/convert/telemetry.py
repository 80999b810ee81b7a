"""`telemetry.istio.io` Telemetry -> `Telemetry` (model/telemetry.py): access logging.

Checked against istio/api telemetry/v1alpha1/telemetry.proto: `selector`
(matchLabels), `accessLogging[]` (providers by name, `disabled`,
`filter.expression`, `match.mode` CLIENT / SERVER / CLIENT_AND_SERVER).
`tracing[]` (providers, `randomSamplingPercentage`, `customTags`,
`disableSpanReporting`, `match.mode`). `metrics[].overrides[]`
(`match.metric` / `match.mode`, `disabled`) for the `prometheus` provider:
applied when a sidecar's bootstrap is written (`legation bootstrap`: Envoy
takes stats settings at start only), so the INFO says a restart is needed;
a `tagOverrides` value that is a string literal becomes a fixed tag on every
stat of the proxy, other values are reported (stock Envoy's stats take their
tags from stat names, not from request attributes). Not applied, and said so:
`targetRef(s)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.telemetry import (
    NOT_DERIVED,
    AccessLogging,
    CustomTag,
    LogMode,
    MetricOverride,
    Telemetry,
    Tracing,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("selector", "targetRef", "targetRefs", "accessLogging", "tracing", "metrics")
NOT_APPLIED = {
    "targetRef": "policy attachment to Gateways and Services is not served; use selector",
    "targetRefs": "policy attachment to Gateways and Services is not served; use selector",
}
METRICS = ("REQUEST_COUNT", "REQUEST_DURATION", "REQUEST_SIZE", "RESPONSE_SIZE",
           "TCP_OPENED_CONNECTIONS", "TCP_CLOSED_CONNECTIONS", "TCP_SENT_BYTES",
           "TCP_RECEIVED_BYTES", "GRPC_REQUEST_MESSAGES", "GRPC_RESPONSE_MESSAGES",
           "ALL_METRICS")


def convert_telemetry(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Telemetry | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a Telemetry spec")
    for key, why in NOT_APPLIED.items():
        if key in spec:
            ctx.warn(f"spec.{key}", "field-not-applied", f"{key} is not applied: {why}.")
    selector = istio.section(ctx, spec, "selector", "spec")
    labels: tuple[tuple[str, str], ...] = ()
    if selector is not None:
        istio.check_fields(ctx, selector, "spec.selector", ("matchLabels",),
                           what="a workload selector")
        labels = istio.labels(ctx, selector, "matchLabels", "spec.selector")
    entries = []
    for path, item in ctx.mapping_items(spec, "accessLogging", "spec",
                                        problem="access-logging"):
        istio.check_fields(ctx, item, path, ("providers", "disabled", "filter", "match"),
                           what="an access logging entry")
        providers = []
        for ppath, p in ctx.mapping_items(item, "providers", path, problem="provider"):
            istio.check_fields(ctx, p, ppath, ("name",), what="a provider reference")
            name = istio.string(ctx, p, "name", ppath, required=True,
                                expected="a provider name (MeshConfig extensionProviders)")
            if name:
                providers.append(name)
        expression = ""
        section = istio.section(ctx, item, "filter", path)
        if section is not None:
            istio.check_fields(ctx, section, child_path(path, "filter"), ("expression",),
                               what="a log filter")
            expression = istio.string(ctx, section, "expression", child_path(path, "filter"),
                                      required=True, expected="a CEL expression")
        mode = LogMode.CLIENT_AND_SERVER
        match = istio.section(ctx, item, "match", path)
        if match is not None:
            istio.check_fields(ctx, match, child_path(path, "match"), ("mode",),
                               what="a workload mode match")
            mode = LogMode(istio.enum_value(ctx, match, "mode", child_path(path, "match"),
                                            [m.value for m in LogMode])
                           or LogMode.CLIENT_AND_SERVER)
        entries.append(AccessLogging(
            providers=tuple(providers), disabled=istio.boolean(ctx, item, "disabled", path)
            or False, filter=expression, mode=mode))
    return Telemetry(ref=ctx.ref, name=meta.name, namespace=meta.namespace, selector=labels,
                     access_logging=tuple(entries), tracing=_tracing(ctx, spec),
                     metrics=_metrics(ctx, spec))


def _metrics(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[MetricOverride, ...]:
    out: list[MetricOverride] = []
    for path, item in ctx.mapping_items(spec, "metrics", "spec", problem="metrics"):
        istio.check_fields(ctx, item, path, ("providers", "overrides", "reportingInterval"),
                           what="a metrics entry")
        for ppath, p in ctx.mapping_items(item, "providers", path, problem="provider"):
            name = istio.string(ctx, p, "name", ppath, required=True, expected="a name")
            if name and name != "prometheus":
                ctx.warn(child_path(ppath, "name"), "provider-not-applied",
                         f"metrics provider {name!r} is not served: Envoy's Prometheus "
                         "stats (15090) are the metrics here; use prometheus.")
        if "reportingInterval" in item:
            ctx.info(child_path(path, "reportingInterval"), "field-not-applied",
                     "reportingInterval is not applied: Prometheus pulls the stats.")
        for opath, o in ctx.mapping_items(item, "overrides", path, problem="override"):
            istio.check_fields(ctx, o, opath, ("match", "disabled", "tagOverrides"),
                               what="a metric override")
            match = istio.section(ctx, o, "match", opath) or {}
            mpath = child_path(opath, "match")
            istio.check_fields(ctx, match, mpath, ("metric", "customMetric", "mode"),
                               what="a metric selector")
            if "customMetric" in match:
                ctx.warn(child_path(mpath, "customMetric"), "field-not-applied",
                         "customMetric is not applied: only Istio's standard metrics are "
                         "derived here.")
                continue
            metric = istio.enum_value(ctx, match, "metric", mpath, METRICS) or "ALL_METRICS"
            mode = LogMode(istio.enum_value(ctx, match, "mode", mpath,
                                            [m.value for m in LogMode])
                           or LogMode.CLIENT_AND_SERVER)
            tags = _tags(ctx, o, opath)
            disabled = istio.boolean(ctx, o, "disabled", opath)
            if disabled is None and not tags:
                continue
            if metric in NOT_DERIVED:
                ctx.info(child_path(mpath, "metric"), "metric-not-derived",
                         f"{metric} is not derived from Envoy's stats here "
                         "(deploy/prometheus/istio-rules.yaml): there is nothing to "
                         "disable or enable.")
                continue
            ctx.info(opath, "metrics-at-bootstrap",
                     "metric overrides apply to a sidecar's bootstrap (legation bootstrap "
                     "writes them into Envoy's stats settings, read at start): restart the "
                     "proxies after changing them.")
            out.append(MetricOverride(metric=metric, mode=mode, disabled=disabled,
                                      tags=tags))
    return tuple(out)


def _tags(ctx: Ctx, override: Mapping[str, Any], path: str) -> tuple[tuple[str, str], ...]:
    """`tagOverrides` whose value is a string literal (CEL ``'x'``): added as a fixed tag
    on every stat of the proxy; anything else is reported: stock Envoy's stats take
    their tags from stat names, never from request attributes."""
    out = []
    tpath = child_path(path, "tagOverrides")
    for name, raw in ctx.mapping(override, "tagOverrides", path, problem="tag").items():
        p = child_path(tpath, str(name))
        body = ctx.as_mapping(raw, p, problem="tag") or {}
        value = str(body.get("value", ""))
        literal = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
        if body.get("operation", "UPSERT") == "UPSERT" and literal:
            ctx.info(p, "tag-proxy-wide",
                     f"{name} is added to every stat of the proxy, not only this metric's "
                     "(stock Envoy's fixed tags are proxy-wide).")
            out.append((str(name), value[1:-1]))
        else:
            ctx.warn(p, "field-not-applied",
                     f"tagOverrides.{name} is not applied: stock Envoy's stats take their "
                     "tags from stat names (Legation's cluster names and the proxy's "
                     "node), not from request attributes; only a string literal value "
                     "(e.g. \"'shop'\") can be added, to every stat.")
    return tuple(out)


def _tracing(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[Tracing, ...]:
    out = []
    for path, item in ctx.mapping_items(spec, "tracing", "spec", problem="tracing"):
        istio.check_fields(ctx, item, path, ("providers", "randomSamplingPercentage",
                                             "disableSpanReporting", "customTags", "match",
                                             "useRequestIdForTraceSampling",
                                             "enableIstioTags"),
                           what="a tracing entry")
        for key in ("useRequestIdForTraceSampling", "enableIstioTags"):
            if key in item:
                ctx.warn(child_path(path, key), "field-not-applied", f"{key} is not applied.")
        providers = []
        for ppath, p in ctx.mapping_items(item, "providers", path, problem="provider"):
            name = istio.string(ctx, p, "name", ppath, required=True, expected="a name")
            if name:
                providers.append(name)
        sampling = item.get("randomSamplingPercentage")
        if sampling is not None and (isinstance(sampling, bool) or not isinstance(
                sampling, int | float) or not 0 <= sampling <= 100):
            ctx.invalid(child_path(path, "randomSamplingPercentage"), "sampling", sampling,
                        "a percentage from 0 to 100")
            sampling = None
        tags = []
        for name, raw in ctx.mapping(item, "customTags", path, problem="custom-tags").items():
            tpath = child_path(child_path(path, "customTags"), str(name))
            tag = ctx.as_mapping(raw, tpath, problem="custom-tag")
            kinds = [k for k in ("literal", "header", "environment") if k in (tag or {})]
            if tag is None or len(kinds) != 1:
                ctx.error(tpath, "custom-tag-invalid",
                          "a custom tag is one of literal, header or environment.")
                continue
            body = ctx.mapping(tag, kinds[0], tpath, problem="custom-tag")
            key = "value" if kinds[0] == "literal" else "name"
            value = istio.string(ctx, body, key, child_path(tpath, kinds[0]), required=True,
                                 expected=f"the tag's {key}")
            tags.append(CustomTag(name=str(name), kind=kinds[0], value=value,
                                  default=istio.string(ctx, body, "defaultValue",
                                                       child_path(tpath, kinds[0]))))
        mode = LogMode.CLIENT_AND_SERVER
        match = istio.section(ctx, item, "match", path)
        if match is not None:
            mode = LogMode(istio.enum_value(ctx, match, "mode", child_path(path, "match"),
                                            [m.value for m in LogMode])
                           or LogMode.CLIENT_AND_SERVER)
        out.append(Tracing(
            providers=tuple(providers),
            sampling=float(sampling) if sampling is not None else None,
            disable_span_reporting=istio.boolean(ctx, item, "disableSpanReporting", path)
            or False,
            custom_tags=tuple(tags), mode=mode))
    return tuple(out)
