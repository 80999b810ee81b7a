"""Small Envoy message builders shared by the translator modules.

Istio's defaults live here, once, each with the source it was taken from:
the ADS config source, circuit-breaker thresholds, connect timeout, upstream
HTTP protocol options, socket addresses and `Any` packing.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from legation.model import Protocol, Service

# Istio MeshConfig.connectTimeout: "Connection timeout used by Envoy. Default
# timeout is 10s." (istio.io/latest/docs/reference/config/istio.mesh.v1alpha1)
CONNECT_TIMEOUT_SECONDS = 10

# Istio raises every circuit-breaker threshold to the maximum: Envoy's default
# max_retries of 3 trips during pod churn before new endpoints arrive
# (istio/istio pilot/pkg/networking/core/cluster_builder.go,
# getDefaultCircuitBreakerThresholds).
_UNLIMITED = 4294967295  # math.MaxUint32

# Transparent mode: the source of the sidecar's own connections to its pod's address,
# which Istio's iptables rules do not redirect (istio/istio pilot/pkg/networking/core,
# InboundPassthroughBindIpv4: "6 is the magical number for inbound: 15006, 127.0.0.6").
PASSTHROUGH_BIND = "127.0.0.6"

# How Envoy resolves names (ServiceEntry DNS clusters, the dynamic forward proxy): IPv4
# first, IPv6 when a name has no IPv4 address.
DNS_LOOKUP_FAMILY = cluster_pb2.Cluster.V4_PREFERRED

HTTP_PROTOCOL_OPTIONS_KEY = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def pack(message: Any) -> any_pb2.Any:
    """`Any` with the deterministic serialization of `message`."""
    packed = any_pb2.Any()
    packed.Pack(message, deterministic=True)
    return packed


def seconds(value: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=value)


def fractional_seconds(value: float) -> duration_pb2.Duration:
    """A Duration of `value` seconds, to the millisecond."""
    d = duration_pb2.Duration()
    d.FromMilliseconds(round(value * 1000))
    return d


def ads_config_source() -> config_source_pb2.ConfigSource:
    """Fetch over the ADS stream the proxy already has (bootstrap ads_config)."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def socket_address(host: str, port: int) -> address_pb2.Address:
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=host, port_value=port)
    )


@functools.lru_cache(maxsize=65536)  # pure; every change asks again about the same addresses
def is_ip(host: str) -> bool:
    """Envoy binds and load-balances only IP literals (names need DNS clusters)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def service_vip(svc: Service) -> str:
    """A service's cluster IP, or "" when it has none (headless ``None``, unset, invalid)."""
    return svc.cluster_ip if is_ip(svc.cluster_ip) else ""


def default_circuit_breakers() -> circuit_breaker_pb2.CircuitBreakers:
    unlimited = wrappers_pb2.UInt32Value(value=_UNLIMITED)
    return circuit_breaker_pb2.CircuitBreakers(
        thresholds=[
            circuit_breaker_pb2.CircuitBreakers.Thresholds(
                max_connections=unlimited,
                max_pending_requests=unlimited,
                max_requests=unlimited,
                max_retries=unlimited,
                track_remaining=True,
            )
        ]
    )


def upstream_protocol_options(protocol: Protocol) -> dict[str, any_pb2.Any]:
    """`typed_extension_protocol_options` for a port of the given protocol.

    HTTP2 and GRPC ports speak HTTP/2 upstream. UNKNOWN ports (treated as
    HTTP in explicit mode) mirror whatever the downstream spoke, as Istio does
    for sniffed ports; plain HTTP keeps Envoy's HTTP/1.1 default.
    """
    options = http_protocol_options_pb2.HttpProtocolOptions
    if protocol in (Protocol.HTTP2, Protocol.GRPC):
        msg = options(
            explicit_http_config=options.ExplicitHttpConfig(
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions()
            )
        )
    elif protocol is Protocol.UNKNOWN:
        msg = options(
            use_downstream_protocol_config=options.UseDownstreamHttpConfig(
                http_protocol_options=protocol_pb2.Http1ProtocolOptions(),
                http2_protocol_options=protocol_pb2.Http2ProtocolOptions(),
            )
        )
    else:
        return {}
    return {HTTP_PROTOCOL_OPTIONS_KEY: pack(msg)}


def host_cluster(name: str, host: str, port: int, *, grpc: bool = False
                 ) -> cluster_pb2.Cluster:
    """A cluster of one `host`:`port` outside the mesh's registry (a collector, an
    authorizer, a JWKS server): STATIC for an IP, else resolved by Envoy (STRICT_DNS);
    HTTP/2 for a gRPC service."""
    cluster = cluster_pb2.Cluster(
        name=name, connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        type=cluster_pb2.Cluster.STATIC if is_ip(host) else cluster_pb2.Cluster.STRICT_DNS)
    if not is_ip(host):
        cluster.dns_lookup_family = DNS_LOOKUP_FAMILY
    cluster.load_assignment.cluster_name = name
    cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint.address.CopyFrom(
        socket_address(host, port))
    if grpc:
        for key, value in upstream_protocol_options(Protocol.GRPC).items():
            cluster.typed_extension_protocol_options[key].CopyFrom(value)
    return cluster
