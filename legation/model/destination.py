"""DestinationRule: what happens to traffic for a host after routing, as typed values.

Produced by `legation.sources.convert.destinationrule` (every per-object
check there); read by `legation.translators.trafficpolicy` and friends.
Durations are whole milliseconds, as in traffic.py.

`effective_policy` implements Istio's inheritance rules, which translators
must not re-derive:

- a subset's `trafficPolicy` overrides the destination-level one section by
  section (loadBalancer, connectionPool, outlierDetection, tls): "Settings
  specified at the subset level will override the corresponding settings
  specified at the DestinationRule level" (istio/api destination_rule.proto,
  Subset.traffic_policy);
- `portLevelSettings` for the port replace ALL four sections, and what they
  omit falls back to the defaults, not to the destination level: "Traffic
  settings specified at the destination-level will not be inherited when
  overridden by port-level settings, i.e. default values will be applied to
  fields omitted in port-level traffic policies" (TrafficPolicy.port_level_settings).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from legation.model.diagnostics import SourceRef
from legation.model.traffic import Labels, Lines, line_of


class SimpleLb(StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    LEAST_CONN = "LEAST_CONN"  # deprecated alias of LEAST_REQUEST
    RANDOM = "RANDOM"
    PASSTHROUGH = "PASSTHROUGH"
    ROUND_ROBIN = "ROUND_ROBIN"
    LEAST_REQUEST = "LEAST_REQUEST"


class HashKey(StrEnum):
    HEADER = "httpHeaderName"
    COOKIE = "httpCookie"
    SOURCE_IP = "useSourceIp"
    QUERY_PARAMETER = "httpQueryParameterName"


class HashAlgorithm(StrEnum):
    RING_HASH = "ringHash"  # Istio's default
    MAGLEV = "maglev"


@dataclass(frozen=True, slots=True, kw_only=True)
class HashCookie:
    name: str
    path: str = ""
    ttl_ms: int | None = None  # None: never generate; 0: a session cookie


@dataclass(frozen=True, slots=True, kw_only=True)
class ConsistentHash:
    key: HashKey
    header_name: str = ""
    cookie: HashCookie | None = None
    query_parameter: str = ""
    algorithm: HashAlgorithm = HashAlgorithm.RING_HASH
    minimum_ring_size: int = 0  # 0: Istio's default of 1024
    table_size: int = 0  # maglev; 0: Envoy's default of 65537


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityDistribute:
    source: str  # `from`: region/zone/subzone with terminal wildcards
    to: tuple[tuple[str, int], ...]  # locality pattern -> weight


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityFailover:
    source: str  # region
    to: str  # region


@dataclass(frozen=True, slots=True, kw_only=True)
class LocalityLbSetting:
    distribute: tuple[LocalityDistribute, ...] = ()
    failover: tuple[LocalityFailover, ...] = ()
    failover_priority: tuple[str, ...] = ()
    enabled: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadBalancer:
    simple: SimpleLb | None = None
    consistent_hash: ConsistentHash | None = None
    locality: LocalityLbSetting | None = None
    warmup_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpKeepalive:
    probes: int | None = None
    time_ms: int | None = None
    interval_ms: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpPool:
    max_connections: int | None = None
    connect_timeout_ms: int | None = None
    keepalive: TcpKeepalive | None = None
    max_connection_duration_ms: int | None = None
    idle_timeout_ms: int | None = None


class H2UpgradePolicy(StrEnum):
    DEFAULT = "DEFAULT"
    DO_NOT_UPGRADE = "DO_NOT_UPGRADE"
    UPGRADE = "UPGRADE"


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPool:
    http1_max_pending_requests: int | None = None
    http2_max_requests: int | None = None
    max_requests_per_connection: int | None = None
    max_retries: int | None = None
    idle_timeout_ms: int | None = None
    h2_upgrade_policy: H2UpgradePolicy = H2UpgradePolicy.DEFAULT
    use_client_protocol: bool = False
    max_concurrent_streams: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionPool:
    tcp: TcpPool | None = None
    http: HttpPool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetection:
    consecutive_5xx_errors: int | None = None
    consecutive_gateway_errors: int | None = None
    consecutive_local_origin_failures: int | None = None
    split_external_local_origin_errors: bool = False
    interval_ms: int | None = None
    base_ejection_time_ms: int | None = None
    max_ejection_percent: int | None = None
    min_health_percent: int | None = None


class TlsMode(StrEnum):
    DISABLE = "DISABLE"
    SIMPLE = "SIMPLE"
    MUTUAL = "MUTUAL"
    ISTIO_MUTUAL = "ISTIO_MUTUAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientTls:
    mode: TlsMode = TlsMode.DISABLE
    client_certificate: str = ""
    private_key: str = ""
    ca_certificates: str = ""
    ca_crl: str = ""
    credential_name: str = ""
    subject_alt_names: tuple[str, ...] = ()
    sni: str = ""
    insecure_skip_verify: bool | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortPolicy:
    """The four sections of a traffic policy: what actually shapes one cluster."""

    load_balancer: LoadBalancer | None = None
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTls | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PortTrafficPolicy:
    port: int
    policy: PortPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficPolicy:
    policy: PortPolicy = PortPolicy()
    port_level: tuple[PortTrafficPolicy, ...] = ()

    def for_port(self, port: int) -> PortPolicy:
        """Port-level settings replace the destination level entirely (module docstring)."""
        for p in self.port_level:
            if p.port == port:
                return p.policy
        return self.policy


@dataclass(frozen=True, slots=True, kw_only=True)
class Subset:
    name: str
    labels: Labels = ()
    traffic_policy: TrafficPolicy | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DestinationRule:
    ref: SourceRef
    name: str
    namespace: str
    host: str  # as written, lowercased
    traffic_policy: TrafficPolicy | None = None
    subsets: tuple[Subset, ...] = ()
    export_to: tuple[str, ...] = ()
    workload_selector: Labels = ()
    lines: Lines = field(default=(), repr=False)

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.subsets if s.name == name), None)

    def line_of(self, path: str) -> int:
        return line_of(self.lines, path, self.ref.line)


def effective_policy(rule: DestinationRule | None, subset: str, port: int) -> PortPolicy:
    """The policy of cluster (host, port, subset) under Istio's inheritance rules."""
    if rule is None:
        return PortPolicy()
    top = rule.traffic_policy.for_port(port) if rule.traffic_policy else PortPolicy()
    found = rule.subset(subset) if subset else None
    if found is None or found.traffic_policy is None:
        return top
    own = found.traffic_policy
    if any(p.port == port for p in own.port_level):
        return own.for_port(port)
    sub = own.policy
    return PortPolicy(
        load_balancer=sub.load_balancer or top.load_balancer,
        connection_pool=sub.connection_pool or top.connection_pool,
        outlier_detection=sub.outlier_detection or top.outlier_detection,
        tls=sub.tls or top.tls,
    )
