"""MeshConfig: the mesh-wide settings of Istio's schema that Legation applies.

Read from `legation serve --mesh-config FILE` or from the ConfigMap ``istio``
(key ``mesh``) in the root namespace (sources/convert/meshconfig.py); the
file wins when both are given. Applied now:

- access logging: ``accessLogFile``, ``accessLogEncoding``, ``accessLogFormat``,
  ``extensionProviders[].envoyFileAccessLog``, ``defaultProviders.accessLogging``
  (model/telemetry.py);
- ``outboundTrafficPolicy.mode`` (istio/api mesh/v1alpha1/config.proto):
  ALLOW_ANY, Istio's default, lets a sidecar reach hosts the mesh does not
  know (explicit mode through Envoy's dynamic forward proxy, transparent mode
  to the original destination); REGISTRY_ONLY refuses them (HTTP 502 with a
  body naming the host; raw TCP is closed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from legation.model.diagnostics import SourceRef
from legation.model.telemetry import FileLogProvider, LogEncoding, TracingProvider


class OutboundPolicy(StrEnum):
    ALLOW_ANY = "ALLOW_ANY"
    REGISTRY_ONLY = "REGISTRY_ONLY"


MESH_CONFIG_KIND = "MeshConfig"


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshConfig:
    ref: SourceRef = field(
        default_factory=lambda: SourceRef(kind=MESH_CONFIG_KIND, namespace="", name="mesh"))
    name: str = "mesh"
    namespace: str = ""  # "" from --mesh-config; the ConfigMap's namespace otherwise
    outbound_policy: OutboundPolicy = OutboundPolicy.ALLOW_ANY
    # access logging (model/telemetry.py): accessLogFile ("" : off), its encoding and
    # format; extensionProviders that are file access logs; defaultProviders.accessLogging
    access_log_file: str = ""
    access_log_encoding: LogEncoding = LogEncoding.TEXT
    access_log_format: str = ""
    log_providers: tuple[FileLogProvider, ...] = ()
    default_log_providers: tuple[str, ...] = ()
    tracing_providers: tuple[TracingProvider, ...] = ()
    default_tracing_providers: tuple[str, ...] = ()

    @property
    def allow_any(self) -> bool:
        return self.outbound_policy is OutboundPolicy.ALLOW_ANY
