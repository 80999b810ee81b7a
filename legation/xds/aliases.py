"""On-demand VHDS: which virtual host answers an alias ``<route configuration>/<host>``.

Envoy's on_demand filter asks for a Host no virtual host of a route
configuration answers by subscribing to the alias ``<configuration>/<Host>``
(Envoy docs, "Virtual Host Discovery Service", "Subscribing to Resources").
The server answers with the virtual host whose `domains` match the Host as
Envoy's own lookup would (RouteMatcher: an exact domain first, then the
longest suffix wildcard ``*.example.com``, then the longest prefix wildcard
``example.*``; case-insensitively; never the catch-all ``*``), listing the alias in the
resource's `aliases`; or with a resource-less entry named by the alias when
none does.

A `DomainIndex` is built once per set of virtual hosts (a snapshot's mapping
of the type, shared by every proxy built on it) and kept for a few sets.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping

from envoy.config.route.v3 import route_components_pb2

from legation.cache import Resource
from legation.xds.subscription import namespace_of

_KEPT = 8  # indexes of recent virtual host sets kept (per process)


class DomainIndex:
    """The virtual hosts of one set, by route configuration and domain."""

    def __init__(self, hosts: Mapping[str, Resource]) -> None:
        self.hosts = hosts  # kept alive: the cache is keyed by its identity
        # configuration -> domain (lowercase) -> virtual host resource name
        self.exact: dict[str, dict[str, str]] = {}
        # configuration -> [(kind, pattern without "*", name)]: "suffix" or "prefix"
        self.wild: dict[str, list[tuple[str, str, str]]] = {}
        for name, r in hosts.items():
            config = namespace_of(name)
            vh = route_components_pb2.VirtualHost.FromString(r.body)
            for domain in vh.domains:
                d = domain.lower()
                if d == "*":
                    # Never sent on demand: once a proxy held the catch-all (outbound.py)
                    # it would answer every Host, and no service's virtual host would be
                    # asked for again. An on-demand proxy answers unknown hosts with 404.
                    continue
                if d.startswith("*"):
                    self.wild.setdefault(config, []).append(("suffix", d[1:], name))
                elif d.endswith("*"):
                    self.wild.setdefault(config, []).append(("prefix", d[:-1], name))
                else:
                    self.exact.setdefault(config, {}).setdefault(d, name)

    def resolve(self, alias: str) -> str:
        """The name of the virtual host answering `alias`, or "" when none does."""
        config, _, host = alias.rpartition("/")
        host = host.lower()
        found = self.exact.get(config, {}).get(host)
        if found is not None:
            return found
        best: tuple[int, int, str] | None = None  # (rank, pattern length, name)
        for kind, pattern, name in self.wild.get(config, ()):
            if kind == "suffix" and host.endswith(pattern) and len(host) > len(pattern):
                rank = 3
            elif kind == "prefix" and host.startswith(pattern) and len(host) > len(pattern):
                rank = 2
            else:
                continue
            key = (rank, len(pattern), name)
            if best is None or key[:2] > best[:2]:
                best = key
        return best[2] if best is not None else ""


_indexes: OrderedDict[int, DomainIndex] = OrderedDict()


def index_of(hosts: Mapping[str, Resource]) -> DomainIndex:
    """The `DomainIndex` of a snapshot's virtual hosts, built once per mapping."""
    found = _indexes.get(id(hosts))
    if found is not None and found.hosts is hosts:
        _indexes.move_to_end(id(hosts))
        return found
    found = _indexes[id(hosts)] = DomainIndex(hosts)
    while len(_indexes) > _KEPT:
        _indexes.popitem(last=False)
    return found
