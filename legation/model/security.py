"""PeerAuthentication, RequestAuthentication and AuthorizationPolicy as typed values, and
whom they apply to.

Produced by `legation.sources.convert.peerauthentication` and
`.authorizationpolicy` (every per-object check happens there); read by
`legation.translators.authn` (inbound mTLS) and `legation.translators.rbac`
(Envoy RBAC filters). `MeshSecurity` is not user config: it says whether the
control plane runs a CA (`--ca-dir`) and which trust domain it signs, so that
translators know whether mutual TLS can be configured at all.

Scoping follows Istio (istio/istio pilot/pkg/security/authn/policy_applier.go,
`ComposePeerAuthentication`, and pilot/pkg/model/authorization.go):

- PeerAuthentication: a policy without a selector in the root namespace is
  mesh-wide, one without a selector elsewhere is namespace-wide, one with a
  selector applies to the matching workloads of its own namespace (a
  selector policy in the root namespace is ignored). The narrowest scope
  wins; `UNSET` inherits from the next wider scope, a port's `UNSET` from
  the workload level; with nothing set the mode is PERMISSIVE. Istio lets
  the oldest policy win a tie at one level; creation times are not part of
  a manifest, so here the first by (namespace, name) wins.
- RequestAuthentication: as PeerAuthentication's levels (a root-namespace
  policy without a selector, one of the workload's namespace without a
  selector or with a matching one), but every applicable policy counts: their
  JWT rules are merged (istio/istio pilot/pkg/model/authentication.go,
  `GetJwtPoliciesForWorkload`).
- AuthorizationPolicy: every policy of the root namespace and of the
  workload's namespace whose selector is absent or matches the workload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from legation.model.diagnostics import SourceRef

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs; as mesh.Labels
Lines = tuple[tuple[str, int], ...]  # field path -> line, sorted by path

DEFAULT_TRUST_DOMAIN = "cluster.local"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSecurity:
    """What the control plane can do for mTLS (from Settings, not from manifests)."""

    mtls: bool = False  # a CA runs: proxies get certificates, PeerAuthentication applies
    trust_domain: str = DEFAULT_TRUST_DOMAIN
    jwks_refresh_s: float = 300.0  # how often Envoy refetches a jwksUri (`--jwks-refresh`)

    def spiffe_uri(self, namespace: str, service_account: str) -> str:
        """`spiffe://<trust domain>/ns/<namespace>/sa/<service account>` (no validation)."""
        return f"spiffe://{self.trust_domain}/ns/{namespace}/sa/{service_account}"


def _matches(selector: Labels, labels: Labels) -> bool:
    """An equality selector (non-empty) matches when every pair is present."""
    have = dict(labels)
    return bool(selector) and all(have.get(k) == v for k, v in selector)


def _line(lines: Lines, path: str, default: int) -> int:
    known = dict(lines)
    while path:
        if path in known:
            return known[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default


# -- PeerAuthentication ----------------------------------------------------------


class MtlsMode(StrEnum):
    UNSET = "UNSET"
    DISABLE = "DISABLE"
    PERMISSIVE = "PERMISSIVE"
    STRICT = "STRICT"


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerAuthentication:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels = ()  # empty: namespace-wide (mesh-wide in the root namespace)
    mode: MtlsMode = MtlsMode.UNSET
    port_modes: tuple[tuple[int, MtlsMode], ...] = ()  # portLevelMtls, by workload port
    lines: Lines = field(default=(), repr=False)

    def line_of(self, path: str) -> int:
        return _line(self.lines, path, self.ref.line)

    def port_mode(self, port: int) -> MtlsMode:
        return next((m for p, m in self.port_modes if p == port), MtlsMode.UNSET)


@dataclass(frozen=True, slots=True, kw_only=True)
class MtlsDecision:
    """The mode of one workload port, and the policies that decided it."""

    mode: MtlsMode  # never UNSET
    applied: tuple[PeerAuthentication, ...] = ()  # mesh, namespace, workload level (if any)
    shadowed: tuple[PeerAuthentication, ...] = ()  # same level as an applied one: ignored


def peer_authentication_for(
    policies: Iterable[PeerAuthentication],
    *,
    root_namespace: str,
    namespace: str,
    labels: Labels,
    port: int,
) -> MtlsDecision:
    """The effective mTLS mode of a workload port (module docstring)."""
    levels: list[list[PeerAuthentication]] = [[], [], []]  # mesh, namespace, workload
    for p in sorted(policies, key=lambda p: (p.namespace, p.name)):
        if not p.selector:
            if p.namespace == root_namespace:
                levels[0].append(p)
            elif p.namespace == namespace:
                levels[1].append(p)
        elif p.namespace == namespace != root_namespace and _matches(p.selector, labels):
            levels[2].append(p)
    mode = MtlsMode.PERMISSIVE
    applied: list[PeerAuthentication] = []
    for level in levels:
        if level:
            applied.append(level[0])
            if level[0].mode is not MtlsMode.UNSET:
                mode = level[0].mode
    if levels[2]:
        port_mode = levels[2][0].port_mode(port)
        if port_mode is not MtlsMode.UNSET:
            mode = port_mode
    shadowed = tuple(p for level in levels for p in level[1:])
    return MtlsDecision(mode=mode, applied=tuple(applied), shadowed=shadowed)


# -- RequestAuthentication ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtHeader:
    """`fromHeaders[]`: the token is in header `name`, after `prefix` (e.g. "Bearer ")."""

    name: str
    prefix: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class JwtRule:
    """One `jwtRules[]` entry: which tokens of one issuer are valid, where they are found
    and what is passed on after validation."""

    issuer: str
    audiences: tuple[str, ...] = ()  # none: any audience
    jwks: str = ""  # inline JWKS (JSON), or
    jwks_uri: str = ""  # where Envoy fetches it (http or https)
    timeout_s: float = 5.0  # of a JWKS fetch
    from_headers: tuple[JwtHeader, ...] = ()  # none of the from_*: Authorization: Bearer,
    from_params: tuple[str, ...] = ()  # and the access_token query parameter (Envoy's
    from_cookies: tuple[str, ...] = ()  # and Istio's default)
    output_payload_to_header: str = ""  # base64url of the payload, to this header
    output_claim_to_headers: tuple[tuple[str, str], ...] = ()  # (header, claim)
    forward_original_token: bool = False  # else the token is removed before the app
    field: str = ""  # spec.jwtRules[<i>]


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestAuthentication:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels = ()  # empty: namespace-wide (mesh-wide in the root namespace)
    rules: tuple[JwtRule, ...] = ()
    targets_other_proxies: bool = False  # targetRef(s): gateways and waypoints only
    lines: Lines = field(default=(), repr=False)

    def line_of(self, path: str) -> int:
        return _line(self.lines, path, self.ref.line)


def request_authentications_for(
    policies: Iterable[RequestAuthentication],
    *,
    root_namespace: str,
    namespace: str,
    labels: Labels,
) -> tuple[RequestAuthentication, ...]:
    """Every RequestAuthentication that applies to a workload, by (namespace, name)."""
    out = []
    for p in sorted(policies, key=lambda p: (p.namespace, p.name)):
        if p.targets_other_proxies:
            continue
        if not p.selector:
            if p.namespace in (root_namespace, namespace):
                out.append(p)
        elif p.namespace == namespace and _matches(p.selector, labels):
            out.append(p)
    return tuple(out)


def jwt_issuers(policies: Iterable[RequestAuthentication]) -> tuple[str, ...]:
    """The issuers whose tokens the policies accept, sorted, once each."""
    return tuple(sorted({r.issuer for p in policies for r in p.rules}))


# -- AuthorizationPolicy -------------------------------------------------------------


class AuthzAction(StrEnum):
    ALLOW = "ALLOW"
    DENY = "DENY"
    AUDIT = "AUDIT"
    CUSTOM = "CUSTOM"


class Attribute(StrEnum):
    """What a condition tests. `from`, `to` and `when` all reduce to these."""

    # the peer: Envoy RBAC principals
    SOURCE_PRINCIPAL = "source.principal"
    SOURCE_NAMESPACE = "source.namespace"
    SOURCE_SERVICE_ACCOUNT = "source.serviceAccount"
    SOURCE_IP = "source.ip"
    REMOTE_IP = "remote.ip"
    REQUEST_PRINCIPAL = "request.auth.principal"
    REQUEST_AUDIENCES = "request.auth.audiences"
    REQUEST_PRESENTER = "request.auth.presenter"
    REQUEST_CLAIMS = "request.auth.claims"  # Condition.key: the claim
    REQUEST_HEADERS = "request.headers"  # Condition.key: the header
    # the request: Envoy RBAC permissions
    HOST = "request.host"  # to.operation.hosts
    METHOD = "request.method"  # to.operation.methods
    PATH = "request.path"  # to.operation.paths
    DESTINATION_IP = "destination.ip"
    DESTINATION_PORT = "destination.port"  # also to.operation.ports
    CONNECTION_SNI = "connection.sni"
    ENVOY_FILTER = "experimental.envoy.filters"  # Condition.key: the rest of the key

    @property
    def http_only(self) -> bool:
        """Only an HTTP request has it; a TCP connection cannot be tested for it."""
        return self in _HTTP_ONLY

    @property
    def needs_jwt(self) -> bool:
        """Set only by JWT authentication (RequestAuthentication): read from the payload of
        the validated token."""
        return self in _JWT

    @property
    def about_peer(self) -> bool:
        """Tested on the peer (an RBAC principal) rather than the request (a permission)."""
        return self in _PEER


_JWT = frozenset(
    {
        Attribute.REQUEST_PRINCIPAL,
        Attribute.REQUEST_AUDIENCES,
        Attribute.REQUEST_PRESENTER,
        Attribute.REQUEST_CLAIMS,
    }
)
_HTTP_ONLY = _JWT | {Attribute.REQUEST_HEADERS, Attribute.HOST, Attribute.METHOD, Attribute.PATH}
_PEER = _JWT | {
    Attribute.SOURCE_PRINCIPAL,
    Attribute.SOURCE_NAMESPACE,
    Attribute.SOURCE_SERVICE_ACCOUNT,
    Attribute.SOURCE_IP,
    Attribute.REMOTE_IP,
    Attribute.REQUEST_HEADERS,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Condition:
    """One field of a rule: any of `values` matches, and none of `not_values`."""

    attribute: Attribute
    values: tuple[str, ...] = ()
    not_values: tuple[str, ...] = ()
    key: str = ""  # header or claim name; for ENVOY_FILTER the key after the prefix
    field: str = ""  # where it is written, e.g. spec.rules[0].to[0].operation.methods


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthzRule:
    """Matches when one `from` matches (or there is none), one `to` matches (or there is
    none) and every `when` condition holds."""

    sources: tuple[tuple[Condition, ...], ...] = ()  # each `from` entry: all must hold
    operations: tuple[tuple[Condition, ...], ...] = ()  # each `to` entry: all must hold
    when: tuple[Condition, ...] = ()
    field: str = ""  # spec.rules[<i>]

    def conditions(self) -> Iterable[Condition]:
        for group in (*self.sources, *self.operations, self.when):
            yield from group


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthorizationPolicy:
    ref: SourceRef
    name: str
    namespace: str
    action: AuthzAction = AuthzAction.ALLOW
    selector: Labels = ()  # empty: every workload of the namespace (of the mesh: root ns)
    rules: tuple[AuthzRule, ...] = ()  # none: ALLOW allows nothing, DENY denies nothing
    targets_other_proxies: bool = False  # targetRef(s): for gateways/waypoints, not sidecars
    provider: str = ""  # CUSTOM
    dry_run: bool = False  # annotation istio.io/dry-run: evaluated, logged, not enforced
    lines: Lines = field(default=(), repr=False)

    def line_of(self, path: str) -> int:
        return _line(self.lines, path, self.ref.line)


def authorization_policies_for(
    policies: Iterable[AuthorizationPolicy],
    *,
    root_namespace: str,
    namespace: str,
    labels: Labels,
) -> tuple[AuthorizationPolicy, ...]:
    """The policies that apply to a workload's sidecar, by (namespace, name)."""
    return tuple(
        p
        for p in sorted(policies, key=lambda p: (p.namespace, p.name))
        if p.namespace in (root_namespace, namespace)
        and not p.targets_other_proxies
        and (not p.selector or _matches(p.selector, labels))
    )
