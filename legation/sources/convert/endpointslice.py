"""`discovery.k8s.io/v1 EndpointSlice` -> `EndpointSlice`.

Condition semantics follow the Kubernetes API reference (EndpointConditions):
`ready` nil is an unknown state that consumers should treat as ready;
`serving` is `ready` regardless of termination, and nil is likewise unknown,
so it falls back to `ready`; `terminating` nil means false.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from legation.model import EndpointSlice, SliceEndpoint, SlicePort
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_ADDRESS_TYPES = ("IPv4", "IPv6", "FQDN")


def convert_endpoint_slice(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> EndpointSlice | None:
    service = meta.labels.get(SERVICE_NAME_LABEL, "")
    if not service:
        ctx.missing(child_path("metadata.labels", SERVICE_NAME_LABEL), "service-name",
                    "the name of the Service this slice belongs to")
    address_type = ctx.string(data, "addressType", "", problem="address-type", required=True,
                              expected="one of IPv4, IPv6, FQDN")
    if address_type and address_type not in _ADDRESS_TYPES:
        ctx.invalid("addressType", "address-type", address_type, "one of IPv4, IPv6, FQDN")
    if address_type == "FQDN":
        ctx.warn("addressType", "fqdn-unsupported",
                 "FQDN endpoint slices are not supported (Envoy EDS endpoints must be IP "
                 "addresses); this slice is skipped.")
        return None
    ports = _ports(ctx, data)
    endpoints = _endpoints(ctx, data, address_type)
    return EndpointSlice(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        service_name=service,
        address_type=address_type,
        ports=ports,
        endpoints=endpoints,
    )


def _ports(ctx: Ctx, data: Mapping[str, Any]) -> tuple[SlicePort, ...]:
    out: list[SlicePort] = []
    for path, item in ctx.mapping_items(data, "ports", "", problem="port"):
        name = ctx.string(item, "name", path, problem="port-name")
        protocol = ctx.string(item, "protocol", path, problem="protocol", default="TCP")
        number = ctx.port(item, "port", path, problem="port")
        if number is None:
            if item.get("port") is None:
                ctx.info(f"{path}.port", "port-unset",
                         "a port without a number means 'all ports', which EDS cannot "
                         "express; this port entry is skipped.")
            continue
        out.append(SlicePort(name=name, port=number, protocol=protocol or "TCP"))
    return tuple(out)


def _endpoints(ctx: Ctx, data: Mapping[str, Any], address_type: str) -> tuple[SliceEndpoint, ...]:
    version = 6 if address_type == "IPv6" else 4
    out: list[SliceEndpoint] = []
    for path, item in ctx.mapping_items(data, "endpoints", "", problem="endpoint"):
        addresses = _addresses(ctx, item, path, version)
        conditions = ctx.mapping(item, "conditions", path, problem="conditions")
        cpath = f"{path}.conditions"
        ready = ctx.boolean(conditions, "ready", cpath, problem="condition")
        serving = ctx.boolean(conditions, "serving", cpath, problem="condition")
        terminating = ctx.boolean(conditions, "terminating", cpath, problem="condition")
        ready = True if ready is None else ready  # unknown is treated as ready
        target = ctx.mapping(item, "targetRef", path, problem="target-ref")
        out.append(
            SliceEndpoint(
                addresses=addresses,
                ready=ready,
                serving=ready if serving is None else serving,
                terminating=bool(terminating),
                target_kind=ctx.string(target, "kind", f"{path}.targetRef", problem="target-ref"),
                target_name=ctx.string(target, "name", f"{path}.targetRef", problem="target-ref"),
                zone=ctx.string(item, "zone", path, problem="zone"),
                node_name=ctx.string(item, "nodeName", path, problem="node-name"),
            )
        )
    return tuple(out)


def _addresses(ctx: Ctx, item: Mapping[str, Any], path: str, version: int) -> tuple[str, ...]:
    expected = f"a list of at least one IPv{version} address"
    if not item.get("addresses"):
        ctx.missing(f"{path}.addresses", "addresses", expected)
        return ()
    out: list[str] = []
    for apath, value in ctx.items(item, "addresses", path, problem="addresses"):
        ip = _ip(value)
        if ip is None or ip.version != version:
            ctx.invalid(apath, "address", value, f"an IPv{version} address")
            continue
        out.append(value)
    return tuple(out)


def _ip(value: Any) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not isinstance(value, str):
        return None
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        return None
