"""External authorization: a MeshConfig `envoyExtAuthzHttp` / `envoyExtAuthzGrpc`
provider -> Envoy's `ext_authz` filter and the authorizer's cluster.

AuthorizationPolicies with ``action: CUSTOM`` name the provider. As Istio
(istio/istio pilot/pkg/security/authz/builder/extauthz.go), only the requests
their rules match are sent to the authorizer: the rules go into an RBAC
filter's *shadow* rules (stat prefix ``istio_ext_authz_``, policy names
prefixed ``istio-ext-authz-``), which marks a matching request in dynamic
metadata without deciding anything; the ext_authz filter that follows is
enabled only for requests so marked (`filter_enabled_metadata`). HTTP ports
use the HTTP filters, TCP ports the network filters (a gRPC provider only:
Envoy checks a TCP connection over gRPC alone).

The authorizer is reached through ``extauthz|<provider>`` (its `service`
resolved by DNS, or an IP), over HTTP/2 for gRPC providers. Istio's defaults:
a 600 s timeout, `failOpen` false, `statusOnError` 403.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2, http_uri_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2 as http_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as network_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.type.matcher.v3 import metadata_pb2, string_pb2, value_pb2
from envoy.type.v3 import http_status_pb2

from legation.model.meshconfig import ExtAuthzProvider
from legation.translators.common import fractional_seconds, host_cluster, pack

HTTP_FILTER = "envoy.filters.http.ext_authz"
NETWORK_FILTER = "envoy.filters.network.ext_authz"
STAT_PREFIX = "istio_ext_authz_"  # the shadow RBAC's: its metadata keys start with it
POLICY_PREFIX = "istio-ext-authz-"  # the shadow RBAC's policy names
HTTP_RBAC_METADATA = "envoy.filters.http.rbac"
NETWORK_RBAC_METADATA = "envoy.filters.network.rbac"


def cluster_name(provider: ExtAuthzProvider) -> str:
    return f"extauthz|{provider.name}"


def http_filter(provider: ExtAuthzProvider) -> http_connection_manager_pb2.HttpFilter:
    config = http_pb2.ExtAuthz(
        transport_api_version=config_source_pb2.V3,
        failure_mode_allow=provider.fail_open,
        status_on_error=http_status_pb2.HttpStatus(
            code=provider.status_on_error),  # type: ignore[arg-type]
        filter_enabled_metadata=_enabled(HTTP_RBAC_METADATA),
    )
    if provider.grpc:
        config.grpc_service.CopyFrom(_grpc_service(provider))
    else:
        service = config.http_service
        service.server_uri.CopyFrom(http_uri_pb2.HttpUri(
            uri=f"http://{provider.service}", cluster=cluster_name(provider),
            timeout=fractional_seconds(provider.timeout_s)))
        service.path_prefix = provider.path_prefix
        for name, value in provider.include_additional_headers:
            service.authorization_request.headers_to_add.add(key=name, value=value)
        _patterns(config.allowed_headers, provider.include_request_headers)
        response = service.authorization_response
        _patterns(response.allowed_upstream_headers, provider.headers_to_upstream_on_allow)
        _patterns(response.allowed_client_headers, provider.headers_to_downstream_on_deny)
        _patterns(response.allowed_client_headers_on_success,
                  provider.headers_to_downstream_on_allow)
    if provider.body_max_bytes:
        config.with_request_body.CopyFrom(http_pb2.BufferSettings(
            max_request_bytes=provider.body_max_bytes,
            allow_partial_message=provider.body_allow_partial,
            pack_as_bytes=provider.body_as_bytes))
    return http_connection_manager_pb2.HttpFilter(name=HTTP_FILTER, typed_config=pack(config))


def network_filter(provider: ExtAuthzProvider) -> listener_components_pb2.Filter:
    """The TCP check (gRPC providers only; the caller reports HTTP ones)."""
    config = network_pb2.ExtAuthz(
        stat_prefix=STAT_PREFIX.rstrip("_"),
        grpc_service=_grpc_service(provider),
        failure_mode_allow=provider.fail_open,
        transport_api_version=config_source_pb2.V3,
        filter_enabled_metadata=_enabled(NETWORK_RBAC_METADATA),
    )
    return listener_components_pb2.Filter(name=NETWORK_FILTER, typed_config=pack(config))


def cluster(provider: ExtAuthzProvider) -> cluster_pb2.Cluster:
    return host_cluster(cluster_name(provider), provider.service, provider.port,
                        grpc=provider.grpc)


def _grpc_service(provider: ExtAuthzProvider) -> grpc_service_pb2.GrpcService:
    return grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
            cluster_name=cluster_name(provider), authority=provider.service),
        timeout=fractional_seconds(provider.timeout_s))


def _enabled(namespace: str) -> metadata_pb2.MetadataMatcher:
    """The request matched a CUSTOM rule: the shadow RBAC named its policy."""
    return metadata_pb2.MetadataMatcher(
        filter=namespace,
        path=[metadata_pb2.MetadataMatcher.PathSegment(
            key=f"{STAT_PREFIX}shadow_effective_policy_id")],
        value=value_pb2.ValueMatcher(string_match=string_pb2.StringMatcher(
            prefix=POLICY_PREFIX)))


def _patterns(out: object, patterns: tuple[str, ...]) -> None:
    """Istio's header patterns: exact, ``prefix*``, ``*suffix``; case-insensitive."""
    for p in patterns:
        if p.endswith("*") and len(p) > 1:
            m = string_pb2.StringMatcher(prefix=p[:-1], ignore_case=True)
        elif p.startswith("*") and len(p) > 1:
            m = string_pb2.StringMatcher(suffix=p[1:], ignore_case=True)
        else:
            m = string_pb2.StringMatcher(exact=p, ignore_case=True)
        out.patterns.append(m)  # type: ignore[attr-defined]
