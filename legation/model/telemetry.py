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
class Telemetry:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels = ()  # matchLabels; () : the whole namespace
    access_logging: tuple[AccessLogging, ...] = ()


class LogEncoding(StrEnum):
    TEXT = "TEXT"
    JSON = "JSON"


@dataclass(frozen=True, slots=True, kw_only=True)
class FileLogProvider:
    """MeshConfig `extensionProviders[].envoyFileAccessLog` (or the built-in `envoy`)."""

    name: str
    path: str = "/dev/stdout"
    text_format: str = ""  # "" : Istio's default text line
    json_labels: tuple[tuple[str, str], ...] = ()  # label -> Envoy command (JSON lines)

    @property
    def encoding(self) -> LogEncoding:
        return LogEncoding.JSON if self.json_labels else LogEncoding.TEXT


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSink:
    """Where one proxy writes an access log line, and which requests it keeps."""

    provider: FileLogProvider
    filter: str = ""


def applicable(telemetries: tuple[Telemetry, ...], *, namespace: str, labels: Labels,
               root_namespace: str, mode: LogMode) -> AccessLogging | None:
    """The accessLogging entry that decides for a workload and a direction: from its
    most specific Telemetry with one for that direction (see the module docstring);
    None when no Telemetry says anything (MeshConfig decides)."""
    levels = (
        [t for t in telemetries if t.namespace == namespace and t.selector
         and selector_matches(t.selector, labels)],
        [t for t in telemetries if t.namespace == namespace and not t.selector],
        [t for t in telemetries if t.namespace == root_namespace and not t.selector],
    )
    for level in levels:
        for t in sorted(level, key=lambda t: t.name):  # Istio: the oldest; here by name
            for entry in t.access_logging:
                if entry.mode.covers(mode):
                    return entry
    return None
