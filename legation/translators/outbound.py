"""Where a sidecar sends a host the mesh does not know: Istio's outboundTrafficPolicy.

MeshConfig ``outboundTrafficPolicy.mode`` (model/meshconfig.py) decides the
last virtual host of every outbound route configuration, domain ``*``:

- ALLOW_ANY (Istio's default), ``allow_any``: to ``PassthroughCluster``. In
  transparent mode that is the original destination (clusters.py); in explicit
  mode the app talks to the proxy, so ``PassthroughCluster`` is a dynamic
  forward proxy cluster (forwardproxy.py) that dials the host the request
  names: an absolute-URI request (``GET http://host/...``) or a CONNECT tunnel
  (``CONNECT host:443``, what HTTPS clients send through an HTTP proxy).
- REGISTRY_ONLY, ``block_all``: a 502 whose body names the host and the
  setting (Istio routes to ``BlackHoleCluster``, an anonymous 502), CONNECT
  included; transparent mode closes raw TCP to unknown destinations
  (transparent.py).

Explicit mode also tunnels CONNECT to the non-HTTP ports of known services
(`connect_host`): ``CONNECT db.example.com:5432`` reaches that ServiceEntry's
cluster under either mode, as a registered host must.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from google.protobuf import duration_pb2

from legation.model import MeshConfig
from legation.translators import names
from legation.translators.common import CONNECT_TIMEOUT_SECONDS, default_circuit_breakers, seconds
from legation.translators.forwardproxy import make_forward_proxy

CONNECT = "CONNECT"
BLOCKED_STATUS = 502
BLOCKED_BODY = (
    "%REQ(:AUTHORITY)% is not in the mesh's registry: outboundTrafficPolicy is REGISTRY_ONLY "
    "(add a ServiceEntry for it, or set the mode to ALLOW_ANY)\n")


def unknown_hosts(config: MeshConfig, *, connect: bool) -> rc.VirtualHost:
    """The catch-all virtual host; `connect`: also for CONNECT requests (explicit mode)."""
    if config.allow_any:
        vhost = rc.VirtualHost(name=names.ALLOW_ANY_VHOST, domains=["*"])
        if connect:
            vhost.routes.append(rc.Route(
                name=names.ALLOW_ANY_VHOST,
                match=rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher()),
                route=tunnel(names.PASSTHROUGH_CLUSTER)))
        vhost.routes.append(rc.Route(
            name=names.ALLOW_ANY_VHOST, match=rc.RouteMatch(prefix="/"),
            route=rc.RouteAction(cluster=names.PASSTHROUGH_CLUSTER,
                                 timeout=duration_pb2.Duration(seconds=0))))
        return vhost
    vhost = rc.VirtualHost(name=names.BLOCK_ALL_VHOST, domains=["*"])
    matches = [rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher())] if connect else []
    for match in [*matches, rc.RouteMatch(prefix="/")]:
        vhost.routes.append(rc.Route(name=names.BLOCK_ALL_VHOST, match=match,
                                     direct_response=_blocked()))
    return vhost


def tunnel(cluster: str) -> rc.RouteAction:
    """A CONNECT request terminated here: its payload goes to `cluster` as raw TCP."""
    return rc.RouteAction(
        cluster=cluster, timeout=duration_pb2.Duration(seconds=0),
        upgrade_configs=[rc.RouteAction.UpgradeConfig(
            upgrade_type=CONNECT,
            connect_config=rc.RouteAction.UpgradeConfig.ConnectConfig())])


def connect_route(cluster: str) -> rc.Route:
    return rc.Route(name=names.DEFAULT_ROUTE,
                    match=rc.RouteMatch(connect_matcher=rc.RouteMatch.ConnectMatcher()),
                    route=tunnel(cluster))


def connect_upgrade() -> http_connection_manager_pb2.HttpConnectionManager.UpgradeConfig:
    """The HTTP connection manager side: CONNECT requests are accepted (routes decide)."""
    return http_connection_manager_pb2.HttpConnectionManager.UpgradeConfig(upgrade_type=CONNECT)


def forward_passthrough_cluster() -> cluster_pb2.Cluster:
    """Explicit mode's ``PassthroughCluster``: the dynamic forward proxy."""
    cluster = cluster_pb2.Cluster(
        name=names.PASSTHROUGH_CLUSTER, connect_timeout=seconds(CONNECT_TIMEOUT_SECONDS),
        circuit_breakers=default_circuit_breakers())
    make_forward_proxy(cluster)
    return cluster


def _blocked() -> rc.DirectResponseAction:
    return rc.DirectResponseAction(
        status=BLOCKED_STATUS,
        body_format=substitution_format_string_pb2.SubstitutionFormatString(
            text_format_source=base_pb2.DataSource(inline_string=BLOCKED_BODY),
            content_type="text/plain"))
