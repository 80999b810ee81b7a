"""Envoy's dynamic forward proxy: requests go to the host they name, resolved by Envoy.

Used where no endpoint is known in advance: ServiceEntry hosts with
resolution NONE or DYNAMIC_DNS (model/serviceentry.py). A dynamic forward
proxy cluster has no endpoints of its own; the HTTP filter of the same name
resolves the request's ``:authority`` (host and port, port 80 when none,
443 when the cluster originates TLS) through a DNS cache and hands the
address to the cluster. Every such cluster and the filter must name the
same cache with the same settings (Envoy refuses two configurations of one
cache), so both are built here. The filter sits in every outbound HTTP
connection manager, just before the router: for a route to any other kind
of cluster it does nothing.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2,
)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

from legation.translators.common import DNS_LOOKUP_FAMILY, pack

FORWARD_PROXY_FILTER = "envoy.filters.http.dynamic_forward_proxy"
FORWARD_PROXY_CLUSTER_TYPE = "envoy.clusters.dynamic_forward_proxy"
DNS_CACHE = "dynamic_forward_proxy_cache_config"


def dns_cache() -> dns_cache_pb2.DnsCacheConfig:
    return dns_cache_pb2.DnsCacheConfig(name=DNS_CACHE, dns_lookup_family=DNS_LOOKUP_FAMILY)


def make_forward_proxy(cluster: cluster_pb2.Cluster) -> None:
    """Turn `cluster` into a dynamic forward proxy cluster (its own load balancer)."""
    cluster.cluster_type.name = FORWARD_PROXY_CLUSTER_TYPE
    cluster.cluster_type.typed_config.CopyFrom(
        pack(dfp_cluster_pb2.ClusterConfig(dns_cache_config=dns_cache())))
    cluster.lb_policy = cluster_pb2.Cluster.CLUSTER_PROVIDED
    for lb_config in ("least_request_lb_config", "round_robin_lb_config",
                      "ring_hash_lb_config", "maglev_lb_config"):
        cluster.ClearField(lb_config)  # type: ignore[arg-type]


def forward_proxy_filter() -> http_connection_manager_pb2.HttpFilter:
    return http_connection_manager_pb2.HttpFilter(
        name=FORWARD_PROXY_FILTER,
        typed_config=pack(dynamic_forward_proxy_pb2.FilterConfig(dns_cache_config=dns_cache())))
