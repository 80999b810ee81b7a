"""One manifest dict -> one model object: apiVersion/kind routing and metadata.

`convert_object` is the single entry for both sources: the file source calls
it per YAML document (with a field-path -> line map), the Kubernetes source
with API objects as dicts (no file). Each kind Legation reads is registered
by (API group, kind) with the versions Istio / Kubernetes serve for it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from legation.model import Diagnostic, MeshObject, ObjectKey, Severity, SourceRef
from legation.model.gatewayapi import GATEWAY_API_GROUP
from legation.model.mesh import qualified_kind
from legation.sources.convert.authorizationpolicy import convert_authorization_policy
from legation.sources.convert.cluster import convert_namespace, convert_node
from legation.sources.convert.destinationrule import convert_destination_rule
from legation.sources.convert.endpointslice import convert_endpoint_slice
from legation.sources.convert.envoyfilter import convert_envoy_filter
from legation.sources.convert.fields import Ctx, describe
from legation.sources.convert.gateway import convert_gateway
from legation.sources.convert.gatewayapi import (
    convert_api_gateway,
    convert_gateway_class,
    convert_grpc_route,
    convert_http_route,
    convert_reference_grant,
)
from legation.sources.convert.meshconfig import convert_config_map
from legation.sources.convert.meta import Meta, NameRule, parse_meta, raw_name_namespace
from legation.sources.convert.peerauthentication import convert_peer_authentication
from legation.sources.convert.policy import convert_policy
from legation.sources.convert.requestauthentication import convert_request_authentication
from legation.sources.convert.secret import convert_secret
from legation.sources.convert.service import convert_service
from legation.sources.convert.serviceentry import convert_service_entry
from legation.sources.convert.sidecar import convert_sidecar
from legation.sources.convert.telemetry import convert_telemetry
from legation.sources.convert.virtualservice import convert_virtual_service
from legation.sources.convert.workload import convert_pod, convert_workload_entry

Converter = Callable[[Ctx, Meta, Mapping[str, Any]], MeshObject | None]

ISTIO_NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
ISTIO_SECURITY_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True, slots=True, kw_only=True)
class KindSpec:
    group: str  # "" for the Kubernetes core group
    kind: str
    versions: tuple[str, ...]
    convert: Converter
    namespaced: bool = True
    name_rule: NameRule = NameRule.DNS1123_SUBDOMAIN

    def api_versions(self) -> str:
        return ", ".join(f"{self.group}/{v}" if self.group else v for v in self.versions)


def _kinds() -> Mapping[tuple[str, str], KindSpec]:
    specs = [
        KindSpec(group="", kind="Service", versions=("v1",), convert=convert_service,
                 name_rule=NameRule.DNS1035_LABEL),
        KindSpec(group="", kind="Pod", versions=("v1",), convert=convert_pod),
        KindSpec(group="", kind="Namespace", versions=("v1",), convert=convert_namespace,
                 namespaced=False, name_rule=NameRule.DNS1123_LABEL),
        KindSpec(group="", kind="Node", versions=("v1",), convert=convert_node, namespaced=False),
        KindSpec(group="", kind="Secret", versions=("v1",), convert=convert_secret),
        KindSpec(group="", kind="ConfigMap", versions=("v1",), convert=convert_config_map),
        KindSpec(group="discovery.k8s.io", kind="EndpointSlice", versions=("v1",),
                 convert=convert_endpoint_slice),
        KindSpec(group="networking.istio.io", kind="WorkloadEntry",
                 versions=ISTIO_NETWORKING_VERSIONS, convert=convert_workload_entry),
        KindSpec(group="networking.istio.io", kind="VirtualService",
                 versions=ISTIO_NETWORKING_VERSIONS, convert=convert_virtual_service),
        KindSpec(group="networking.istio.io", kind="DestinationRule",
                 versions=ISTIO_NETWORKING_VERSIONS, convert=convert_destination_rule),
    ]
    specs.append(KindSpec(group="networking.istio.io", kind="Sidecar",
                          versions=ISTIO_NETWORKING_VERSIONS, convert=convert_sidecar))
    specs.append(KindSpec(group="networking.istio.io", kind="EnvoyFilter",
                          versions=("v1alpha3",), convert=convert_envoy_filter))
    specs.append(KindSpec(group="networking.istio.io", kind="Gateway",
                          versions=ISTIO_NETWORKING_VERSIONS, convert=convert_gateway))
    specs.append(KindSpec(group="networking.istio.io", kind="ServiceEntry",
                          versions=ISTIO_NETWORKING_VERSIONS, convert=convert_service_entry))
    specs.append(KindSpec(group="security.istio.io", kind="PeerAuthentication",
                          versions=ISTIO_SECURITY_VERSIONS, convert=convert_peer_authentication))
    specs.append(KindSpec(group="security.istio.io", kind="AuthorizationPolicy",
                          versions=ISTIO_SECURITY_VERSIONS, convert=convert_authorization_policy))
    specs.append(KindSpec(group="security.istio.io", kind="RequestAuthentication",
                          versions=ISTIO_SECURITY_VERSIONS,
                          convert=convert_request_authentication))
    specs.append(KindSpec(group="telemetry.istio.io", kind="Telemetry",
                          versions=("v1", "v1alpha1"), convert=convert_telemetry))
    gw_api = GATEWAY_API_GROUP
    specs += [
        KindSpec(group=gw_api, kind="GatewayClass", versions=("v1", "v1beta1"),
                 convert=convert_gateway_class, namespaced=False),
        KindSpec(group=gw_api, kind="Gateway", versions=("v1", "v1beta1"),
                 convert=convert_api_gateway),
        KindSpec(group=gw_api, kind="HTTPRoute", versions=("v1", "v1beta1"),
                 convert=convert_http_route),
        KindSpec(group=gw_api, kind="GRPCRoute", versions=("v1",), convert=convert_grpc_route),
        KindSpec(group=gw_api, kind="ReferenceGrant", versions=("v1beta1", "v1"),
                 convert=convert_reference_grant),
    ]
    # Read and reported, not implemented yet: never accepted in silence (policy.py).
    specs += [KindSpec(group=gw_api, kind=kind, versions=versions, convert=convert_policy)
              for kind, versions in (("TCPRoute", ("v1", "v1alpha2")),
                                     ("TLSRoute", ("v1", "v1alpha2", "v1alpha3")),
                                     ("UDPRoute", ("v1", "v1alpha2")),
                                     ("BackendTLSPolicy", ("v1", "v1alpha3")),
                                     ("ListenerSet", ("v1",)))]
    return MappingProxyType({(s.group, s.kind): s for s in specs})


KINDS = _kinds()
_KNOWN_KIND_NAMES = frozenset(kind for _, kind in KINDS)


def split_api_version(api_version: str) -> tuple[str, str]:
    """`networking.istio.io/v1` -> (`networking.istio.io`, `v1`); `v1` -> (``, `v1`)."""
    group, slash, version = api_version.rpartition("/")
    return (group, version) if slash else ("", api_version)


def convert_object(
    data: Mapping[str, Any],
    *,
    file: str = "",
    line: int = 0,
    lines: Mapping[str, int] | None = None,
) -> tuple[MeshObject | None, ObjectKey | None, list[Diagnostic]]:
    """Convert one manifest: (object or None, key of an invalid object or None, diagnostics).

    The key is returned only when the object is recognised but invalid, so that
    the caller can keep its last good version; skipped objects (unknown kinds,
    pods without an IP, FQDN slices) return neither object nor key.
    """
    api_version, raw_kind = data.get("apiVersion"), data.get("kind")
    kind = raw_kind if isinstance(raw_kind, str) else ""
    kind_ok = kind != ""
    spec = _find(api_version, kind) if kind_ok else None
    name, namespace = raw_name_namespace(data, namespaced=_namespaced(spec, kind))
    metadata = data.get("metadata")
    generation = metadata.get("generation") if isinstance(metadata, Mapping) else None
    ref = SourceRef(kind=kind if kind_ok else "Object", namespace=namespace, name=name,
                    file=file, line=line,
                    generation=generation if isinstance(generation, int) else 0)
    ctx = Ctx(ref=ref, lines=lines)
    if not kind_ok or not isinstance(api_version, str) or not api_version:
        _missing_type(ctx, api_version, raw_kind)
        known = kind_ok and kind in _KNOWN_KIND_NAMES and name
        return None, _key(ref) if known else None, ctx.diagnostics
    if spec is None:
        _unknown(ctx, api_version, kind)
        return None, None, ctx.diagnostics
    if split_api_version(api_version)[1] not in spec.versions:
        ctx.report("apiVersion", "object.unsupported-version",
                   f"{kind} {api_version} is not supported; expected one of "
                   f"{spec.api_versions()}. The object is ignored.", Severity.WARNING)
        return None, None, ctx.diagnostics
    meta = parse_meta(ctx, data, namespaced=spec.namespaced, rule=spec.name_rule)
    obj = spec.convert(ctx, meta, data)
    if ctx.failed:
        key = (qualified_kind(spec.group, kind), ref.namespace, ref.name)
        return None, key if name else None, ctx.diagnostics
    return obj, None, ctx.diagnostics


def _find(api_version: Any, kind: str) -> KindSpec | None:
    """The registered kind for this apiVersion's group (any version), if any."""
    if not isinstance(api_version, str):
        return None
    return KINDS.get((split_api_version(api_version)[0], kind))


def _namespaced(spec: KindSpec | None, kind: Any) -> bool:
    if spec is not None:
        return spec.namespaced
    return all(s.namespaced for s in KINDS.values() if s.kind == kind)


def _key(ref: SourceRef) -> ObjectKey:
    return (ref.kind, ref.namespace, ref.name)


def _missing_type(ctx: Ctx, api_version: Any, kind: Any) -> None:
    if not (isinstance(kind, str) and kind):
        found = "nothing" if kind is None else describe(kind)
        ctx.error("kind", "object.kind-missing",
                  f"found {found}; expected the object's kind, e.g. Service or WorkloadEntry.")
    if not (isinstance(api_version, str) and api_version):
        found = "nothing" if api_version is None else describe(api_version)
        ctx.error("apiVersion", "object.apiversion-missing",
                  f"found {found}; expected the object's API version, e.g. v1 or "
                  "networking.istio.io/v1.")


def _unknown(ctx: Ctx, api_version: str, kind: str) -> None:
    elsewhere = [s.api_versions() for s in KINDS.values() if s.kind == kind]
    hint = f" (Legation reads {kind} of {elsewhere[0]})" if elsewhere else ""
    ctx.report("kind", "object.unknown-kind",
               f"{kind} ({api_version}) is not a kind Legation reads{hint}; it is ignored.",
               Severity.WARNING)
