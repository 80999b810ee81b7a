"""LDS for explicit mode (DESIGN.md §4): real ports on the workload's address.

- outbound: ``<address>_15001``, an HTTP connection manager whose routes come
  over RDS (``http_proxy``, routes.py). The app uses it as its ``HTTP_PROXY``
  (absolute-form request URIs) or calls it with a Host header. Its filter
  chain is CORS, fault, router, as Istio orders them; CORS and fault only
  when some VirtualService route the proxy sees uses them.
- inbound: ``<address>_<targetPort>`` per inbound port (inbound.py): an HTTP
  connection manager with an inline route to ``inbound|<port>||`` for HTTP-ish
  protocols, a TCP proxy to it otherwise; RBAC filters (rbac.py) in front and
  filter chains per the port's PeerAuthentication mode (authn.py).
"""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.on_demand.v3 import on_demand_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import duration_pb2, wrappers_pb2

from legation.model import Diagnostic, Workload, WorkloadKind
from legation.model.telemetry import LogSink, TracingSetup
from legation.translators import names, ratelimit
from legation.translators.accesslog import access_logs
from legation.translators.authn import InboundSecurity, filter_chains
from legation.translators.common import ads_config_source, pack, socket_address
from legation.translators.forwardproxy import forward_proxy_filter
from legation.translators.inbound import InboundPort
from legation.translators.outbound import connect_upgrade
from legation.translators.tracing import hcm_tracing

HCM = http_connection_manager_pb2.HttpConnectionManager

HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
CORS_FILTER = "envoy.filters.http.cors"  # per-route CorsPolicy: routeparts.py
FAULT_FILTER = "envoy.filters.http.fault"  # per-route HTTPFault: routeparts.py
ON_DEMAND_FILTER = "envoy.filters.http.on_demand"
ON_DEMAND_TIMEOUT_S = 5  # how long a request waits for an on-demand cluster


def outbound_listener(
    workload: Workload, filters: frozenset[str] = frozenset(), *, on_demand: bool = False,
    logs: tuple[LogSink, ...] = (), tracing: TracingSetup | None = None,
) -> listener_pb2.Listener:
    """`filters`: which optional HTTP filters (CORS_FILTER, FAULT_FILTER) to include.
    `on_demand`: virtual hosts (VHDS) and clusters (on-demand CDS) are fetched on a
    request's first use, by Envoy's on_demand filter before the others."""
    port = names.OUTBOUND_PROXY_PORT
    hcm = HCM(
        stat_prefix=names.outbound_stat_prefix(workload.address, port),
        codec_type=HCM.AUTO,
        rds=http_connection_manager_pb2.Rds(
            config_source=ads_config_source(), route_config_name=names.HTTP_PROXY_ROUTE
        ),
        # Absolute-form request URIs (what HTTP_PROXY clients send), as Istio's
        # HTTP proxy listener (istio/istio pilot/pkg/networking/core/listener.go,
        # buildHTTPProxy). Explicit: the field's default is not documented.
        http_protocol_options=protocol_pb2.Http1ProtocolOptions(
            allow_absolute_url=wrappers_pb2.BoolValue(value=True)
        ),
        http_filters=[*([on_demand_filter()] if on_demand else []), *http_filters(filters)],
        # CONNECT tunnels (HTTPS through the proxy); the routes decide where (outbound.py)
        upgrade_configs=[connect_upgrade()],
        access_log=access_logs(logs),
    )
    if tracing is not None:
        hcm.tracing.CopyFrom(hcm_tracing(tracing, f"{workload.name}.{workload.namespace}"))
    hcm_filter = network_filter(HCM_FILTER, hcm)
    return _listener(workload.address, port, base_pb2.OUTBOUND, hcm_filter)


def on_demand_filter() -> http_connection_manager_pb2.HttpFilter:
    """Envoy's on_demand filter: a Host no virtual host answers is requested over VHDS
    (alias ``<route configuration>/<host>``), a route's missing cluster over on-demand
    CDS, both on the ADS stream; the request waits for them (Envoy docs, "On-demand
    VHDS, S/RDS and CDS Updates")."""
    config = on_demand_pb2.OnDemand(odcds=on_demand_pb2.OnDemandCds(
        source=ads_config_source(), timeout=duration_pb2.Duration(seconds=ON_DEMAND_TIMEOUT_S)))
    return http_connection_manager_pb2.HttpFilter(name=ON_DEMAND_FILTER,
                                                  typed_config=pack(config))


def http_filters(filters: frozenset[str]) -> list[http_connection_manager_pb2.HttpFilter]:
    """The optional filters `filters` names (CORS_FILTER, FAULT_FILTER), the dynamic
    forward proxy (forwardproxy.py: a no-op but for routes to its clusters), the router."""
    return [*_optional_filters(filters), forward_proxy_filter(), _router()]


def _optional_filters(filters: frozenset[str]) -> list[http_connection_manager_pb2.HttpFilter]:
    """The local rate limit first (routes' buckets: ratelimit.py), then CORS before fault
    (a preflight is answered without injected faults), as Istio."""
    out = [ratelimit.local_filter(None)] if ratelimit.LOCAL_FILTER in filters else []
    if CORS_FILTER in filters:
        out.append(http_connection_manager_pb2.HttpFilter(
            name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())))
    if FAULT_FILTER in filters:
        out.append(http_connection_manager_pb2.HttpFilter(
            name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault())))
    return out


def inbound_listener(
    workload: Workload, inbound: InboundPort, security: InboundSecurity | None = None,
    logs: tuple[LogSink, ...] = (), tracing: TracingSetup | None = None,
) -> listener_pb2.Listener:
    """`security` (authn.py): the filter chains its mTLS mode needs, RBAC filters first
    (None: plaintext, no RBAC)."""
    security = security or InboundSecurity()
    stat_prefix = names.inbound_stat_prefix(workload.address, inbound.port)
    filters = inbound_filters(inbound, security, stat_prefix, logs, tracing,
                              f"{workload.name}.{workload.namespace}")
    listener_filters, chains = filter_chains(security.mode, filters)
    return listener_pb2.Listener(
        name=names.listener_name(workload.address, inbound.port),
        address=socket_address(workload.address, inbound.port),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=listener_filters,
        filter_chains=chains,
    )


def inbound_filters(
    inbound: InboundPort, security: InboundSecurity, stat_prefix: str,
    logs: tuple[LogSink, ...] = (), tracing: TracingSetup | None = None, service: str = "",
) -> list[listener_components_pb2.Filter]:
    """The network filters of an inbound port (either mode): an HTTP connection manager
    with an inline route to ``inbound|<port>||``, or a TCP proxy to it; RBAC first."""
    cluster = names.inbound_cluster(inbound.port)
    if inbound.protocol.is_http:
        hcm = HCM(
            stat_prefix=stat_prefix,
            codec_type=HCM.AUTO,
            route_config=_inbound_route(inbound.port, cluster),
            http_filters=[*security.http_filters, _router()],
            access_log=access_logs(logs),
        )
        if tracing is not None:
            hcm.tracing.CopyFrom(hcm_tracing(tracing, service))
        if security.local_reply is not None:
            hcm.local_reply_config.CopyFrom(security.local_reply)
        if security.client_cert_header:
            # The app learns the caller's SPIFFE ID; a plaintext caller cannot forge it.
            hcm.forward_client_cert_details = HCM.SANITIZE_SET
            hcm.set_current_client_cert_details.uri = True
        return [network_filter(HCM_FILTER, hcm)]
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=stat_prefix, cluster=cluster,
                                   access_log=access_logs(logs))
    return [*security.network_filters, network_filter(TCP_PROXY_FILTER, proxy)]


def _inbound_route(port: int, cluster: str) -> route_pb2.RouteConfiguration:
    """Istio's inbound route: every host, every path, to the local app, no timeout."""
    return route_pb2.RouteConfiguration(
        name=cluster,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        virtual_hosts=[
            route_components_pb2.VirtualHost(
                name=names.inbound_virtual_host(port),
                domains=["*"],
                routes=[
                    route_components_pb2.Route(
                        name=names.DEFAULT_ROUTE,
                        match=route_components_pb2.RouteMatch(prefix="/"),
                        route=route_components_pb2.RouteAction(
                            cluster=cluster, timeout=duration_pb2.Duration(seconds=0)
                        ),
                    )
                ],
            )
        ],
    )


def _router() -> http_connection_manager_pb2.HttpFilter:
    return http_connection_manager_pb2.HttpFilter(
        name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())
    )


def network_filter(name: str, config: Any) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=name, typed_config=pack(config))


def _listener(
    address: str, port: int, direction: int, network_filter: listener_components_pb2.Filter
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=names.listener_name(address, port),
        address=socket_address(address, port),
        traffic_direction=direction,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )


def address_not_ip(workload: Workload) -> Diagnostic:
    return Diagnostic(
        ref=workload.ref,
        field="spec.address" if workload.kind is WorkloadKind.WORKLOAD_ENTRY else "status.podIP",
        code="workload.address-not-ip",
        message=(
            f"address {workload.address!r} is not an IP address, so its sidecar cannot bind "
            "its listeners there and gets none (expected an IPv4 or IPv6 address)"
        ),
    )
