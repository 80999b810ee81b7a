"""MeshConfig: the mesh-wide settings of Istio's schema that Legation applies.

Read from `legation serve --mesh-config FILE` or from the ConfigMap ``istio``
(key ``mesh``) in the root namespace (sources/convert/meshconfig.py); the
file wins when both are given. Applied now:

- access logging: ``accessLogFile``, ``accessLogEncoding``, ``accessLogFormat``,
  ``extensionProviders[].envoyFileAccessLog``, ``defaultProviders.accessLogging``
  (model/telemetry.py);
- external authorization: ``extensionProviders[].envoyExtAuthzHttp`` and
  ``.envoyExtAuthzGrpc``, the providers AuthorizationPolicies with
  ``action: CUSTOM`` name (translators/extauthz.py);
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
from legation.model.telemetry import LogEncoding, LogProvider, TracingProvider


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtAuthzProvider:
    """MeshConfig `extensionProviders[].envoyExtAuthzHttp` or `.envoyExtAuthzGrpc`
    (istio/api mesh/v1alpha1/config.proto), defaults as Istio's."""

    name: str
    grpc: bool  # envoyExtAuthzGrpc; else envoyExtAuthzHttp
    service: str  # host name or IP of the authorizer
    port: int
    timeout_s: float = 600.0
    fail_open: bool = False  # allow the request when the authorizer cannot be reached
    status_on_error: int = 403  # the status sent when it cannot (and not fail_open)
    path_prefix: str = ""  # HTTP: prepended to the request path of the check
    include_request_headers: tuple[str, ...] = ()  # HTTP: headers sent in the check (patterns)
    include_additional_headers: tuple[tuple[str, str], ...] = ()  # HTTP: added to the check
    headers_to_upstream_on_allow: tuple[str, ...] = ()  # HTTP: from the check's response
    headers_to_downstream_on_allow: tuple[str, ...] = ()
    headers_to_downstream_on_deny: tuple[str, ...] = ()
    body_max_bytes: int = 0  # includeRequestBodyInCheck: 0 sends no body
    body_allow_partial: bool = False
    body_as_bytes: bool = False  # gRPC: the body as raw bytes


class OutboundPolicy(StrEnum):
    ALLOW_ANY = "ALLOW_ANY"
    REGISTRY_ONLY = "REGISTRY_ONLY"


MESH_CONFIG_KIND = "MeshConfig"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitProvider:
    """MeshConfig `extensionProviders[].envoyRateLimit` (a Legation extension: Istio has
    no rate limit provider): a service speaking envoy.service.ratelimit.v3 over gRPC."""

    name: str
    service: str
    port: int
    timeout_s: float = 0.02  # Envoy's default
    fail_open: bool = True  # Envoy's default: a service that fails lets requests through


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
    log_providers: tuple[LogProvider, ...] = ()
    default_log_providers: tuple[str, ...] = ()
    tracing_providers: tuple[TracingProvider, ...] = ()
    default_tracing_providers: tuple[str, ...] = ()
    authz_providers: tuple[ExtAuthzProvider, ...] = ()
    rate_limit_providers: tuple[RateLimitProvider, ...] = ()

    def authz_provider(self, name: str) -> ExtAuthzProvider | None:
        return next((p for p in self.authz_providers if p.name == name), None)

    def rate_limit_provider(self, name: str) -> RateLimitProvider | None:
        return next((p for p in self.rate_limit_providers if p.name == name), None)

    @property
    def allow_any(self) -> bool:
        return self.outbound_policy is OutboundPolicy.ALLOW_ANY
