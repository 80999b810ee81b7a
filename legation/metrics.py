"""Prometheus metrics, in a registry of their own (no global state).

Names are prefixed `legation_`. One `Metrics` per running server, passed to
the components that count.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.xds_streams = Gauge(
            "legation_xds_streams",
            "Open xDS streams by stream kind (ads, delta-ads, cds, ...).",
            ["stream"],
            registry=r,
        )
        self.xds_connected_proxies = Gauge(
            "legation_xds_connected_proxies",
            "Proxies subscribed to a resource type.",
            ["type"],
            registry=r,
        )
        self.xds_pushes = Counter(
            "legation_xds_pushes",
            "xDS responses sent, by resource type.",
            ["type"],
            registry=r,
        )
        self.xds_nacks = Counter(
            "legation_xds_nacks",
            "NACKs received from proxies, by resource type.",
            ["type"],
            registry=r,
        )
        self.xds_rejected_streams = Counter(
            "legation_xds_rejected_streams",
            "xDS streams refused, by gRPC status code.",
            ["code"],
            registry=r,
        )
        self.xds_push_latency = Histogram(
            "legation_xds_push_latency_seconds",
            "Time from a config change being seen to the response being written to a proxy.",
            ["type"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=r,
        )
        self.change_convergence = Histogram(
            "legation_change_convergence_seconds",
            "Time from a config change being seen to the last affected proxy's ACK of it.",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=r,
        )
        self.translations = Counter(
            "legation_translations",
            "Per-proxy snapshot builds.",
            registry=r,
        )
        self.translation_seconds = Histogram(
            "legation_translation_seconds",
            "Time to rebuild the snapshots of all connected proxies.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
            registry=r,
        )
        self.config_diagnostics = Gauge(
            "legation_config_diagnostics",
            "Current config diagnostics by severity and code.",
            ["severity", "code"],
            registry=r,
        )
        self.mesh_version = Gauge(
            "legation_mesh_version",
            "The store's change counter.",
            registry=r,
        )
