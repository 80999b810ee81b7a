"""Resources: Envoy messages serialized once, hashed, and shared by every proxy.

Type URLs live here and nowhere else. A `Resource` carries the deterministic
serialization of one message and its content hash (the resource version); the
same `Resource` object is placed in every proxy snapshot that needs it, so a
message is serialized once per content version, not once per proxy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2

from legation.cache import wire

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
# VHDS: a RouteConfiguration's virtual hosts as resources of their own, named
# ``<route configuration name>/<virtual host>`` (Envoy docs, "Virtual Host
# Discovery Service"). Delta xDS only.
VIRTUAL_HOST = "type.googleapis.com/envoy.config.route.v3.VirtualHost"

# Make-before-break (xDS spec, "Eventual consistency considerations"): clusters
# before the endpoints that fill them, listeners before the routes they name,
# route configurations before their virtual hosts.
PUSH_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST, SECRET)

# Types only the incremental protocol carries: a SotW stream ignores requests for them.
DELTA_ONLY: frozenset[str] = frozenset({VIRTUAL_HOST})

# CDS and LDS are wildcard types: an empty subscription means "everything".
# (xDS spec, "How the client specifies what resources to return".)
WILDCARD_TYPES: frozenset[str] = frozenset({CLUSTER, LISTENER})

SHORT_NAMES: dict[str, str] = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    ROUTE: "rds",
    VIRTUAL_HOST: "vhds",
    SECRET: "sds",
}


def short_name(type_url: str) -> str:
    return SHORT_NAMES.get(type_url, type_url.rsplit(".", 1)[-1])


@dataclass(frozen=True, slots=True)
class Resource:
    type_url: str
    name: str
    version: str  # content hash of `body`
    body: bytes
    # encodings, built on first use and kept (see wire.py)
    _sotw: bytes | None = field(default=None, repr=False, compare=False)
    _delta: bytes | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, type_url: str, name: str, message: Any) -> Resource:
        body = message.SerializeToString(deterministic=True)
        version = hashlib.sha256(body).hexdigest()[:16]
        return cls(type_url, name, version, body)

    @property
    def any(self) -> Any:
        """The resource packed in a `google.protobuf.Any` (a new message each time)."""
        return any_pb2.Any(type_url=self.type_url, value=self.body)

    @property
    def sotw_entry(self) -> bytes:
        """This resource as an element of DiscoveryResponse.resources, encoded once."""
        entry = self._sotw
        if entry is None:
            entry = wire.sotw_entry(self.type_url, self.body)
            object.__setattr__(self, "_sotw", entry)
        return entry

    @property
    def delta_entry(self) -> bytes:
        """This resource as an element of DeltaDiscoveryResponse.resources, encoded once."""
        entry = self._delta
        if entry is None:
            entry = wire.delta_entry(self.name, self.version, self.type_url, self.body)
            object.__setattr__(self, "_delta", entry)
        return entry


def version_entry(name: str, version: str) -> bytes:
    """What `version_of` hashes for one resource: its name and its version."""
    return b"%s\0%s\n" % (name.encode(), version.encode())


def version_of(resources: Mapping[str, Resource]) -> str:
    """The version of a set of resources: a hash over (name, version) pairs, by name.

    Content-addressed, so every replica and every restart compute the same
    version for the same config and reconnecting proxies see no churn.
    (`SnapshotBase` computes the same hash without re-encoding a shared part.)
    """
    h = hashlib.sha256()
    for name in sorted(resources):
        h.update(version_entry(name, resources[name].version))
    return h.hexdigest()[:16]
