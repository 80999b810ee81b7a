"""`networking.istio.io` DestinationRule -> `DestinationRule`, with every per-object check.

The host, subsets (unique DNS-1123 names, label selectors, their own traffic
policy) and the traffic policy (trafficpolicy.py). Whether the host exists
and whether each subset selects anything is `legation.model.validate`'s job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.destination import DestinationRule, Subset
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, is_dns1123_label
from legation.sources.convert.meta import Meta
from legation.sources.convert.trafficpolicy import traffic_policy
from legation.sources.convert.virtualservice import export_to
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("host", "trafficPolicy", "subsets", "exportTo", "workloadSelector")


def convert_destination_rule(
    ctx: Ctx, meta: Meta, data: Mapping[str, Any]
) -> DestinationRule | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a DestinationRule spec")
    raw_host = istio.string(ctx, spec, "host", "spec", required=True,
                            expected="the host name of a service, e.g. reviews or "
                            "reviews.prod.svc.cluster.local")
    host = istio.host(ctx, raw_host, "spec.host", wildcard=True) if raw_host else ""
    exports = export_to(ctx, spec)
    if exports and "*" not in exports:
        ctx.info("spec.exportTo", "export-to-ignored",
                 "exportTo is not applied: Legation's clusters are shared by every namespace, "
                 "so this rule applies to every client.")
    return DestinationRule(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        host=host,
        traffic_policy=traffic_policy(ctx, spec.get("trafficPolicy"), "spec.trafficPolicy"),
        subsets=_subsets(ctx, spec),
        export_to=exports,
        workload_selector=_workload_selector(ctx, spec),
        lines=tuple(sorted((p, n) for p, n in ctx.lines.items() if p.startswith("spec"))),
    )


def _subsets(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[Subset, ...]:
    out: list[Subset] = []
    names: dict[str, str] = {}
    for path, raw in ctx.items(spec, "subsets", "spec", problem="subset"):
        s = ctx.as_mapping(raw, path, problem="subset")
        if s is None:
            continue
        istio.check_fields(ctx, s, path, ("name", "labels", "trafficPolicy"), what="a subset")
        name = istio.string(ctx, s, "name", path, required=True,
                            expected="a subset name (a DNS-1123 label), e.g. v1")
        if name and not is_dns1123_label(name):
            ctx.invalid(child_path(path, "name"), "subset-name", name,
                        "a DNS-1123 label: lowercase letters, digits and '-'")
            continue
        if name in names:
            ctx.error(child_path(path, "name"), "subset-duplicate",
                      f"subset {name!r} is already defined at {names[name]}; expected each "
                      "subset name once.")
            continue
        if not name:
            continue
        names[name] = path
        out.append(Subset(
            name=name,
            labels=istio.labels(ctx, s, "labels", path),
            traffic_policy=traffic_policy(ctx, s.get("trafficPolicy"),
                                          child_path(path, "trafficPolicy")),
        ))
    return tuple(out)


def _workload_selector(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    if spec.get("workloadSelector") is None:
        return ()
    selector = istio.workload_selector(ctx, spec, key="matchLabels")
    ctx.warn("spec.workloadSelector", "workload-selector-unsupported",
             "DestinationRules for selected workloads only are not supported (Legation's "
             "clusters are shared by every sidecar); this rule is not applied.")
    return selector
