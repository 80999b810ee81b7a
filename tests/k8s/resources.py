"""The resource types the emulated API server knows, and its discovery documents.

Built-in kinds (core v1, discovery.k8s.io/v1) are always served. The Istio
kinds are CRDs: each group is served at a set of versions that tests change at
run time (`ApiServer.set_served`); an unserved group/version answers 404 like a
real server without that CRD. Secrets and coordination.k8s.io Leases are also
writable over HTTP (see writes.py); TokenReview is create-only and stores nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_SECURITY = "security.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
ISTIO_TELEMETRY = "telemetry.istio.io"
COORDINATION = "coordination.k8s.io"
AUTHENTICATION = "authentication.k8s.io"


@dataclass(frozen=True, slots=True, kw_only=True)
class ResourceType:
    group: str  # "" for the core group
    plural: str
    kind: str
    namespaced: bool
    versions: tuple[str, ...]  # every version this type can be served at
    crd: bool = False
    verbs: tuple[str, ...] = ("get", "list", "watch")
    virtual: bool = False  # create-only, nothing stored (TokenReview)

    @property
    def ident(self) -> tuple[str, str]:
        return (self.group, self.plural)

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def singular(self) -> str:
        return self.kind.lower()


def _builtin(group: str, plural: str, kind: str, namespaced: bool = True) -> ResourceType:
    return ResourceType(group=group, plural=plural, kind=kind, namespaced=namespaced,
                        versions=("v1",))


def _writable(group: str, plural: str, kind: str) -> ResourceType:
    """A kind clients also write over HTTP: create (409 if taken), update (409 on a stale
    resourceVersion), delete."""
    return ResourceType(group=group, plural=plural, kind=kind, namespaced=True, versions=("v1",),
                        verbs=("create", "delete", "get", "list", "update", "watch"))


def _crd(group: str, plural: str, kind: str, versions: tuple[str, ...], *,
         namespaced: bool = True) -> ResourceType:
    return ResourceType(group=group, plural=plural, kind=kind, namespaced=namespaced,
                        versions=versions, crd=True)


_NET = ("v1", "v1beta1", "v1alpha3")
_SEC = ("v1", "v1beta1")
_GW = ("v1", "v1beta1")

RESOURCE_TYPES: tuple[ResourceType, ...] = (
    _builtin("", "namespaces", "Namespace", namespaced=False),
    _builtin("", "nodes", "Node", namespaced=False),
    _builtin("", "services", "Service"),
    _builtin("", "pods", "Pod"),
    _builtin("", "configmaps", "ConfigMap"),
    _builtin("discovery.k8s.io", "endpointslices", "EndpointSlice"),
    _crd(ISTIO_NETWORKING, "workloadentries", "WorkloadEntry", _NET),
    _crd(ISTIO_NETWORKING, "serviceentries", "ServiceEntry", _NET),
    _crd(ISTIO_NETWORKING, "virtualservices", "VirtualService", _NET),
    _crd(ISTIO_NETWORKING, "destinationrules", "DestinationRule", _NET),
    _crd(ISTIO_NETWORKING, "gateways", "Gateway", _NET),
    _crd(ISTIO_NETWORKING, "sidecars", "Sidecar", _NET),
    _crd(ISTIO_NETWORKING, "envoyfilters", "EnvoyFilter", ("v1alpha3",)),
    _crd(ISTIO_SECURITY, "peerauthentications", "PeerAuthentication", _SEC),
    _crd(ISTIO_SECURITY, "authorizationpolicies", "AuthorizationPolicy", _SEC),
    _crd(ISTIO_SECURITY, "requestauthentications", "RequestAuthentication", _SEC),
    _crd(ISTIO_TELEMETRY, "telemetries", "Telemetry", ("v1", "v1alpha1")),
    _crd(GATEWAY_API, "gatewayclasses", "GatewayClass", _GW, namespaced=False),
    _crd(GATEWAY_API, "gateways", "Gateway", _GW),
    _crd(GATEWAY_API, "httproutes", "HTTPRoute", _GW),
    _crd(GATEWAY_API, "grpcroutes", "GRPCRoute", ("v1",)),
    _crd(GATEWAY_API, "referencegrants", "ReferenceGrant", _GW),
    _writable("", "secrets", "Secret"),
    _writable("", "events", "Event"),
    _writable(COORDINATION, "leases", "Lease"),
    ResourceType(group=AUTHENTICATION, plural="tokenreviews", kind="TokenReview",
                 namespaced=False, versions=("v1",), verbs=("create",), virtual=True),
)

ALL_CRD_VERSIONS: Mapping[str, tuple[str, ...]] = {ISTIO_NETWORKING: _NET, ISTIO_SECURITY: _SEC,
                                                   GATEWAY_API: _GW,
                                                   ISTIO_TELEMETRY: ("v1", "v1alpha1")}


def by_kind(group: str, kind: str) -> ResourceType:
    for rt in RESOURCE_TYPES:
        if rt.group == group and rt.kind == kind:
            return rt
    raise KeyError(f"the emulated API server has no kind {kind} in group {group or 'core'!r}")


def by_plural(group: str, plural: str) -> ResourceType | None:
    return next((rt for rt in RESOURCE_TYPES if rt.group == group and rt.plural == plural), None)


def split_api_version(api_version: str) -> tuple[str, str]:
    group, slash, version = api_version.rpartition("/")
    return (group, version) if slash else ("", api_version)


# -- discovery documents ---------------------------------------------------------


def api_versions(address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
    }


def api_group(group: str, versions: Iterable[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": group,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_group_list(served: Mapping[str, tuple[str, ...]]) -> dict[str, Any]:
    groups = [api_group(g, vs) for g, vs in sorted(served.items()) if vs]
    for g in groups:
        del g["kind"], g["apiVersion"]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_resource_list(group: str, version: str, types: Iterable[ResourceType]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [
            {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": list(rt.verbs),
            }
            for rt in types
        ],
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A `metav1.Status` failure, as the API server sends in error bodies and ERROR events."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
