"""Workloads: Istio `WorkloadEntry` and Kubernetes `Pod` -> `Workload`.

Interception mode (DESIGN.md §4) comes from Istio's annotation
`sidecar.istio.io/interceptionMode`: `REDIRECT` or `TPROXY` -> transparent,
`NONE` -> explicit. Without it a Pod is transparent (Kubernetes pods have
iptables redirection, as Istio injects it) and a WorkloadEntry explicit (the
default outside Kubernetes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model import (
    AppAddress,
    HealthStatus,
    InterceptionMode,
    Locality,
    Workload,
    WorkloadKind,
    labels_of,
)
from legation.sources.convert.appports import (
    APP_PORTS_ANNOTATION,
    APP_PORTS_EXPECTED,
    AppPortsError,
    parse_app_ports,
)
from legation.sources.convert.fields import (
    Ctx,
    describe,
    is_dns1123_subdomain,
    is_iana_port_name,
    is_ip,
)
from legation.sources.convert.meta import Meta
from legation.sources.convert.ratelimit import workload_limits
from legation.sources.convert.yamlload import child_path

_ADDRESS_EXPECTED = (
    "an IP address: Legation sends each workload to Envoy as an EDS endpoint, and "
    "EDS endpoints must be IP addresses (Legation does not resolve hostnames for them)"
)
_SA_EXPECTED = "a service account name (a DNS-1123 subdomain)"
_MAX_WEIGHT = 2**32 - 1  # Envoy's load_balancing_weight is a uint32
INTERCEPTION_ANNOTATION = "sidecar.istio.io/interceptionMode"
# Legation's opt-in: outbound virtual hosts and clusters on first use (translators/vhds.py)
ON_DEMAND_ANNOTATION = "sidecar.legation.io/on-demand"
_INTERCEPTION = {  # Istio's values (ProxyConfig.InboundInterceptionMode)
    "REDIRECT": InterceptionMode.TRANSPARENT,
    "TPROXY": InterceptionMode.TRANSPARENT,
    "NONE": InterceptionMode.EXPLICIT,
}


def convert_workload_entry(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Workload | None:
    spec = ctx.mapping(data, "spec", "", problem="spec", required=True,
                       expected="a mapping with at least an address")
    address = ctx.string(spec, "address", "spec", problem="address", required=True,
                         expected=_ADDRESS_EXPECTED)
    if address and not is_ip(address):
        ctx.invalid("spec.address", "address", address, _ADDRESS_EXPECTED)
    # Istio: spec.labels when present, else metadata.labels (istio/istio#25930).
    labels = ctx.string_map(spec, "labels", "spec", problem="labels") or dict(meta.labels)
    weight = ctx.integer(spec, "weight", "spec", problem="weight", low=0, high=_MAX_WEIGHT)
    interception = interception_mode(ctx, meta, InterceptionMode.EXPLICIT)
    return Workload(
        ref=ctx.ref,
        kind=WorkloadKind.WORKLOAD_ENTRY,
        name=meta.name,
        namespace=meta.namespace,
        address=address,
        labels=labels_of(labels),
        service_account=_service_account(ctx, spec, "serviceAccount"),
        ports=_entry_ports(ctx, spec),
        locality=_locality(ctx, spec),
        weight=weight or 0,
        app_ports=app_ports(ctx, meta),
        interception=interception,
        on_demand=on_demand(ctx, meta, interception),
        **_limits(ctx, meta),
    )


def convert_pod(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Workload | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    status = ctx.mapping(data, "status", "", problem="status")
    ip = ctx.string(status, "podIP", "status", problem="pod-ip", expected="an IP address")
    phase = ctx.string(status, "phase", "status", problem="phase")
    if ip and not is_ip(ip):
        ctx.invalid("status.podIP", "pod-ip", ip, "an IP address")
    service_account = _service_account(ctx, spec, "serviceAccountName")
    if "serviceAccountName" not in spec and "serviceAccount" in spec:
        service_account = _service_account(ctx, spec, "serviceAccount")  # deprecated alias
    ports = _container_ports(ctx, spec)
    node_name = ctx.string(spec, "nodeName", "spec", problem="node-name")
    extra = app_ports(ctx, meta)
    interception = interception_mode(ctx, meta, InterceptionMode.TRANSPARENT)
    lazy = on_demand(ctx, meta, interception)
    if ctx.failed:
        return None
    if phase in ("Succeeded", "Failed"):
        ctx.info("status.phase", "not-running", f"the pod has finished ({phase}); it is skipped.")
        return None
    if not ip:
        ctx.info("status.podIP", "no-ip", "the pod has no IP address yet; it is skipped.")
        return None
    return Workload(
        ref=ctx.ref,
        kind=WorkloadKind.POD,
        name=meta.name,
        namespace=meta.namespace,
        address=ip,
        labels=labels_of(meta.labels),
        service_account=service_account,
        ports=ports,
        health=_pod_health(ctx, data, status),
        app_ports=extra,
        node_name=node_name,
        interception=interception,
        on_demand=lazy,
        uid=_uid(data),
        **_limits(ctx, meta),
    )


def app_ports(ctx: Ctx, meta: Meta) -> tuple[tuple[int, AppAddress], ...]:
    """The `sidecar.legation.io/app-ports` annotation, or () with an error when malformed."""
    text = meta.annotations.get(APP_PORTS_ANNOTATION)
    if text is None:
        return ()
    try:
        return parse_app_ports(text)
    except AppPortsError as exc:
        ctx.error(child_path("metadata.annotations", APP_PORTS_ANNOTATION), "app-ports-invalid",
                  f"{exc}; expected {APP_PORTS_EXPECTED}.")
        return ()


def on_demand(ctx: Ctx, meta: Meta, interception: InterceptionMode) -> bool:
    """`sidecar.legation.io/on-demand: "true"`; anything but true/false is warned about,
    and so is asking for it in transparent mode, which it does not apply to."""
    text = meta.annotations.get(ON_DEMAND_ANNOTATION)
    if text is None or text in ("false", "False"):
        return False
    path = child_path("metadata.annotations", ON_DEMAND_ANNOTATION)
    if text not in ("true", "True"):
        ctx.warn(path, "on-demand-invalid",
                 f'found {describe(text)}; expected "true" or "false". Off.')
        return False
    if interception is InterceptionMode.TRANSPARENT:
        ctx.warn(path, "on-demand-transparent",
                 "on-demand config applies to explicit mode (the HTTP proxy port 15001); "
                 "this workload's sidecar intercepts traffic transparently, so it gets its "
                 "whole outbound config (expected interceptionMode NONE).")
        return False
    return True


def interception_mode(ctx: Ctx, meta: Meta, default: InterceptionMode) -> InterceptionMode:
    """`sidecar.istio.io/interceptionMode`, or `default`; a bad value is warned about."""
    text = meta.annotations.get(INTERCEPTION_ANNOTATION)
    if text is None:
        return default
    path = child_path("metadata.annotations", INTERCEPTION_ANNOTATION)
    mode = _INTERCEPTION.get(text)
    if mode is None:
        ctx.warn(path, "interception-mode-invalid",
                 f"found {describe(text)}; expected REDIRECT, TPROXY or NONE. The "
                 f"{default} default applies.")
        return default
    if text == "TPROXY":
        ctx.warn(path, "interception-mode-tproxy",
                 "TPROXY is served as REDIRECT: the sidecar's listeners are not marked "
                 "transparent, so the pod's iptables rules must REDIRECT (expected "
                 "REDIRECT or NONE).")
    return mode


def _service_account(ctx: Ctx, spec: Mapping[str, Any], key: str) -> str:
    sa = ctx.string(spec, key, "spec", problem="service-account", default="default",
                    expected=_SA_EXPECTED) or "default"
    if not is_dns1123_subdomain(sa):
        ctx.invalid(f"spec.{key}", "service-account", sa, _SA_EXPECTED)
    return sa


def _entry_ports(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    ports = ctx.mapping(spec, "ports", "spec", problem="ports",
                        expected="a mapping of port name to port number")
    out: dict[str, int] = {}
    for key, value in ports.items():
        name = str(key)
        number = ctx.port({name: value}, name, "spec.ports", problem="port")
        if number is not None:
            out[name] = number
    return tuple(sorted(out.items()))


def _locality(ctx: Ctx, spec: Mapping[str, Any]) -> Locality:
    text = ctx.string(spec, "locality", "spec", problem="locality")
    parts = text.split("/") if text else []
    if len(parts) > 3:
        ctx.invalid("spec.locality", "locality", text, "region/zone/subzone (at most 3 parts)")
        return Locality()
    parts += [""] * (3 - len(parts))
    return Locality(region=parts[0], zone=parts[1], subzone=parts[2])


def _container_ports(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """Named container ports: targetPort names resolve against these."""
    out: dict[str, int] = {}
    for cpath, container in ctx.mapping_items(spec, "containers", "spec", problem="container"):
        for ppath, item in ctx.mapping_items(container, "ports", cpath, problem="container-port"):
            number = ctx.port(item, "containerPort", ppath, problem="container-port",
                              required=True)
            name = ctx.string(item, "name", ppath, problem="container-port-name")
            if name and not is_iana_port_name(name):
                ctx.invalid(f"{ppath}.name", "container-port-name", name,
                            "1-15 lowercase letters, digits and '-', with at least one letter")
            elif name and number is not None:
                out.setdefault(name, number)
    return tuple(sorted(out.items()))


def _pod_health(ctx: Ctx, data: Mapping[str, Any], status: Mapping[str, Any]) -> HealthStatus:
    """Ready=True -> HEALTHY; being deleted -> DRAINING while still ready; else UNHEALTHY."""
    ready = False
    for path, cond in ctx.mapping_items(status, "conditions", "status", problem="condition"):
        if cond.get("type") == "Ready":
            value = cond.get("status")
            if value not in ("True", "False", "Unknown", None):
                ctx.warn(f"{path}.status", "condition-invalid",
                         f"found {describe(value)}; expected True, False or Unknown.")
            ready = value == "True"
    metadata = data.get("metadata")
    deleting = isinstance(metadata, Mapping) and metadata.get("deletionTimestamp") is not None
    if not ready:
        return HealthStatus.UNHEALTHY
    return HealthStatus.DRAINING if deleting else HealthStatus.HEALTHY


def _uid(data: Mapping[str, Any]) -> str:
    """metadata.uid, which the API server sets (manifests in files have none)."""
    metadata = data.get("metadata")
    uid = metadata.get("uid") if isinstance(metadata, Mapping) else None
    return uid if isinstance(uid, str) else ""


def _limits(ctx: Ctx, meta: Meta) -> dict[str, Any]:
    local, shared = workload_limits(ctx, meta)
    return {"local_rate_limit": local, "global_rate_limit": shared}
