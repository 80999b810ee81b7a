"""Envoy bootstraps for tests: a sidecar of `legation serve`, or a static HTTP proxy."""

from __future__ import annotations

from typing import Any

from legation.bootstrap import build_bootstrap


def sidecar_bootstrap(
    *,
    workload: str,
    namespace: str,
    admin_host: str,
    xds: tuple[str, int],
    delta: bool = False,
    node_cluster: str | None = None,
    admin_port: int = 0,
) -> dict[str, Any]:
    """A mesh sidecar's bootstrap: node `<workload>.<namespace>`, admin on port 0 (Envoy
    picks; then no Prometheus listener on 15090) unless `admin_port` fixes it."""
    return build_bootstrap(
        node_id=f"{workload}.{namespace}",
        node_cluster=node_cluster or namespace,  # as `legation bootstrap` writes it
        xds_host=xds[0],
        xds_port=xds[1],
        admin_host=admin_host,
        admin_port=admin_port,
        delta=delta,
        workload=workload,
        namespace=namespace,
    )


_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def static_http_bootstrap(
    *,
    listen: tuple[str, int],
    upstream: tuple[str, int],
    admin_host: str,
    cluster: str = "app",
) -> dict[str, Any]:
    """A control-plane-free Envoy: one HTTP listener routing everything to one upstream."""
    hcm = {
        "@type": _HCM,
        "stat_prefix": "ingress",
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "node": {"id": "static", "cluster": "static"},
        "admin": {"address": _addr(admin_host, 0)},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": _addr(*listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": cluster,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": cluster,
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _addr(*upstream)}}]}
                        ],
                    },
                }
            ],
        },
    }


def _addr(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


# -- a mesh under test: manifests, a control plane process, sidecars ---------

