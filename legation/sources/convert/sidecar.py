"""`networking.istio.io` Sidecar -> `Sidecar`: workload selector and egress hosts.

Each egress host must be `namespace/dnsName` (istio/api sidecar.proto): the
namespace a name, `*`, `.` or `~`; the name an FQDN, `*` or `*.suffix` (a
short name matches the service of that name, with a warning). Legation's
sidecars have one outbound listener, so what is per egress listener (port,
bind, captureMode, defaultEndpoint) and `ingress` and
`inboundConnectionPool` are reported as not applied, never dropped in
silence. `outboundTrafficPolicy.mode` overrides the MeshConfig's for the
Sidecar's proxies. No `egress` means every host (`*/*`), as Istio.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.meshconfig import OutboundPolicy
from legation.model.sidecar import EgressHost, Sidecar
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, is_dns1123_label
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("workloadSelector", "egress", "ingress", "outboundTrafficPolicy",
               "inboundConnectionPool")
EGRESS_FIELDS = ("hosts", "port", "bind", "captureMode")
NOT_APPLIED = {
    "ingress": "inbound listeners are built from the workload's services",
    "inboundConnectionPool": "inbound clusters keep Envoy's defaults",
}


def convert_sidecar(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Sidecar | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a Sidecar spec")
    for key, why in NOT_APPLIED.items():
        if key in spec:
            ctx.warn(f"spec.{key}", "field-not-applied", f"{key} is not applied yet: {why}.")
    selector = istio.workload_selector(ctx, spec)
    hosts: list[EgressHost] = []
    for path, raw in ctx.items(spec, "egress", "spec", problem="egress"):
        listener = ctx.as_mapping(raw, path, problem="egress")
        if listener is None:
            continue
        istio.check_fields(ctx, listener, path, EGRESS_FIELDS, what="an egress listener")
        for key in ("port", "bind", "captureMode"):
            if key in listener:
                ctx.warn(child_path(path, key), "field-not-applied",
                         f"{key} is not applied: Legation's sidecars have one outbound "
                         "listener; only the hosts of each egress entry count.")
        entries = istio.strings(ctx, listener, "hosts", path)
        if not entries:
            ctx.missing(child_path(path, "hosts"), "egress-hosts",
                        "at least one host, e.g. ./* or istio-system/*")
        for i, entry in enumerate(entries):
            host = _egress_host(ctx, entry, f"{path}.hosts[{i}]")
            if host is not None:
                hosts.append(host)
    if "egress" not in spec:
        hosts.append(EgressHost(namespace="*", host="*"))
    return Sidecar(ref=ctx.ref, name=meta.name, namespace=meta.namespace, selector=selector,
                   hosts=tuple(dict.fromkeys(hosts)), outbound=_outbound(ctx, spec))


def _outbound(ctx: Ctx, spec: Mapping[str, Any]) -> OutboundPolicy | None:
    section = istio.section(ctx, spec, "outboundTrafficPolicy", "spec")
    if section is None:
        return None
    path = "spec.outboundTrafficPolicy"
    istio.check_fields(ctx, section, path, ("mode", "egressProxy"),
                       what="an outbound traffic policy")
    if "egressProxy" in section:
        ctx.warn(child_path(path, "egressProxy"), "field-not-applied",
                 "egressProxy is not applied: route outbound traffic to an egress gateway "
                 "with a VirtualService instead.")
    mode = istio.enum_value(ctx, section, "mode", path, [m.value for m in OutboundPolicy])
    return OutboundPolicy(mode) if mode is not None else None


def _egress_host(ctx: Ctx, entry: str, path: str) -> EgressHost | None:
    ns, slash, name = entry.lower().partition("/")
    expected = ("'<namespace>/<host>': the namespace a name, '*', '.' or '~'; the host an "
                "FQDN, '*' or '*.suffix', e.g. ./* or istio-system/*")
    if not slash or not name or not (ns in ("*", ".", "~") or is_dns1123_label(ns)):
        ctx.invalid(path, "egress-host", entry, expected)
        return None
    if name != "*" and not name.startswith("*.") and "*" in name:
        ctx.invalid(path, "egress-host", entry, expected)
        return None
    if name != "*" and not name.startswith("*.") and "." not in name:
        ctx.warn(path, "egress-host-short", f"{entry!r} names a service by its short name: "
                 f"it matches service {name!r} in the namespaces {ns!r} allows; write the "
                 "FQDN (Istio expects one) for the same meaning everywhere.")
    return EgressHost(namespace=ns, host=name)
