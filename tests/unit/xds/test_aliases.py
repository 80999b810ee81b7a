"""On-demand VHDS: an alias ``<route configuration>/<host>`` finds its virtual host as
Envoy's own domain lookup would."""

from __future__ import annotations

import pytest
from envoy.config.route.v3 import route_components_pb2

from legation.cache import VIRTUAL_HOST, Resource
from legation.xds.aliases import DomainIndex, index_of


def vh(name: str, *domains: str) -> Resource:
    return Resource.of(VIRTUAL_HOST, name, route_components_pb2.VirtualHost(
        name=name, domains=list(domains)))


HOSTS = {r.name: r for r in [
    vh("http_proxy/catalog:9080", "catalog", "catalog:9080", "catalog.shop:9080"),
    vh("http_proxy/wild", "*.example.com"),
    vh("http_proxy/deeper", "*.api.example.com"),
    vh("http_proxy/prefix", "shop.*"),
    vh("9080/any", "*"),
    vh("9080/catalog", "catalog"),
]}


@pytest.mark.parametrize(("alias", "found"), [
    ("http_proxy/catalog.shop:9080", "http_proxy/catalog:9080"),
    ("http_proxy/CATALOG", "http_proxy/catalog:9080"),  # domains match case-insensitively
    ("http_proxy/a.example.com", "http_proxy/wild"),
    ("http_proxy/v1.api.example.com", "http_proxy/deeper"),  # the longest suffix wins
    ("http_proxy/shop.internal", "http_proxy/prefix"),
    ("http_proxy/example.com", ""),  # "*.example.com" needs something before the dot
    ("http_proxy/nothing:80", ""),
    ("9080/catalog", "9080/catalog"),  # the exact domain beats "*"
    ("9080/else", ""),  # never the catch-all: it would hide every host not yet asked for
    ("other/catalog", ""),  # another configuration's hosts never answer
])
def test_an_alias_finds_the_virtual_host_envoy_would(alias: str, found: str) -> None:
    assert DomainIndex(HOSTS).resolve(alias) == found


def test_an_index_is_built_once_per_set() -> None:
    assert index_of(HOSTS) is index_of(HOSTS)
    assert index_of(dict(HOSTS)) is not index_of(HOSTS)
