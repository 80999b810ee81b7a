"""`security.istio.io` PeerAuthentication -> `PeerAuthentication`, with every per-object check.

Istio's schema (istio/api security/v1beta1/peer_authentication.proto):
`selector.matchLabels`, `mtls.mode` (UNSET, DISABLE, PERMISSIVE, STRICT) and
`portLevelMtls` (workload port -> `{mode}`). As Istio's validation does,
port-level settings need a selector: a mesh- or namespace-wide policy cannot
say which workload's port it means. Which policy wins for a workload is
decided later (`legation.model.security.peer_authentication_for`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.security import Labels, MtlsMode, PeerAuthentication
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, describe
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("selector", "mtls", "portLevelMtls")
MODES = tuple(m.value for m in MtlsMode)


def convert_peer_authentication(
    ctx: Ctx, meta: Meta, data: Mapping[str, Any]
) -> PeerAuthentication | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a PeerAuthentication spec")
    selector = workload_selector(ctx, spec)
    mode = _mode(ctx, spec.get("mtls"), "spec.mtls")
    ports = _port_modes(ctx, spec)
    if ports and not selector:
        ctx.error(
            "spec.portLevelMtls",
            "port-level-without-selector",
            "portLevelMtls needs a workload selector: a mesh- or namespace-wide policy "
            "cannot name one workload's ports (as Istio's validation). Add "
            "spec.selector.matchLabels or move the port settings to a policy that has one.",
        )
    return PeerAuthentication(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        selector=selector,
        mode=mode,
        port_modes=ports,
        lines=tuple(sorted((p, n) for p, n in ctx.lines.items() if p.startswith("spec"))),
    )


def workload_selector(ctx: Ctx, spec: Mapping[str, Any]) -> Labels:
    """`spec.selector.matchLabels` (shared with AuthorizationPolicy); () when absent or empty."""
    section = istio.section(ctx, spec, "selector", "spec")
    if section is None:
        return ()
    istio.check_fields(ctx, section, "spec.selector", ("matchLabels",), what="a workload selector")
    return istio.labels(ctx, section, "matchLabels", "spec.selector")


def _mode(ctx: Ctx, raw: Any, path: str) -> MtlsMode:
    """`{mode: ...}`; UNSET when absent (or invalid: reported)."""
    if raw is None:
        return MtlsMode.UNSET
    section = ctx.as_mapping(raw, path, problem="mtls", expected="a mapping {mode: <mode>}")
    if section is None:
        return MtlsMode.UNSET
    istio.check_fields(ctx, section, path, ("mode",), what="an mTLS setting")
    value = istio.enum_value(ctx, section, "mode", path, MODES)
    return MtlsMode(value) if value is not None else MtlsMode.UNSET


def _port_modes(ctx: Ctx, spec: Mapping[str, Any]) -> tuple[tuple[int, MtlsMode], ...]:
    raw = spec.get("portLevelMtls")
    if raw is None:
        return ()
    path = "spec.portLevelMtls"
    section = ctx.as_mapping(
        raw, path, problem="port-level-mtls", expected="a mapping of port numbers to {mode: <mode>}"
    )
    if section is None:
        return ()
    out: dict[int, MtlsMode] = {}
    for key, value in section.items():
        item_path = child_path(path, str(key))
        port = _port_key(key)
        if port is None:
            ctx.error(
                item_path,
                "port-invalid",
                f"found the key {describe(key)}; expected a port number from 1 to 65535.",
            )
            continue
        if port in out:
            ctx.error(
                item_path,
                "port-duplicate",
                f"port {port} is listed twice; expected each port once.",
            )
            continue
        out[port] = _mode(ctx, value, item_path)
    return tuple(sorted(out.items()))


def _port_key(key: Any) -> int | None:
    """A YAML key 8080 or "8080" (JSON, as the Kubernetes API returns it)."""
    if isinstance(key, bool):
        return None
    if isinstance(key, str) and key.isascii() and key.isdigit():
        key = int(key)
    if isinstance(key, int) and 1 <= key <= 65535:
        return key
    return None
