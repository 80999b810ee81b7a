"""The Kubernetes kinds Legation watches, and the official client's call for each.

Built-in kinds are served at one version; the Istio kinds are CRDs that a
cluster may serve at any of several versions (tried in order: the first one
served wins) or not at all.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_SECURITY = "security.istio.io"
ISTIO_TELEMETRY = "telemetry.istio.io"
GATEWAY_API = "gateway.networking.k8s.io"
SECRET_SELECTOR = ("type!=kubernetes.io/service-account-token,type!=helm.sh/release.v1,"
                   "type!=bootstrap.kubernetes.io/token")
_NETWORKING_VERSIONS = ("v1", "v1beta1", "v1alpha3")
_SECURITY_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchedKind:
    kind: str
    group: str  # "" for the core group
    versions: tuple[str, ...]  # in order of preference
    plural: str
    namespaced: bool = True
    crd: bool = False
    # the typed client's methods for built-in kinds: all namespaces / one namespace
    list_all: str = ""
    list_in: str = ""
    # Listed and watched with this field selector (the API server filters)
    field_selector: str = ""
    # Watched in the control plane's own namespace only (the ConfigMap `istio`)
    in_config_namespace: bool = False

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def resource(self) -> str:
        """`pods`, `virtualservices.networking.istio.io`: how kubectl and RBAC name it."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _builtin(kind: str, plural: str, list_all: str, list_in: str = "", *,
             group: str = "") -> WatchedKind:
    return WatchedKind(kind=kind, group=group, versions=("v1",), plural=plural,
                       namespaced=bool(list_in), list_all=list_all, list_in=list_in)


def _crd(kind: str, plural: str, group: str, versions: tuple[str, ...], *,
         namespaced: bool = True) -> WatchedKind:
    return WatchedKind(kind=kind, group=group, versions=versions, plural=plural, crd=True,
                       namespaced=namespaced)


WATCHED_KINDS: tuple[WatchedKind, ...] = (
    _builtin("Namespace", "namespaces", "list_namespace"),
    _builtin("Node", "nodes", "list_node"),
    _builtin("Service", "services", "list_service_for_all_namespaces", "list_namespaced_service"),
    _builtin("Pod", "pods", "list_pod_for_all_namespaces", "list_namespaced_pod"),
    WatchedKind(kind="ConfigMap", group="", versions=("v1",), plural="configmaps",
                list_all="list_config_map_for_all_namespaces",
                list_in="list_namespaced_config_map", field_selector="metadata.name=istio",
                in_config_namespace=True),
    # Gateway credentials (`credentialName`, `certificateRefs`); never the kinds that
    # cannot hold one (tokens, Helm releases), which can be many and large.
    WatchedKind(kind="Secret", group="", versions=("v1",), plural="secrets",
                list_all="list_secret_for_all_namespaces", list_in="list_namespaced_secret",
                field_selector=SECRET_SELECTOR),
    _builtin("EndpointSlice", "endpointslices", "list_endpoint_slice_for_all_namespaces",
             "list_namespaced_endpoint_slice", group="discovery.k8s.io"),
    _crd("WorkloadEntry", "workloadentries", ISTIO_NETWORKING, _NETWORKING_VERSIONS),
    _crd("ServiceEntry", "serviceentries", ISTIO_NETWORKING, _NETWORKING_VERSIONS),
    _crd("VirtualService", "virtualservices", ISTIO_NETWORKING, _NETWORKING_VERSIONS),
    _crd("DestinationRule", "destinationrules", ISTIO_NETWORKING, _NETWORKING_VERSIONS),
    _crd("Gateway", "gateways", ISTIO_NETWORKING, _NETWORKING_VERSIONS),
    _crd("Sidecar", "sidecars", ISTIO_NETWORKING, _NETWORKING_VERSIONS),
    _crd("EnvoyFilter", "envoyfilters", ISTIO_NETWORKING, ("v1alpha3",)),
    _crd("PeerAuthentication", "peerauthentications", ISTIO_SECURITY, _SECURITY_VERSIONS),
    _crd("AuthorizationPolicy", "authorizationpolicies", ISTIO_SECURITY, _SECURITY_VERSIONS),
    _crd("RequestAuthentication", "requestauthentications", ISTIO_SECURITY,
         _SECURITY_VERSIONS),
    _crd("Telemetry", "telemetries", ISTIO_TELEMETRY, ("v1", "v1alpha1")),
    _crd("GatewayClass", "gatewayclasses", GATEWAY_API, ("v1", "v1beta1"), namespaced=False),
    _crd("Gateway", "gateways", GATEWAY_API, ("v1", "v1beta1")),
    _crd("HTTPRoute", "httproutes", GATEWAY_API, ("v1", "v1beta1")),
    _crd("GRPCRoute", "grpcroutes", GATEWAY_API, ("v1",)),
    _crd("ReferenceGrant", "referencegrants", GATEWAY_API, ("v1", "v1beta1")),
)


def list_call(api: Any, kind: WatchedKind, version: str,
              namespace: str | None) -> Callable[..., Any]:
    """The official client's list-or-watch function for `kind` at `version` in `namespace`
    (None: all namespaces); call it with the list/watch keyword arguments."""
    if kind.crd:
        custom = k8s.CustomObjectsApi(api)
        if namespace is None:
            return functools.partial(custom.list_cluster_custom_object,
                                     kind.group, version, kind.plural)
        return functools.partial(custom.list_namespaced_custom_object,
                                 kind.group, version, namespace, kind.plural)
    typed = k8s.DiscoveryV1Api(api) if kind.group == "discovery.k8s.io" else k8s.CoreV1Api(api)
    if namespace is None or not kind.namespaced:
        fn: Callable[..., Any] = getattr(typed, kind.list_all)
        return fn
    return functools.partial(getattr(typed, kind.list_in), namespace)
