"""The typed mesh: what sources produce and translators consume.

Frozen, slotted, keyword-only dataclasses; tuples, not lists. This module
imports neither Kubernetes, YAML nor protobuf: converters in
`legation.sources.convert` build these values (validating once), translators
read them. A `MeshSnapshot` is an immutable picture of the whole mesh with the
indexes translators need (service -> endpoints, workload -> services).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from legation.model.destination import DestinationRule
from legation.model.diagnostics import Diagnostic, Severity, SourceRef
from legation.model.envoyfilter import EnvoyFilter
from legation.model.gateway import Gateway, TlsCredential
from legation.model.gatewayapi import (
    GATEWAY_API_GROUP,
    ApiGateway,
    ApiRoute,
    GatewayClass,
    ReferenceGrant,
)
from legation.model.labels import Labels, labels_of, selector_matches
from legation.model.meshconfig import MeshConfig
from legation.model.protocol import Protocol
from legation.model.ratelimit import GlobalRateLimit, LocalRateLimit
from legation.model.security import (
    AuthorizationPolicy,
    PeerAuthentication,
    RequestAuthentication,
)
from legation.model.serviceentry import EntryInfo, Resolution
from legation.model.sidecar import Sidecar
from legation.model.telemetry import Telemetry
from legation.model.traffic import VirtualService

DEFAULT_DOMAIN = "cluster.local"


class HealthStatus(StrEnum):
    HEALTHY = "HEALTHY"
    DRAINING = "DRAINING"
    UNHEALTHY = "UNHEALTHY"


class WorkloadKind(StrEnum):
    WORKLOAD_ENTRY = "WorkloadEntry"
    POD = "Pod"


class InterceptionMode(StrEnum):
    """How a workload's traffic reaches its sidecar (DESIGN.md §4)."""

    EXPLICIT = "explicit"  # real ports on the workload address; no iptables
    TRANSPARENT = "transparent"  # iptables redirection, Istio's 15001/15006 layout




@dataclass(frozen=True, slots=True, kw_only=True)
class Locality:
    region: str = ""
    zone: str = ""
    subzone: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespace:
    ref: SourceRef
    name: str
    labels: Labels = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServicePort:
    name: str  # may be "" for a single unnamed port
    port: int
    target_port: int | str  # a number, or the name of a workload port
    protocol: Protocol = Protocol.TCP


@dataclass(frozen=True, slots=True, kw_only=True)
class Service:
    ref: SourceRef
    name: str
    namespace: str
    labels: Labels = ()
    selector: Labels = ()
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str = ""
    # annotation networking.istio.io/exportTo: "*" (or empty) everywhere, "." its own
    # namespace, else the namespaces listed
    export_to: tuple[str, ...] = ()
    # A host of a ServiceEntry (model/serviceentry.py): `name` is the host, which is also
    # its FQDN; None for a Kubernetes Service
    entry: EntryInfo | None = None

    def visible_in(self, namespace: str) -> bool:
        if not self.export_to or "*" in self.export_to:
            return True
        return namespace in self.export_to or ("." in self.export_to
                                               and namespace == self.namespace)

    def fqdn(self, domain: str = DEFAULT_DOMAIN) -> str:
        if self.entry is not None:
            return self.name
        return f"{self.name}.{self.namespace}.svc.{domain}"

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    @property
    def uses_eds(self) -> bool:
        """Its endpoints are sent over EDS (a ServiceEntry's DNS and forward-proxy
        clusters find their own)."""
        return self.entry is None or self.entry.resolution is Resolution.STATIC


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceEntry:
    """Istio's ServiceEntry: hosts added to the registry (model/serviceentry.py)."""

    ref: SourceRef
    name: str
    namespace: str
    hosts: tuple[str, ...]  # lowercase; `*.suffix` wildcards allowed
    ports: tuple[ServicePort, ...] = ()
    workload_selector: Labels = ()
    export_to: tuple[str, ...] = ()
    info: EntryInfo = field(default_factory=EntryInfo)

    def services(self) -> tuple[Service, ...]:
        """One service per host, named by the host; its first IP address as cluster IP
        (transparent proxies match it as the destination)."""
        vip = next((a for a in self.info.addresses if "/" not in a), "")
        return tuple(
            Service(ref=self.ref, name=host, namespace=self.namespace,
                    selector=self.workload_selector, ports=self.ports, cluster_ip=vip,
                    export_to=self.export_to, entry=self.info)
            for host in self.hosts
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AppAddress:
    """Where the inbound sidecar forwards a target port (explicit mode)."""

    host: str = "127.0.0.1"
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """A WorkloadEntry (outside Kubernetes) or a Pod."""

    ref: SourceRef
    kind: WorkloadKind
    name: str
    namespace: str
    address: str
    labels: Labels = ()
    service_account: str = "default"
    ports: tuple[
        tuple[str, int], ...
    ] = ()  # port name -> port (WorkloadEntry.ports, Pod container ports)
    locality: Locality = Locality()
    health: HealthStatus = HealthStatus.HEALTHY
    weight: int = 0  # 0: unset (Envoy's default of 1)
    app_ports: tuple[tuple[int, AppAddress], ...] = ()  # sidecar.legation.io/app-ports
    node_name: str = ""  # Pods: spec.nodeName
    # sidecar.istio.io/interceptionMode; the converter defaults Pods to TRANSPARENT
    interception: InterceptionMode = InterceptionMode.EXPLICIT
    # sidecar.legation.io/on-demand: outbound virtual hosts and clusters on first use
    on_demand: bool = False
    uid: str = ""  # Pods: metadata.uid (a pod recreated under its name has a new one)
    # ratelimit.legation.io/* annotations (model/ratelimit.py): its inbound HTTP limits
    local_rate_limit: LocalRateLimit | None = None
    global_rate_limit: GlobalRateLimit | None = None

    def port_named(self, name: str) -> int | None:
        return next((p for n, p in self.ports if n == name), None)

    def endpoint_port(self, port: ServicePort) -> int | None:
        """The port on this workload that a service port's traffic is sent to.

        Istio: a WorkloadEntry's `ports` map the service port name to its
        port; otherwise the service's targetPort (a number, or the name of a
        workload port).
        """
        if port.name and self.kind is WorkloadKind.WORKLOAD_ENTRY:
            named = self.port_named(port.name)
            if named is not None:
                return named
        if isinstance(port.target_port, int):
            return port.target_port
        return self.port_named(port.target_port)

    def app_address(self, target_port: int) -> AppAddress:
        for port, addr in self.app_ports:
            if port == target_port:
                return addr
        return AppAddress(port=target_port)


@dataclass(frozen=True, slots=True, kw_only=True)
class SlicePort:
    name: str
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True, kw_only=True)
class SliceEndpoint:
    addresses: tuple[str, ...]
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    target_kind: str = ""  # targetRef.kind, e.g. "Pod"
    target_name: str = ""
    zone: str = ""
    node_name: str = ""

    @property
    def health(self) -> HealthStatus | None:
        """EndpointSlice conditions -> Envoy health; None: leave the endpoint out."""
        if self.ready and not self.terminating:
            return HealthStatus.HEALTHY
        if self.serving and self.terminating:
            return HealthStatus.DRAINING
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndpointSlice:
    ref: SourceRef
    name: str
    namespace: str
    service_name: str  # label kubernetes.io/service-name
    address_type: str = "IPv4"
    ports: tuple[SlicePort, ...] = ()
    endpoints: tuple[SliceEndpoint, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Node:
    ref: SourceRef
    name: str
    locality: Locality = Locality()


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyObject:
    """A parsed object of a kind a translator reads directly (VirtualService, ...).

    Kept as validated plain data until its own model lands; `spec` must not be
    mutated.
    """

    ref: SourceRef
    api_version: str
    kind: str
    name: str
    namespace: str
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False)
    spec_hash: str = ""  # content hash of spec: equality without deep compares


MeshObject = (
    Namespace | Service | Workload | EndpointSlice | Node | PolicyObject
    | VirtualService | DestinationRule | Sidecar | Gateway | TlsCredential | ServiceEntry
    | MeshConfig | GatewayClass | ApiGateway | ApiRoute | ReferenceGrant | Telemetry
    | PeerAuthentication | AuthorizationPolicy | RequestAuthentication | EnvoyFilter
)

__all__ = ["Labels", "ObjectKey", "labels_of", "selector_matches"]


ObjectKey = tuple[str, str, str]  # (kind, namespace, name): the identity across versions


def duplicate_definition(obj: MeshObject, kept: MeshObject, *, elsewhere: str) -> Diagnostic:
    """`obj` has the identity of `kept`, which wins (the file source and the store both
    keep the first definition); `elsewhere` names kept's origin when it has no location."""
    return Diagnostic(
        ref=obj.ref,
        field="metadata.name",
        code="object.duplicate",
        message=f"{obj.ref.kind} is defined twice; the definition at "
        f"{kept.ref.location or elsewhere} is used.",
        severity=Severity.WARNING,
        line=obj.ref.line,
    )


def qualified_kind(group: str, kind: str) -> str:
    """The kind in object keys: `Gateway.gateway.networking.k8s.io` for the Gateway API's
    Gateway (Istio's is `Gateway`), the plain kind for every other."""
    return f"{kind}.{group}" if group == GATEWAY_API_GROUP and kind == "Gateway" else kind


def object_key(obj: MeshObject) -> ObjectKey:
    """(kind, namespace, name): the identity of an object across versions."""
    kind = obj.kind.value if isinstance(obj, Workload) else obj.ref.kind
    if isinstance(obj, ApiGateway):
        kind = qualified_kind(GATEWAY_API_GROUP, kind)  # Istio has a Gateway too
    namespace = "" if isinstance(obj, Namespace | Node | GatewayClass) else obj.namespace
    return (kind, namespace, obj.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """One resolved endpoint of a service port."""

    address: str
    port: int
    health: HealthStatus
    locality: Locality
    labels: Labels
    service_account: str
    workload: str  # "ns/name" of the workload, or the slice target; "" if unknown
    weight: int = 0
    has_sidecar: bool = False  # True when the workload runs a Legation-managed proxy
