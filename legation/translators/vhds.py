"""VHDS: a route configuration's virtual hosts as resources of their own.

A proxy on delta ADS is sent each outbound RouteConfiguration without its
virtual hosts and with ``vhds`` pointing at ADS; every virtual host becomes
a VirtualHost resource named ``<route configuration>/<virtual host>``. A new
service then costs such a proxy its one virtual host instead of the whole
configuration again.

The resource's name is also the virtual host's own ``name``: Envoy keeps the
VHDS virtual hosts of a configuration by that field and removes them by
resource name (RouteConfigUpdateReceiverImpl::onVhdsUpdate), so the two must
agree. VHDS over ADS requires the ADS stream to be delta (Envoy's
VhdsSubscription::createVhdsSubscription), which is why only delta ADS
proxies get this split (memo.py).
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2, route_pb2

from legation.translators import names
from legation.translators.common import ads_config_source


def split_virtual_hosts(
    config: route_pb2.RouteConfiguration,
) -> tuple[route_pb2.RouteConfiguration, list[route_components_pb2.VirtualHost]]:
    """`config` less its virtual hosts, fetching them over VHDS, and those virtual hosts,
    renamed to their VHDS names. Together they route exactly as `config` does."""
    bare = route_pb2.RouteConfiguration()
    bare.CopyFrom(config)
    del bare.virtual_hosts[:]
    bare.vhds.config_source.CopyFrom(ads_config_source())
    hosts = []
    for vh in config.virtual_hosts:
        moved = route_components_pb2.VirtualHost()
        moved.CopyFrom(vh)
        moved.name = names.vhds_virtual_host(config.name, vh.name)
        hosts.append(moved)
    return bare, hosts
