"""DestinationRule traffic policy -> the fields of one outbound Cluster.

`apply_policy` takes the effective `PortPolicy` of a cluster (inheritance is
`legation.model.destination.effective_policy`'s job) and sets, as Istio
does (istio/istio pilot/pkg/networking/core/cluster_traffic_policy.go):

- load balancer: LEAST_REQUEST unless told otherwise (Istio's default);
  ROUND_ROBIN, RANDOM; consistent hash as RING_HASH (minimum ring size 1024
  unless set, Istio's default) or MAGLEV; warmup as slow start;
- connection pool: circuit-breaker thresholds (unset ones stay unlimited:
  Istio's "Default 2^32-1" for maxConnections, http1MaxPendingRequests,
  http2MaxRequests and maxRetries, istio/api destination_rule.proto), connect
  timeout (Istio's "Default is 10s"), TCP keepalive, and the HTTP protocol
  options (idle timeout, max requests per connection, max connection
  duration, HTTP/2 upgrade or the client's protocol, max concurrent streams);
- outlier detection: consecutive 5xx / gateway / local-origin errors with
  100% enforcement, success-rate ejection off, the panic threshold set to
  minHealthPercent (0 when unset: Istio's "The default is 0%"); interval,
  base ejection time, max ejection percent and consecutive 5xx default to
  Istio's documented 10s, 30s, 10% and 5 (istio/api destination_rule.proto,
  OutlierDetection; also Envoy's own defaults) and are written out so that
  config_dump shows them;
- locality weighted load balancing when `localityLbSetting.distribute` is set
  (the weights themselves are per client, see endpoints.py).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from legation.model import Protocol
from legation.model.destination import (
    ConnectionPool,
    H2UpgradePolicy,
    HashAlgorithm,
    LoadBalancer,
    OutlierDetection,
    PortPolicy,
    SimpleLb,
)
from legation.translators.common import (
    HTTP_PROTOCOL_OPTIONS_KEY,
    default_circuit_breakers,
    pack,
    upstream_protocol_options,
)

Cluster = cluster_pb2.Cluster
DEFAULT_RING_SIZE = 1024  # Istio: "minimum_ring_size ... Defaults to 1024"
OUTLIER_INTERVAL_MS = 10_000
OUTLIER_BASE_EJECTION_MS = 30_000
OUTLIER_MAX_EJECTION_PERCENT = 10
OUTLIER_CONSECUTIVE_5XX = 5
_LB = {
    SimpleLb.ROUND_ROBIN: Cluster.ROUND_ROBIN,
    SimpleLb.RANDOM: Cluster.RANDOM,
}


def millis(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def apply_policy(cluster: cluster_pb2.Cluster, policy: PortPolicy, protocol: Protocol) -> None:
    """Set the DestinationRule-driven fields of an outbound EDS cluster."""
    _load_balancer(cluster, policy.load_balancer)
    pool = policy.connection_pool
    if pool is not None:
        _connection_pool(cluster, pool)
    _protocol_options(cluster, pool, protocol)
    if policy.outlier_detection is not None:
        _outlier(cluster, policy.outlier_detection)


def _load_balancer(cluster: cluster_pb2.Cluster, lb: LoadBalancer | None) -> None:
    cluster.lb_policy = Cluster.LEAST_REQUEST
    if lb is None:
        return
    if lb.consistent_hash is not None:
        ch = lb.consistent_hash
        if ch.algorithm is HashAlgorithm.MAGLEV:
            cluster.lb_policy = Cluster.MAGLEV
            if ch.table_size:
                cluster.maglev_lb_config.table_size.value = ch.table_size
        else:
            cluster.lb_policy = Cluster.RING_HASH
            cluster.ring_hash_lb_config.minimum_ring_size.value = (
                ch.minimum_ring_size or DEFAULT_RING_SIZE
            )
    elif lb.simple is not None:
        cluster.lb_policy = _LB.get(lb.simple, Cluster.LEAST_REQUEST)
    if lb.warmup_ms and cluster.lb_policy == Cluster.ROUND_ROBIN:
        cluster.round_robin_lb_config.slow_start_config.slow_start_window.CopyFrom(
            millis(lb.warmup_ms))
    elif lb.warmup_ms and cluster.lb_policy == Cluster.LEAST_REQUEST:
        cluster.least_request_lb_config.slow_start_config.slow_start_window.CopyFrom(
            millis(lb.warmup_ms))
    if lb.locality is not None and lb.locality.distribute and lb.locality.enabled is not False:
        cluster.common_lb_config.locality_weighted_lb_config.SetInParent()


def _connection_pool(cluster: cluster_pb2.Cluster, pool: ConnectionPool) -> None:
    thresholds = default_circuit_breakers().thresholds[0]
    tcp, http = pool.tcp, pool.http
    limits = {
        "max_connections": tcp.max_connections if tcp else None,
        "max_pending_requests": http.http1_max_pending_requests if http else None,
        "max_requests": http.http2_max_requests if http else None,
        "max_retries": http.max_retries if http else None,
    }
    for name, value in limits.items():
        if value:  # 0 means "unset" in Istio's API: the default (unlimited) stays
            getattr(thresholds, name).value = value
    cluster.circuit_breakers.CopyFrom(circuit_breaker_pb2.CircuitBreakers(thresholds=[thresholds]))
    if tcp is None:
        return
    if tcp.connect_timeout_ms:
        cluster.connect_timeout.CopyFrom(millis(tcp.connect_timeout_ms))
    if tcp.keepalive is not None:
        ka = address_pb2.TcpKeepalive()
        if tcp.keepalive.probes:
            ka.keepalive_probes.value = tcp.keepalive.probes
        if tcp.keepalive.time_ms:
            ka.keepalive_time.value = max(1, tcp.keepalive.time_ms // 1000)
        if tcp.keepalive.interval_ms:
            ka.keepalive_interval.value = max(1, tcp.keepalive.interval_ms // 1000)
        cluster.upstream_connection_options.tcp_keepalive.CopyFrom(ka)


def _protocol_options(
    cluster: cluster_pb2.Cluster, pool: ConnectionPool | None, protocol: Protocol
) -> None:
    if not protocol.is_http:
        return  # TCP ports: Istio applies HTTP settings to HTTP ports only
    http = pool.http if pool else None
    tcp = pool.tcp if pool else None
    common = protocol_pb2.HttpProtocolOptions()
    if http and http.idle_timeout_ms:
        common.idle_timeout.CopyFrom(millis(http.idle_timeout_ms))
    if http and http.max_requests_per_connection:
        common.max_requests_per_connection.value = http.max_requests_per_connection
    if tcp and tcp.max_connection_duration_ms:
        common.max_connection_duration.CopyFrom(millis(tcp.max_connection_duration_ms))
    upgrade = http is not None and http.h2_upgrade_policy is H2UpgradePolicy.UPGRADE
    client = http is not None and http.use_client_protocol
    streams = http.max_concurrent_streams if http else None
    if common.ByteSize() == 0 and not upgrade and not client and not streams:
        for key, value in upstream_protocol_options(protocol).items():
            cluster.typed_extension_protocol_options[key].CopyFrom(value)
        return
    options = http_protocol_options_pb2.HttpProtocolOptions
    h2 = protocol_pb2.Http2ProtocolOptions()
    if streams:
        h2.max_concurrent_streams.value = streams
    msg = options(common_http_protocol_options=common if common.ByteSize() else None)
    if client or (protocol is Protocol.UNKNOWN and not upgrade):
        msg.use_downstream_protocol_config.CopyFrom(options.UseDownstreamHttpConfig(
            http_protocol_options=protocol_pb2.Http1ProtocolOptions(), http2_protocol_options=h2))
    elif upgrade or protocol in (Protocol.HTTP2, Protocol.GRPC):
        msg.explicit_http_config.http2_protocol_options.CopyFrom(h2)
    else:
        msg.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS_KEY].CopyFrom(pack(msg))


def _outlier(cluster: cluster_pb2.Cluster, od: OutlierDetection) -> None:
    out = outlier_detection_pb2.OutlierDetection(
        enforcing_success_rate=wrappers_pb2.UInt32Value(value=0),
        interval=millis(od.interval_ms or OUTLIER_INTERVAL_MS),
        base_ejection_time=millis(od.base_ejection_time_ms or OUTLIER_BASE_EJECTION_MS),
        max_ejection_percent=wrappers_pb2.UInt32Value(
            value=OUTLIER_MAX_EJECTION_PERCENT if od.max_ejection_percent is None
            else od.max_ejection_percent),
    )
    five = OUTLIER_CONSECUTIVE_5XX if od.consecutive_5xx_errors is None else (
        od.consecutive_5xx_errors)
    out.consecutive_5xx.value = five
    out.enforcing_consecutive_5xx.value = 100 if five else 0
    if od.consecutive_gateway_errors is not None:
        out.consecutive_gateway_failure.value = od.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure.value = (
            100 if od.consecutive_gateway_errors else 0)
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if od.consecutive_local_origin_failures is not None:
            out.consecutive_local_origin_failure.value = od.consecutive_local_origin_failures
    cluster.outlier_detection.CopyFrom(out)
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=float(od.min_health_percent or 0)))
