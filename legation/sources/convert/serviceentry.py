"""`networking.istio.io` ServiceEntry -> `ServiceEntry` (model/mesh.py, model/serviceentry.py).

Checked as Istio's CRD (its CEL rules) and pilot's ValidateServiceEntry check it
(istio/api networking/v1alpha3/service_entry.proto): at least one host, not
``*``; ports with a unique number and name each; `resolution` NONE (the
default), STATIC, DNS, DNS_ROUND_ROBIN or DYNAMIC_DNS; `location`
MESH_EXTERNAL (the default) or MESH_INTERNAL; `endpoints` or
`workloadSelector`, not both; no endpoints with NONE; at most one with
DNS_ROUND_ROBIN; CIDR `addresses` only with NONE or STATIC; STATIC endpoints
are IP addresses; DNS without endpoints resolves the hosts themselves, so they
cannot be wildcards; an endpoint's `ports` name ports of the entry.

Not served, and said so: Unix domain socket endpoints, `network` (one network
here), UDP ports.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from legation.model import (
    EntryEndpoint,
    EntryInfo,
    Location,
    Protocol,
    Resolution,
    ServiceEntry,
    ServicePort,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, is_dns1123_subdomain, is_ip
from legation.sources.convert.meta import Meta
from legation.sources.convert.protocol import protocol_of
from legation.sources.convert.virtualservice import export_to
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("hosts", "addresses", "ports", "location", "resolution", "endpoints",
               "workloadSelector", "exportTo", "subjectAltNames")
PORT_FIELDS = ("number", "protocol", "name", "targetPort")
ENDPOINT_FIELDS = ("address", "ports", "labels", "network", "locality", "weight",
                   "serviceAccount")
# Istio's port protocols (case-insensitive); UDP is accepted by Istio and not served here.
PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP",
             "TLS", "UDP")
_MAX_WEIGHT = 2**32 - 1
_ADDRESS_EXPECTED = "an IP address or a CIDR block, e.g. 240.0.0.1 or 10.1.0.0/16"


def convert_service_entry(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> ServiceEntry | None:
    spec = ctx.mapping(data, "spec", "", problem="spec", required=True,
                       expected="a mapping with at least hosts")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a ServiceEntry spec")
    hosts = _hosts(ctx, spec)
    resolution = Resolution(istio.enum_value(ctx, spec, "resolution", "spec",
                                             [r.value for r in Resolution]) or "NONE")
    location = Location(istio.enum_value(ctx, spec, "location", "spec",
                                         [loc.value for loc in Location]) or "MESH_EXTERNAL")
    ports = _ports(ctx, spec)
    addresses = _addresses(ctx, spec, resolution)
    selector = _selector(ctx, spec)
    endpoints = _endpoints(ctx, spec, resolution, {p.name for p in ports})
    if "endpoints" in spec and "workloadSelector" in spec:
        ctx.error("spec.workloadSelector", "selector-and-endpoints",
                  "only one of workloadSelector or endpoints can be set (expected the "
                  "endpoints listed, or selected by labels).")
    if resolution is Resolution.DNS and not endpoints:
        for i, host in enumerate(hosts):
            if host.startswith("*"):
                ctx.error(f"spec.hosts[{i}]", "dns-wildcard",
                          f"host {host!r} is a wildcard, which DNS cannot resolve: with "
                          "resolution DNS and no endpoints each host is resolved itself "
                          "(expected a host name, endpoints, or resolution NONE or "
                          "DYNAMIC_DNS).")
    sans = istio.strings(ctx, spec, "subjectAltNames", "spec")
    return ServiceEntry(
        ref=ctx.ref, name=meta.name, namespace=meta.namespace, hosts=hosts, ports=ports,
        workload_selector=selector, export_to=export_to(ctx, spec),
        info=EntryInfo(resolution=resolution, location=location, endpoints=endpoints,
                       addresses=addresses, subject_alt_names=sans),
    )


def _hosts(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[str, ...]:
    raw = istio.strings(ctx, spec, "hosts", "spec")
    if not raw and "hosts" not in spec:
        ctx.missing("spec.hosts", "hosts", "at least one host name, e.g. api.example.com")
    out: list[str] = []
    for i, value in enumerate(raw):
        path = f"spec.hosts[{i}]"
        if value == "*":
            ctx.error(path, "host-invalid", "hostname cannot be wildcard '*' (expected a host "
                      "name, optionally starting with '*.').")
            continue
        host = istio.host(ctx, value, path, wildcard=True)
        if host and host in out:
            ctx.error(path, "host-duplicate", f"host {host!r} is listed twice.")
        elif host:
            out.append(host)
    return tuple(out)


def _ports(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[ServicePort, ...]:
    out: list[ServicePort] = []
    names: dict[str, str] = {}
    numbers: dict[int, str] = {}
    for path, item in ctx.mapping_items(spec, "ports", "spec", problem="port"):
        istio.check_fields(ctx, item, path, PORT_FIELDS, what="a ServiceEntry port")
        number = ctx.port(item, "number", path, problem="port-number", required=True)
        name = istio.string(ctx, item, "name", path, required=True, expected="a port name")
        written = istio.string(ctx, item, "protocol", path,
                               expected="one of " + ", ".join(PROTOCOLS))
        target = ctx.port(item, "targetPort", path, problem="target-port")
        if written and written.upper() not in PROTOCOLS:
            ctx.invalid(child_path(path, "protocol"), "protocol", written,
                        "one of " + ", ".join(PROTOCOLS))
            continue
        if name in names:
            ctx.error(child_path(path, "name"), "port-name-duplicate",
                      f"port name {name!r} is already used by {names[name]}.")
        if number in numbers:
            ctx.error(child_path(path, "number"), "port-number-duplicate",
                      f"port number {number} is already used by {numbers[number]}.")
        if number is None or not name:
            continue
        names.setdefault(name, path)
        numbers.setdefault(number, path)
        if written.upper() == "UDP":
            ctx.warn(child_path(path, "protocol"), "protocol-unsupported",
                     f"port {number} is UDP; Legation's Envoy sidecars carry only TCP and "
                     "HTTP, so this port is skipped.")
            continue
        # Unset: Istio sniffs; the port name does not select a protocol for an entry.
        protocol = protocol_of(written) or Protocol.UNKNOWN
        out.append(ServicePort(name=name, port=number, target_port=target or number,
                               protocol=protocol))
    return tuple(out)


def _addresses(ctx: Ctx, spec: Mapping[str, Any], resolution: Resolution) -> tuple[str, ...]:
    out = []
    for i, value in enumerate(istio.strings(ctx, spec, "addresses", "spec")):
        path = f"spec.addresses[{i}]"
        try:
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            ctx.invalid(path, "address", value, _ADDRESS_EXPECTED)
            continue
        if "/" in value and resolution not in (Resolution.NONE, Resolution.STATIC):
            ctx.error(path, "address-cidr",
                      f"CIDR addresses are allowed only with resolution NONE or STATIC, not "
                      f"{resolution} (expected a single IP address).")
            continue
        out.append(value if "/" in value else str(net.network_address))
    return tuple(out)


def _selector(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    labels = istio.workload_selector(ctx, spec)
    for key, value in labels:
        if "*" in value:
            ctx.error(child_path("spec.workloadSelector.labels", key), "selector-wildcard",
                      "wildcard is not supported in selector (expected a label value).")
    return labels


def _endpoints(ctx: Ctx, spec: Mapping[str, Any], resolution: Resolution,
               port_names: set[str]) -> tuple[EntryEndpoint, ...]:
    items = ctx.mapping_items(spec, "endpoints", "spec", problem="endpoint")
    if items and resolution is Resolution.NONE:
        ctx.error("spec.endpoints", "endpoints-with-none",
                  "NONE mode cannot set endpoints (expected resolution STATIC or DNS to "
                  "list endpoints, or no endpoints).")
        return ()
    if len(items) > 1 and resolution is Resolution.DNS_ROUND_ROBIN:
        ctx.error("spec.endpoints", "endpoints-round-robin",
                  "DNS_ROUND_ROBIN mode cannot have multiple endpoints (expected one, or "
                  "resolution DNS).")
        return ()
    out = []
    for path, item in items:
        ep = _endpoint(ctx, path, item, resolution, port_names)
        if ep is not None:
            out.append(ep)
    return tuple(out)


def _endpoint(ctx: Ctx, path: str, item: Mapping[str, Any], resolution: Resolution,
              port_names: set[str]) -> EntryEndpoint | None:
    istio.check_fields(ctx, item, path, ENDPOINT_FIELDS, what="a ServiceEntry endpoint")
    address = istio.string(ctx, item, "address", path, required=True,
                           expected="an IP address or a host name")
    if "network" in item:
        ctx.warn(child_path(path, "network"), "field-not-applied",
                 "network is not applied: Legation serves one network, so every endpoint is "
                 "dialled directly.")
    ports: dict[str, int] = {}
    raw_ports = ctx.mapping(item, "ports", path, problem="endpoint-ports",
                            expected="a mapping of port name to port number")
    for key, value in raw_ports.items():
        name = str(key)
        number = ctx.port({name: value}, name, child_path(path, "ports"), problem="port")
        if name not in port_names:
            ctx.error(child_path(child_path(path, "ports"), name), "endpoint-port-unknown",
                      f"the entry has no port named {name!r} (expected one of "
                      f"{', '.join(sorted(port_names)) or 'its port names'}).")
        elif number is not None:
            ports[name] = number
    labels = istio.labels(ctx, item, "labels", path)
    weight = ctx.integer(item, "weight", path, problem="weight", low=0, high=_MAX_WEIGHT)
    account = istio.string(ctx, item, "serviceAccount", path)
    locality = istio.string(ctx, item, "locality", path)
    parts = locality.split("/") if locality else []
    if len(parts) > 3:
        ctx.invalid(child_path(path, "locality"), "locality", locality,
                    "region/zone/subzone (at most 3 parts)")
        parts = []
    if not address:
        return None
    if address.startswith("unix://"):
        ctx.warn(child_path(path, "address"), "endpoint-unix-unsupported",
                 "Unix domain socket endpoints are not served yet; this endpoint is skipped "
                 "(expected an IP address or a host name).")
        return None
    if resolution is Resolution.STATIC and not is_ip(address):
        ctx.invalid(child_path(path, "address"), "endpoint-address", address,
                    "an IP address: with resolution STATIC endpoints are not resolved (use "
                    "resolution DNS for host names)")
        return None
    if not is_ip(address) and not is_dns1123_subdomain(address.lower()):
        ctx.invalid(child_path(path, "address"), "endpoint-address", address,
                    "an IP address or a host name")
        return None
    region, zone, subzone = [*parts, "", "", ""][:3]
    return EntryEndpoint(address=address.lower() if not is_ip(address) else address,
                         ports=tuple(sorted(ports.items())), labels=labels,
                         locality=(region, zone, subzone), weight=weight or 0,
                         service_account=account)
