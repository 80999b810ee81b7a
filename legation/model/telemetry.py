"""Access logging: Istio's Telemetry API and MeshConfig, resolved per workload.

Istio's rules (istio/api telemetry/v1alpha1/telemetry.proto; "Telemetry API"
docs): a Telemetry in the root namespace without a selector applies
mesh-wide, one in a namespace without a selector to that namespace, one with
a `selector` to the matching workloads of its namespace; the most specific
one that configures access logging decides (for the direction it names:
`match.mode` CLIENT = outbound, SERVER = inbound, default both). Its
`providers` name MeshConfig `extensionProviders` (or the built-in `envoy`:
stdout, Istio's default text format); none listed: MeshConfig
`defaultProviders.accessLogging`; `disabled: true` turns logging off;
`filter.expression` is CEL, evaluated by Envoy. With no Telemetry at all,
MeshConfig `accessLogFile` (with `accessLogEncoding` and `accessLogFormat`)
and `defaultProviders.accessLogging` apply, as in Istio.

Tracing resolves the same way (`tracing[]`: providers from MeshConfig
`opentelemetry` (OTLP over gRPC) or `zipkin` extension providers, else
`defaultProviders.tracing`; `randomSamplingPercentage`, default 1%;
`customTags` literal / header / environment; `disableSpanReporting`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from legation.model.diagnostics import SourceRef
from legation.model.labels import Labels, selector_matches


class LogMode(StrEnum):
    CLIENT = "CLIENT"  # outbound: the proxy is the client
    SERVER = "SERVER"  # inbound
    CLIENT_AND_SERVER = "CLIENT_AND_SERVER"

    def covers(self, mode: LogMode) -> bool:
        return self is LogMode.CLIENT_AND_SERVER or self is mode


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessLogging:
    """One `accessLogging[]` entry of a Telemetry."""

    providers: tuple[str, ...] = ()  # () : MeshConfig defaultProviders.accessLogging
    disabled: bool = False
    filter: str = ""  # CEL
    mode: LogMode = LogMode.CLIENT_AND_SERVER


@dataclass(frozen=True, slots=True, kw_only=True)
class CustomTag:
    """A span tag: a literal, a request header's value, or an environment variable's."""

    name: str
    kind: str  # "literal", "header", "environment"
    value: str  # the literal, the header name or the variable name
    default: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Tracing:
    """One `tracing[]` entry of a Telemetry."""

    providers: tuple[str, ...] = ()  # () : MeshConfig defaultProviders.tracing
    sampling: float | None = None  # randomSamplingPercentage; None : Istio's 1%
    disable_span_reporting: bool = False
    custom_tags: tuple[CustomTag, ...] = ()
    mode: LogMode = LogMode.CLIENT_AND_SERVER


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricOverride:
    """One `metrics[].overrides[]` entry: which Istio metric, which side, disabled or not
    (tag overrides are reported, not applied: stock Envoy's stats take tags from stat
    names, not from request attributes)."""

    metric: str  # Istio's name (REQUEST_COUNT, ...) or ALL_METRICS
    mode: LogMode = LogMode.CLIENT_AND_SERVER
    disabled: bool | None = True  # None: the override only adds tags
    tags: tuple[tuple[str, str], ...] = ()  # tagOverrides whose value is a string literal


@dataclass(frozen=True, slots=True, kw_only=True)
class Telemetry:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels = ()  # matchLabels; () : the whole namespace
    access_logging: tuple[AccessLogging, ...] = ()
    tracing: tuple[Tracing, ...] = ()
    metrics: tuple[MetricOverride, ...] = ()


# The Envoy stats each Istio metric is derived from (deploy/prometheus/istio-rules.yaml):
# a disabled metric drops them from the proxy's stats (Envoy `stats_matcher`, set in the
# bootstrap), outbound clusters for CLIENT, inbound ones for SERVER.
METRIC_STATS: dict[str, str] = {
    "REQUEST_COUNT": r"upstream_rq_(?:\d{3}|\dxx)",
    "REQUEST_DURATION": r"upstream_rq_time",
    "TCP_SENT_BYTES": r"upstream_cx_tx_bytes_total",
    "TCP_RECEIVED_BYTES": r"upstream_cx_rx_bytes_total",
    "TCP_OPENED_CONNECTIONS": r"upstream_cx_total",
    "TCP_CLOSED_CONNECTIONS": r"upstream_cx_destroy",
}
# Istio metrics no stat of a stock Envoy feeds here: nothing to disable
NOT_DERIVED = ("REQUEST_SIZE", "RESPONSE_SIZE", "GRPC_REQUEST_MESSAGES",
               "GRPC_RESPONSE_MESSAGES")
ALL_METRICS = "ALL_METRICS"


def fixed_tags(telemetries: tuple[Telemetry, ...], *, namespace: str, labels: Labels,
               root_namespace: str) -> tuple[tuple[str, str], ...]:
    """The literal tags a workload's overrides add (a later level wins per name). Stock
    Envoy tags stats from their names, so a fixed tag goes on every stat of the proxy."""
    tags: dict[str, str] = {}
    for t in reversed(_by_precedence(telemetries, namespace=namespace, labels=labels,
                                     root_namespace=root_namespace)):
        for o in t.metrics:
            tags.update(o.tags)
    return tuple(sorted(tags.items()))


def disabled_stats(telemetries: tuple[Telemetry, ...], *, namespace: str, labels: Labels,
                   root_namespace: str) -> tuple[str, ...]:
    """The Envoy stat name patterns (RE2, full names) a workload's proxy must not keep:
    its metrics overrides from the mesh-wide, then namespace, then workload Telemetry,
    a later level's entry for a metric and side replacing an earlier one (Istio)."""
    state: dict[tuple[str, LogMode], bool] = {}
    levels = _by_precedence(telemetries, namespace=namespace, labels=labels,
                            root_namespace=root_namespace)
    for t in reversed(levels):  # mesh-wide first, the workload's last
        for o in t.metrics:
            metrics = list(METRIC_STATS) if o.metric == ALL_METRICS else [o.metric]
            sides = ([LogMode.CLIENT, LogMode.SERVER] if o.mode is LogMode.CLIENT_AND_SERVER
                     else [o.mode])
            if o.disabled is None:
                continue
            for m in metrics:
                for side in sides:
                    state[(m, side)] = o.disabled
    out = []
    for (metric, side), off in sorted(state.items()):
        if off and metric in METRIC_STATS:
            direction = "outbound" if side is LogMode.CLIENT else "inbound"
            out.append(rf"^cluster\.{direction}\|.*\.{METRIC_STATS[metric]}$")
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingProvider:
    """MeshConfig `extensionProviders[].opentelemetry` (OTLP/gRPC) or `.zipkin`."""

    name: str
    kind: str  # "opentelemetry" or "zipkin"
    service: str  # host name or IP of the collector
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingSetup:
    """How one proxy traces one direction: where spans go, which requests, tagged how."""

    provider: TracingProvider
    sampling: float = 1.0  # percent
    custom_tags: tuple[CustomTag, ...] = ()


DEFAULT_SAMPLING = 1.0  # Istio's default random sampling, percent


class LogEncoding(StrEnum):
    TEXT = "TEXT"
    JSON = "JSON"


@dataclass(frozen=True, slots=True, kw_only=True)
class LogProvider:
    """MeshConfig `extensionProviders[].envoyFileAccessLog` (or the built-in `envoy`), or
    `.envoyOtelAls`: log records over OTLP/gRPC to a collector's `service`:`port`."""

    name: str
    path: str = "/dev/stdout"
    text_format: str = ""  # "" : Istio's default text line
    json_labels: tuple[tuple[str, str], ...] = ()  # label -> Envoy command (JSON lines)
    otel: bool = False  # envoyOtelAls: the fields below, not the path
    service: str = ""
    port: int = 0
    log_name: str = ""  # OTLP's log name; "" : the provider's name

    @property
    def encoding(self) -> LogEncoding:
        return LogEncoding.JSON if self.json_labels else LogEncoding.TEXT


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSink:
    """Where one proxy writes an access log line, and which requests it keeps."""

    provider: LogProvider
    filter: str = ""


def applicable(telemetries: tuple[Telemetry, ...], *, namespace: str, labels: Labels,
               root_namespace: str, mode: LogMode) -> AccessLogging | None:
    """The accessLogging entry that decides for a workload and a direction: from its
    most specific Telemetry with one for that direction (see the module docstring);
    None when no Telemetry says anything (MeshConfig decides)."""
    for t in _by_precedence(telemetries, namespace=namespace, labels=labels,
                            root_namespace=root_namespace):
        for entry in t.access_logging:
            if entry.mode.covers(mode):
                return entry
    return None


def applicable_tracing(telemetries: tuple[Telemetry, ...], *, namespace: str, labels: Labels,
                       root_namespace: str, mode: LogMode) -> Tracing | None:
    """`applicable`, for the `tracing` entries."""
    for t in _by_precedence(telemetries, namespace=namespace, labels=labels,
                            root_namespace=root_namespace):
        for entry in t.tracing:
            if entry.mode.covers(mode):
                return entry
    return None


def _by_precedence(telemetries: tuple[Telemetry, ...], *, namespace: str, labels: Labels,
                   root_namespace: str) -> list[Telemetry]:
    """Workload-scoped, then namespace-wide, then mesh-wide; by name within a level."""
    levels = (
        [t for t in telemetries if t.namespace == namespace and t.selector
         and selector_matches(t.selector, labels)],
        [t for t in telemetries if t.namespace == namespace and not t.selector],
        [t for t in telemetries if t.namespace == root_namespace and not t.selector],
    )
    # Istio: the oldest first within a level; here by name (no creation times in files)
    return [t for level in levels for t in sorted(level, key=lambda t: t.name)]
