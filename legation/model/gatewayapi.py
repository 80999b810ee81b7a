"""Kubernetes Gateway API v1 (`gateway.networking.k8s.io`) objects, as typed values.

Produced by `legation.sources.convert.gatewayapi` (per-object checks);
`legation.mesh.gatewayapi` resolves them together (classes, listeners,
parent references, ReferenceGrants) into the Istio `Gateway` and
`VirtualService` values the translators already serve, with the standard
status conditions of each object, as Istio's own Gateway API controller does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from legation.model.diagnostics import SourceRef
from legation.model.labels import Labels
from legation.model.traffic import HttpMatch, Lines, Redirect, Rewrite, line_of

GATEWAY_API_GROUP = "gateway.networking.k8s.io"
# Controllers whose GatewayClasses Legation implements: Istio's (so users' existing
# classes work) and its own.
CONTROLLERS = ("istio.io/gateway-controller", "legation.io/gateway-controller")
# The label that makes a workload the proxy of a Gateway API Gateway (Istio's manual
# deployment): its value is the Gateway's name, in the Gateway's namespace.
GATEWAY_NAME_LABEL = "gateway.networking.k8s.io/gateway-name"


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayClass:
    ref: SourceRef
    name: str
    controller: str
    namespace: str = ""  # cluster-scoped


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectRef:
    """A reference to another object: a certificate Secret, a backend Service."""

    name: str
    namespace: str  # "" : the referring object's namespace
    kind: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    index: int
    name: str
    port: int
    protocol: str  # HTTP, HTTPS, TLS, TCP, UDP
    hostname: str = ""  # "" : any
    tls_mode: str = ""  # Terminate (the default for HTTPS) or Passthrough
    certificate_refs: tuple[ObjectRef, ...] = ()
    routes_from: str = "Same"  # allowedRoutes.namespaces.from: Same, All, Selector
    routes_selector: Labels = ()  # allowedRoutes.namespaces.selector.matchLabels
    route_kinds: tuple[str, ...] = ()  # allowedRoutes.kinds; () : by protocol

    @property
    def path(self) -> str:
        return f"spec.listeners[{self.index}]"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiGateway:
    """A Gateway API Gateway (named to keep it apart from Istio's `Gateway`)."""

    ref: SourceRef
    name: str
    namespace: str
    class_name: str
    listeners: tuple[Listener, ...] = ()
    lines: Lines = field(default=(), repr=False)

    def line_of(self, path: str) -> int:
        return line_of(self.lines, path, self.ref.line)


@dataclass(frozen=True, slots=True, kw_only=True)
class ParentRef:
    index: int
    name: str
    namespace: str  # resolved: the route's own when unset
    section_name: str = ""
    port: int = 0
    kind: str = "Gateway"
    group: str = GATEWAY_API_GROUP


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendRef:
    ref: ObjectRef
    port: int = 0
    weight: int = 1
    path: str = ""  # its field path


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderModifier:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteRule:
    index: int
    matches: tuple[HttpMatch, ...] = ()  # OR; () matches every request (path prefix /)
    backends: tuple[BackendRef, ...] = ()
    request_headers: HeaderModifier = HeaderModifier()
    response_headers: HeaderModifier = HeaderModifier()
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    mirrors: tuple[BackendRef, ...] = ()
    timeout_ms: int | None = None

    @property
    def path(self) -> str:
        return f"spec.rules[{self.index}]"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiRoute:
    """An HTTPRoute or a GRPCRoute (`ref.kind`)."""

    ref: SourceRef
    name: str
    namespace: str
    parents: tuple[ParentRef, ...] = ()
    hostnames: tuple[str, ...] = ()
    rules: tuple[RouteRule, ...] = ()
    lines: Lines = field(default=(), repr=False)

    @property
    def kind(self) -> str:
        return self.ref.kind


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantFrom:
    group: str
    kind: str
    namespace: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GrantTo:
    group: str
    kind: str
    name: str = ""  # "" : every object of the kind


@dataclass(frozen=True, slots=True, kw_only=True)
class ReferenceGrant:
    ref: SourceRef
    name: str
    namespace: str
    sources: tuple[GrantFrom, ...] = ()
    targets: tuple[GrantTo, ...] = ()

    def permits(self, *, group: str, kind: str, namespace: str, to_group: str, to_kind: str,
                to_name: str) -> bool:
        """Whether an object (group, kind) of `namespace` may refer to `to_name` here."""
        return any(f.group == group and f.kind == kind and f.namespace == namespace
                   for f in self.sources) and any(
            t.group == to_group and t.kind == to_kind and t.name in ("", to_name)
            for t in self.targets)


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    type: str  # Accepted, Programmed, ResolvedRefs, Conflicted
    status: bool
    reason: str
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ObjectStatus:
    """The status Legation computes for one Gateway API object: its own conditions, or
    those of one of its listeners / parent references (`part`)."""

    ref: SourceRef
    part: str = ""  # "" (the object), "listener <name>", "parent <ns>/<name>[/<section>]"
    conditions: tuple[Condition, ...] = ()
    attached_routes: int = 0  # listeners: how many routes attached
    field_path: str = ""
    listener: str = ""  # a listener's name
    supported_kinds: tuple[str, ...] = ()  # a listener's route kinds
    parent: ParentRef | None = None  # a route's parent reference
    controller: str = ""  # the controller that owns the status (a route parent's)
