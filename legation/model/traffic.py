"""VirtualService: Istio's HTTP and TCP routing rules, as typed values.

Produced by `legation.sources.convert.virtualservice`, which does every
per-object check (schema, durations, RE2 regexes, weights, unreachable
rules); cross-object checks (subsets, hosts, conflicts) are in `validate.py`;
`legation.translators.httproute` turns these into Envoy routes.

Durations are whole milliseconds (Istio accepts nothing finer: "only
durations to ms precision are supported", istio/istio
pkg/config/validation ValidateDuration); percentages are floats 0-100.
Hosts are kept as written: resolving a short name needs the mesh's DNS
domain and its services (`MeshSnapshot.qualify_host`).

Field paths and their lines are kept (`lines`) so that a cross-object
finding can point at the exact line of, say, `spec.http[0].route[1]`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from legation.model.diagnostics import SourceRef
from legation.model.ratelimit import LocalRateLimit

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs; as mesh.Labels
MESH_GATEWAY = "mesh"  # the reserved gateway name meaning "every sidecar"

Lines = tuple[tuple[str, int], ...]  # field path -> line, sorted by path


class MatchKind(StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"


@dataclass(frozen=True, slots=True, kw_only=True)
class StringMatch:
    kind: MatchKind
    value: str


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyMatch:
    """A header or query parameter condition; `match` None tests presence only."""

    name: str
    match: StringMatch | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpMatch:
    """One `match` block: every condition must hold (AND)."""

    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: tuple[KeyMatch, ...] = ()
    without_headers: tuple[KeyMatch, ...] = ()
    query_params: tuple[KeyMatch, ...] = ()
    port: int = 0
    source_labels: Labels = ()
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()
    ignore_uri_case: bool = False
    stat_prefix: str = ""

    @property
    def matches_everything(self) -> bool:
        """True when this block matches every request from every client (a catch-all)."""
        uri_all = self.uri is None or (
            (self.uri.kind is MatchKind.PREFIX and self.uri.value == "/")
            or (self.uri.kind is MatchKind.REGEX and self.uri.value == ".*")
        )
        return uri_all and not (
            self.scheme or self.method or self.authority or self.headers
            or self.without_headers or self.query_params or self.port
            or self.source_labels or self.source_namespace or self.gateways
        )

    @property
    def depends_on_source(self) -> bool:
        return bool(self.source_labels)


@dataclass(frozen=True, slots=True, kw_only=True)
class Destination:
    host: str  # as written: short name, name.ns, FQDN or a non-mesh host
    subset: str = ""
    port: int = 0  # 0: the service's only port, else the port the request came in on


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderOperations:
    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.set or self.add or self.remove)


@dataclass(frozen=True, slots=True, kw_only=True)
class Headers:
    request: HeaderOperations = HeaderOperations()
    response: HeaderOperations = HeaderOperations()

    def __bool__(self) -> bool:
        return bool(self.request or self.response)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteDestination:
    destination: Destination
    weight: int = 0  # 0 with a single destination means "all of it"
    headers: Headers = Headers()


@dataclass(frozen=True, slots=True, kw_only=True)
class Retry:
    attempts: int  # 0 disables retries for the route
    per_try_timeout_ms: int | None = None
    retry_on: tuple[str, ...] = ()  # Envoy retry conditions, as written
    retriable_status_codes: tuple[int, ...] = ()  # the numbers found in retryOn
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultDelay:
    fixed_delay_ms: int
    percentage: float = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultAbort:
    http_status: int = 0
    grpc_status: int | None = None  # gRPC status code number
    percentage: float = 100.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Fault:
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Mirror:
    destination: Destination
    percentage: float = 100.0
    path: str = ""  # field path of the destination: `...mirror` or `...mirrors[0].destination`


@dataclass(frozen=True, slots=True, kw_only=True)
class RegexRewrite:
    match: str
    rewrite: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Rewrite:
    uri: str = ""
    authority: str = ""
    uri_regex: RegexRewrite | None = None


class DerivePort(StrEnum):
    FROM_PROTOCOL_DEFAULT = "FROM_PROTOCOL_DEFAULT"
    FROM_REQUEST_PORT = "FROM_REQUEST_PORT"


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    uri: str = ""
    authority: str = ""
    port: int = 0
    derive_port: DerivePort | None = None
    scheme: str = ""
    code: int = 301


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectResponse:
    status: int
    body_string: str | None = None
    body_bytes: bytes | None = None


class UnmatchedPreflights(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    FORWARD = "FORWARD"
    IGNORE = "IGNORE"


@dataclass(frozen=True, slots=True, kw_only=True)
class CorsPolicy:
    allow_origins: tuple[StringMatch, ...] = ()
    allow_methods: tuple[str, ...] = ()
    allow_headers: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    max_age_ms: int | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: UnmatchedPreflights = UnmatchedPreflights.UNSPECIFIED


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRoute:
    """One `http[]` rule. Exactly one of route, redirect, direct_response is set."""

    index: int  # position in spec.http: names its field path in diagnostics
    name: str = ""
    match: tuple[HttpMatch, ...] = ()  # OR; empty matches everything
    route: tuple[RouteDestination, ...] = ()
    redirect: Redirect | None = None
    direct_response: DirectResponse | None = None
    rewrite: Rewrite | None = None
    timeout_ms: int | None = None  # None: no timeout (Istio's default)
    retries: Retry | None = None  # None: Istio's default retry policy
    fault: Fault | None = None
    mirrors: tuple[Mirror, ...] = ()  # `mirror` (+ mirrorPercentage) and `mirrors`
    cors: CorsPolicy | None = None
    headers: Headers = Headers()
    # ratelimit.legation.io/routes of its VirtualService (model/ratelimit.py)
    rate_limit: LocalRateLimit | None = None

    @property
    def path(self) -> str:
        return f"spec.http[{self.index}]"

    def destinations(self) -> Iterator[tuple[str, Destination]]:
        """(field path, destination) of every destination this rule names, mirrors included."""
        for i, rd in enumerate(self.route):
            yield f"{self.path}.route[{i}].destination", rd.destination
        for i, m in enumerate(self.mirrors):
            yield m.path or f"{self.path}.mirrors[{i}].destination", m.destination


@dataclass(frozen=True, slots=True, kw_only=True)
class L4Match:
    port: int = 0
    destination_subnets: tuple[str, ...] = ()
    source_labels: Labels = ()
    source_namespace: str = ""
    gateways: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpRoute:
    index: int
    match: tuple[L4Match, ...] = ()
    route: tuple[RouteDestination, ...] = ()

    @property
    def path(self) -> str:
        return f"spec.tcp[{self.index}]"

    def destinations(self) -> Iterator[tuple[str, Destination]]:
        return _destinations(self.path, self.route)


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsMatch(L4Match):
    sni_hosts: tuple[str, ...] = ()  # lowercase; `*.suffix` wildcards allowed


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsRoute:
    """One `tls[]` rule: TLS connections routed by SNI, not terminated (passthrough)."""

    index: int
    match: tuple[TlsMatch, ...] = ()
    route: tuple[RouteDestination, ...] = ()

    @property
    def path(self) -> str:
        return f"spec.tls[{self.index}]"

    def destinations(self) -> Iterator[tuple[str, Destination]]:
        return _destinations(self.path, self.route)


def _destinations(path: str, route: tuple[RouteDestination, ...]
                  ) -> Iterator[tuple[str, Destination]]:
    for i, rd in enumerate(route):
        yield f"{path}.route[{i}].destination", rd.destination


@dataclass(frozen=True, slots=True, kw_only=True)
class VirtualService:
    ref: SourceRef
    name: str
    namespace: str
    hosts: tuple[str, ...]  # as written, lowercased
    gateways: tuple[str, ...] = ()
    http: tuple[HttpRoute, ...] = ()
    tcp: tuple[TcpRoute, ...] = ()
    tls: tuple[TlsRoute, ...] = ()
    export_to: tuple[str, ...] = ()
    lines: Lines = field(default=(), repr=False)

    @property
    def applies_to_sidecars(self) -> bool:
        """Istio: no `gateways` means `mesh`; a list without `mesh` is for gateways only."""
        return not self.gateways or MESH_GATEWAY in self.gateways

    def visible_in(self, namespace: str) -> bool:
        """`exportTo`: empty or `*` everywhere, `.` its own namespace, else the listed ones."""
        if not self.export_to or "*" in self.export_to:
            return True
        if "." in self.export_to and namespace == self.namespace:
            return True
        return namespace in self.export_to

    def line_of(self, path: str) -> int:
        return line_of(self.lines, path, self.ref.line)

    def destinations(self) -> Iterator[tuple[str, Destination]]:
        for rule in self.http:
            yield from rule.destinations()
        for tcp in self.tcp:
            yield from tcp.destinations()
        for tls in self.tls:
            yield from tls.destinations()


def line_of(lines: Lines, path: str, default: int) -> int:
    """The line of `path` or of its nearest ancestor with a known line."""
    known = dict(lines)
    while path:
        if path in known:
            return known[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return default
