"""`v1 Service` -> `Service`: ports with Istio protocol selection, selector, labels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model import Service, ServicePort, labels_of
from legation.sources.convert.fields import PORT_RANGE, Ctx, is_dns1123_label, is_iana_port_name
from legation.sources.convert.meta import Meta
from legation.sources.convert.protocol import select_protocol

_TARGET_PORT_EXPECTED = (
    f"{PORT_RANGE} or the name of a workload port "
    "(1-15 lowercase letters, digits and '-', with at least one letter)"
)
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def convert_service(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Service | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    selector = ctx.string_map(spec, "selector", "spec", problem="selector")
    cluster_ip = ctx.string(spec, "clusterIP", "spec", problem="cluster-ip")
    ports = _ports(ctx, spec)
    exports = _export_to(ctx, meta.annotations.get(EXPORT_TO, ""))
    return Service(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        labels=labels_of(meta.labels),
        selector=labels_of(selector),
        ports=ports,
        cluster_ip=cluster_ip,
        export_to=exports,
    )


EXPORT_TO = "networking.istio.io/exportTo"


def _export_to(ctx: Ctx, raw: str) -> tuple[str, ...]:
    """Istio's annotation: comma-separated '.', '*', '~' or namespace names."""
    values = tuple(v.strip() for v in raw.split(",") if v.strip())
    for v in values:
        if v not in (".", "*", "~") and not is_dns1123_label(v):
            ctx.invalid(f"metadata.annotations[{EXPORT_TO}]", "export-to", raw,
                        "comma-separated '.', '*', '~' or namespace names")
            return ()
    if "~" in values:
        return ("~",)  # exported nowhere (Istio: hidden from every other namespace too)
    return values


def _ports(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[ServicePort, ...]:
    out: list[ServicePort] = []
    names: dict[str, str] = {}  # port name -> path of its first use
    numbers: dict[int, str] = {}
    for path, item in ctx.mapping_items(spec, "ports", "spec", problem="port"):
        name = ctx.string(item, "name", path, problem="port-name")
        if name and not is_dns1123_label(name):
            ctx.invalid(f"{path}.name", "port-name", name,
                        "a DNS-1123 label (lowercase letters, digits and '-')")
        if name in names:
            hint = "" if name else "; name each port when a service has more than one"
            ctx.error(f"{path}.name", "port-name-duplicate",
                      f"port name {name!r} is already used by {names[name]}{hint}.")
        names.setdefault(name, path)
        port = _port(ctx, item, path, name=name)
        if port is None:
            continue
        if port.port in numbers:
            ctx.error(f"{path}.port", "port-duplicate",
                      f"port {port.port} is already declared by {numbers[port.port]}; "
                      "each TCP port of a service must be unique.")
        numbers.setdefault(port.port, path)
        out.append(port)
    return tuple(out)


def _port(ctx: Ctx, item: Mapping[str, Any], path: str, *, name: str) -> ServicePort | None:
    number = ctx.port(item, "port", path, problem="port", required=True)
    protocol = ctx.string(item, "protocol", path, problem="protocol", default="TCP",
                          expected="one of TCP, UDP, SCTP")
    if protocol not in _PROTOCOLS:
        ctx.invalid(f"{path}.protocol", "protocol", protocol, "one of TCP, UDP, SCTP")
        return None
    target = _target_port(ctx, item, path)
    app_protocol = ctx.string(item, "appProtocol", path, problem="app-protocol")
    if number is None:
        return None
    if protocol != "TCP":
        ctx.warn(f"{path}.protocol", "protocol-unsupported",
                 f"port {number} is {protocol}; Legation's Envoy sidecars carry only TCP "
                 "and HTTP, so this port is skipped.")
        return None
    return ServicePort(
        name=name,
        port=number,
        target_port=number if target is None else target,
        protocol=select_protocol(port_name=name, app_protocol=app_protocol),
    )


def _target_port(ctx: Ctx, item: Mapping[str, Any], path: str) -> int | str | None:
    value = item.get("targetPort")
    p = f"{path}.targetPort"
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535:
        return value
    if isinstance(value, str) and is_iana_port_name(value):
        return value
    expected = _TARGET_PORT_EXPECTED
    if isinstance(value, str) and value.isdigit():
        expected += "; write a number without quotes"
    ctx.invalid(p, "target-port", value, expected)
    return None
