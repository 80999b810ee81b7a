"""Rate limits (model/ratelimit.py) -> Envoy's local and global rate limit HTTP filters.

Local: `envoy.filters.http.local_ratelimit` with a token bucket (`tokens` per
`fill_s`), enabled and enforced for every request, answering 429 with
``x-local-rate-limit: true`` (the header of Istio's published example). On a
workload's inbound HTTP ports (and a gateway's servers) the filter carries the
bucket; for VirtualService routes the HTTP connection manager has the filter
without one (it then does nothing, Envoy's default being 0% enabled) and each
limited route its own bucket in `typed_per_filter_config`.

Global: `envoy.filters.http.ratelimit` asking the provider's service
(``ratelimit|<provider>``, gRPC) with the filter's own `rate_limits` actions in
the annotation's order: `remote_address`, `header:<name>` (descriptor key: the
header name; a request without it has the entry left out), `path` (``:path``)
and `generic:<value>` (a `generic_key`). After authorization, so denied requests
spend no quota. Envoy's defaults otherwise: 20 ms, fail open.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, grpc_service_pb2
from envoy.config.ratelimit.v3 import rls_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import wrappers_pb2

from legation.model.meshconfig import RateLimitProvider
from legation.model.ratelimit import GlobalRateLimit, LocalRateLimit
from legation.translators.common import fractional_seconds, host_cluster, pack

LOCAL_FILTER = "envoy.filters.http.local_ratelimit"
GLOBAL_FILTER = "envoy.filters.http.ratelimit"
LIMITED_HEADER = "x-local-rate-limit"
_HUNDRED = percent_pb2.FractionalPercent(numerator=100,
                                         denominator=percent_pb2.FractionalPercent.HUNDRED)


def local_config(limit: LocalRateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    """A token bucket enabled and enforced for every request (a filter or a route's)."""
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix="http_local_rate_limiter",
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=limit.tokens,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=limit.tokens),
            fill_interval=fractional_seconds(limit.fill_s)),
        filter_enabled=base_pb2.RuntimeFractionalPercent(default_value=_HUNDRED),
        filter_enforced=base_pb2.RuntimeFractionalPercent(default_value=_HUNDRED),
        response_headers_to_add=[base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key=LIMITED_HEADER, value="true"),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD)])


def local_filter(limit: LocalRateLimit | None) -> http_connection_manager_pb2.HttpFilter:
    """The filter with `limit`'s bucket; None: the filter for per-route buckets only."""
    config = (local_config(limit) if limit is not None else
              local_rate_limit_pb2.LocalRateLimit(stat_prefix="http_local_rate_limiter"))
    return http_connection_manager_pb2.HttpFilter(name=LOCAL_FILTER, typed_config=pack(config))


def cluster_name(provider: RateLimitProvider) -> str:
    return f"ratelimit|{provider.name}"


def cluster(provider: RateLimitProvider) -> cluster_pb2.Cluster:
    return host_cluster(cluster_name(provider), provider.service, provider.port, grpc=True)


def global_filter(limit: GlobalRateLimit, provider: RateLimitProvider
                  ) -> http_connection_manager_pb2.HttpFilter:
    config = rate_limit_pb2.RateLimit(
        domain=limit.domain,
        timeout=fractional_seconds(provider.timeout_s),
        failure_mode_deny=not provider.fail_open,
        rate_limit_service=rls_pb2.RateLimitServiceConfig(
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=cluster_name(provider), authority=provider.service)),
            transport_api_version=config_source_pb2.V3),
        rate_limits=[route_components_pb2.RateLimit(
            actions=[_action(d) for d in limit.descriptors])],
    )
    return http_connection_manager_pb2.HttpFilter(name=GLOBAL_FILTER,
                                                  typed_config=pack(config))


def _action(descriptor: str) -> route_components_pb2.RateLimit.Action:
    action = route_components_pb2.RateLimit.Action
    kind, _, arg = descriptor.partition(":")
    if kind == "remote_address":
        return action(remote_address=action.RemoteAddress())
    if kind == "path":
        return action(request_headers=action.RequestHeaders(
            header_name=":path", descriptor_key="path"))
    if kind == "header":
        return action(request_headers=action.RequestHeaders(
            header_name=arg.strip(), descriptor_key=arg.strip().lower(), skip_if_absent=True))
    return action(generic_key=action.GenericKey(descriptor_value=arg.strip()))
