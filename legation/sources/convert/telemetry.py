"""`telemetry.istio.io` Telemetry -> `Telemetry` (model/telemetry.py): access logging.

Checked against istio/api telemetry/v1alpha1/telemetry.proto: `selector`
(matchLabels), `accessLogging[]` (providers by name, `disabled`,
`filter.expression`, `match.mode` CLIENT / SERVER / CLIENT_AND_SERVER).
Not applied yet, and said so: `targetRef(s)`, `tracing`, `metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.telemetry import AccessLogging, LogMode, Telemetry
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("selector", "targetRef", "targetRefs", "accessLogging", "tracing", "metrics")
NOT_APPLIED = {
    "targetRef": "policy attachment to Gateways and Services is not served; use selector",
    "targetRefs": "policy attachment to Gateways and Services is not served; use selector",
    "tracing": "tracing is not configured by Legation yet",
    "metrics": "metric overrides are not applied yet",
}


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
                     access_logging=tuple(entries))
