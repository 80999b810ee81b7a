"""Translated: the messages a translator produced, plus its diagnostics."""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from legation.model import Diagnostic


@dataclass(slots=True, kw_only=True)
class Translated:
    clusters: list[cluster_pb2.Cluster] = field(default_factory=list)
    endpoints: list[endpoint_pb2.ClusterLoadAssignment] = field(default_factory=list)
    listeners: list[listener_pb2.Listener] = field(default_factory=list)
    routes: list[route_pb2.RouteConfiguration] = field(default_factory=list)
    secrets: list[secret_pb2.Secret] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    def extend(self, other: Translated) -> Translated:
        self.clusters.extend(other.clusters)
        self.endpoints.extend(other.endpoints)
        self.listeners.extend(other.listeners)
        self.routes.extend(other.routes)
        self.secrets.extend(other.secrets)
        self.diagnostics.extend(other.diagnostics)
        return self
