"""Envoy bootstrap generation: the static file that points a stock Envoy at Legation.

A proxy needs exactly one static thing to join the mesh: a bootstrap naming
its node (`<workload>.<namespace>`, DESIGN.md §4), its admin address, and how
to reach the xDS server (ADS over gRPC, SotW or delta). Everything else comes
over xDS. `build_bootstrap` returns the bootstrap as plain JSON-shaped data
(proto3 JSON mapping of `envoy.config.bootstrap.v3.Bootstrap`);
`render_bootstrap` turns it into the text Envoy reads with `-c FILE`.

The `xds-grpc` cluster is tuned so that a sidecar notices a dead control plane
and comes back quickly when it restarts: HTTP/2 PING keepalive and TCP
keepalive detect a silent peer, and the xDS stream retry back-off
(`GrpcService.EnvoyGrpc.retry_policy`, which Envoy documents as "currently
only supported for xDS gRPC streams") is shortened from Envoy's default of
1 s doubling to 10 s.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from typing import Any, Literal

import yaml

XDS_CLUSTER = "xds-grpc"

_TLS_SOCKET = "envoy.transport_sockets.tls"
_UPSTREAM_TLS = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_FILE_LOG = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog"
_DOWNSTREAM_CX = "envoy.resource_monitors.global_downstream_max_connections"
_DOWNSTREAM_CX_CONFIG = (
    "type.googleapis.com/"
    "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig"
)
# A generous cap; Envoy warns at startup when there is none.
MAX_DOWNSTREAM_CONNECTIONS = 100_000

PROMETHEUS_PORT = 15090  # Istio's: <workload address>:15090/stats/prometheus
PROMETHEUS_CLUSTER = "prometheus_stats"
_HCM = ("type.googleapis.com/"
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager")
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

# Back-off between attempts to re-open the ADS stream (Envoy default: 1 s base, 10 s max).
_RETRY_BASE = "0.25s"
_RETRY_MAX = "2s"


def build_bootstrap(
    *,
    node_id: str,
    node_cluster: str,
    xds_host: str,
    xds_port: int,
    admin_host: str,
    admin_port: int,
    delta: bool = False,
    xds_tls_ca_pem: str | None = None,
    xds_token: str | None = None,
    xds_tls_server_name: str | None = None,
    workload: str = "",
    namespace: str = "",
    prometheus_port: int | None = PROMETHEUS_PORT,
    stats_exclusions: Sequence[str] = (),
    fixed_tags: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """An Envoy v3 bootstrap for one proxy, as proto3-JSON-shaped data.

    `admin_port` may be 0 (Envoy picks one; run it with `--admin-address-path`).
    With `xds_tls_ca_pem` the xDS connection uses TLS, trusting only that CA and
    checking that the server certificate names `xds_tls_server_name` (default:
    `xds_host`) in its subjectAltName. With `xds_token` every ADS stream carries
    `authorization: Bearer <token>` as gRPC initial metadata.

    Metrics (`stats_config`, `prometheus_stats`): every stat of an outbound cluster is
    tagged with its `destination_service`, `destination_port` and
    `destination_subset` (from Legation's cluster names, ``outbound|<port>|<subset>|
    <fqdn>``), every stat with the proxy's own `source_workload` and
    `source_namespace` (`workload`, `namespace`), response codes as
    `envoy_response_code`; Prometheus text is served on
    ``<admin_host>:<prometheus_port>/stats/prometheus`` (Istio's 15090) by a static
    listener in front of the admin API, when the admin port is fixed.
    (deploy/prometheus/ derives Istio's `istio_requests_total` and others from these.)
    `stats_exclusions`: RE2 patterns of stat names Envoy must not keep (the metrics a
    Telemetry disables for this workload: model/telemetry.py `disabled_stats`).
    """
    grpc_service: dict[str, Any] = {
        "envoy_grpc": {
            "cluster_name": XDS_CLUSTER,
            "retry_policy": {
                "retry_back_off": {"base_interval": _RETRY_BASE, "max_interval": _RETRY_MAX}
            },
        }
    }
    if xds_token is not None:
        grpc_service["initial_metadata"] = [
            {"key": "authorization", "value": f"Bearer {xds_token}"}
        ]
    return {
        "node": {"id": node_id, "cluster": node_cluster},
        "admin": {
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {"@type": _FILE_LOG, "path": "/dev/null"},
                }
            ],
            "address": _socket_address(admin_host, admin_port),
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if delta else "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [grpc_service],
                "set_node_on_first_message_only": True,
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "overload_manager": {
            "resource_monitors": [
                {
                    "name": _DOWNSTREAM_CX,
                    "typed_config": {
                        "@type": _DOWNSTREAM_CX_CONFIG,
                        "max_active_downstream_connections": MAX_DOWNSTREAM_CONNECTIONS,
                    },
                }
            ]
        },
        "stats_config": stats_config(workload, namespace, stats_exclusions, fixed_tags),
        "static_resources": _static(
            _xds_cluster(xds_host, xds_port, ca_pem=xds_tls_ca_pem,
                         server_name=xds_tls_server_name or xds_host),
            admin_host, admin_port, prometheus_port),
    }


def _static(xds: dict[str, Any], admin_host: str, admin_port: int,
            prometheus_port: int | None) -> dict[str, Any]:
    if not prometheus_port or not admin_port:
        return {"clusters": [xds]}
    return {"clusters": [xds, {
        "name": PROMETHEUS_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": PROMETHEUS_CLUSTER, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": _socket_address(admin_host, admin_port)}}]}]},
    }], "listeners": [{
        "name": PROMETHEUS_CLUSTER,
        "address": _socket_address(admin_host, prometheus_port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": _HCM,
                "stat_prefix": PROMETHEUS_CLUSTER,
                "route_config": {"virtual_hosts": [{
                    "name": PROMETHEUS_CLUSTER, "domains": ["*"],
                    "routes": [{"match": {"path": "/stats/prometheus"},
                                "route": {"cluster": PROMETHEUS_CLUSTER}}],
                }]},
                "http_filters": [{"name": "envoy.filters.http.router",
                                  "typed_config": {"@type": _ROUTER}}],
            },
        }]}],
    }]}


def stats_config(workload: str, namespace: str, exclusions: Sequence[str] = (),
                 fixed: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Tag extraction for Legation's cluster names, and the proxy's own identity.

    Tags whose first capture group is an empty lookahead remove nothing from the stat
    name, so each reads the whole cluster name; `envoy.cluster_name` (Envoy's own regex
    stops at the first dot of an FQDN) then removes it. Envoy's default tags are
    replaced by these (a default and a custom tag of one name do not mix), so the
    response code ones are restated. A cluster name ends where one of Envoy's cluster
    stat names begins.
    """
    ends = ("upstream_", "membership_", "lb_", r"circuit_breakers\.", r"internal\.",
            r"external\.", r"ssl\.", r"outlier_detection\.", "update_", "assignment_",
            "max_host_weight", "version", "warming_state", "bind_errors", "retry_or_shadow",
            "original_dst", "init_fetch", "client_ssl", r"http1\.", r"http2\.",
            r"zone\.", r"canary\.", r"health_check\.", "default_")
    suffix = "(?:" + "|".join(ends) + ")"
    tags: list[dict[str, str]] = [
        {"tag_name": "destination_port",
         "regex": r"^cluster\.(?:outbound|inbound)\|((?=(\d+)\|))"},
        {"tag_name": "destination_subset",
         "regex": r"^cluster\.outbound\|\d+\|((?=([^|]*)\|))"},
        {"tag_name": "destination_service",
         "regex": r"^cluster\.outbound\|\d+\|[^|]*\|((?=(.+?)\." + suffix + "))"},
        {"tag_name": "envoy.cluster_name", "regex": r"^cluster\.((.+?)\.)" + suffix},
        {"tag_name": "envoy.response_code", "regex": r"_rq(_(\d{3}))$"},
        {"tag_name": "envoy.response_code_class", "regex": r"_rq(_(\dxx))$"},
        {"tag_name": "envoy.http_conn_manager_prefix", "regex": r"^http\.((.*?)\.)"},
        {"tag_name": "envoy.listener_address",
         "regex": r"^listener\.(((?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*))\.)"},
    ]
    if workload:
        tags.append({"tag_name": "source_workload", "fixed_value": workload})
    if namespace:
        tags.append({"tag_name": "source_namespace", "fixed_value": namespace})
    tags += [{"tag_name": name, "fixed_value": value} for name, value in fixed]
    out: dict[str, Any] = {"use_all_default_tags": False, "stats_tags": tags}
    if exclusions:
        out["stats_matcher"] = {"exclusion_list": {"patterns": [
            {"safe_regex": {"regex": p}} for p in exclusions]}}
    return out


# gRPC (proxyless): the files `legation grpc-agent` keeps (Istio's names) and how often
# gRPC's file_watcher certificate provider re-reads them (gRFC A29)
GRPC_CERT_FILE, GRPC_KEY_FILE, GRPC_ROOTS_FILE = "cert-chain.pem", "key.pem", "root-cert.pem"
GRPC_CERT_REFRESH = "10s"
GRPC_SERVER_LISTENER_TEMPLATE = "xds.istio.io/grpc/lds/inbound/%s"  # Istio's (gRFC A36)


def build_grpc_bootstrap(*, node_id: str, namespace: str, labels: dict[str, str],
                         xds_host: str, xds_port: int, cert_dir: str | None = None
                         ) -> dict[str, Any]:
    """gRPC's xDS bootstrap (gRFC A27, GRPC_XDS_BOOTSTRAP): the server (plaintext), the
    node (Istio's GENERATOR grpc metadata), the listener name template of xDS servers
    (A36) and, with `cert_dir`, the file_watcher certificate provider ``default`` over the
    agent's files there (A29), which mesh TLS contexts name."""
    config: dict[str, Any] = {
        "xds_servers": [{"server_uri": f"{xds_host}:{xds_port}",
                         "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": {
            "id": node_id,
            "cluster": namespace,
            "metadata": {"GENERATOR": "grpc", "NAMESPACE": namespace, "LABELS": labels},
            "locality": {},
        },
        "server_listener_resource_name_template": GRPC_SERVER_LISTENER_TEMPLATE,
    }
    if cert_dir is not None:
        config["certificate_providers"] = {"default": {
            "plugin_name": "file_watcher",
            "config": {
                "certificate_file": f"{cert_dir}/{GRPC_CERT_FILE}",
                "private_key_file": f"{cert_dir}/{GRPC_KEY_FILE}",
                "ca_certificate_file": f"{cert_dir}/{GRPC_ROOTS_FILE}",
                "refresh_interval": GRPC_CERT_REFRESH,
            },
        }}
    return config


def render_bootstrap(bootstrap: dict[str, Any], *, fmt: Literal["yaml", "json"] = "yaml") -> str:
    """Text Envoy accepts with `-c FILE`.

    Envoy picks the parser from the file extension: write YAML to a `.yaml`
    file. JSON is valid YAML too, so JSON text works under either extension.
    """
    if fmt == "json":
        return json.dumps(bootstrap, indent=2) + "\n"
    return yaml.dump(bootstrap, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def _xds_cluster(host: str, port: int, *, ca_pem: str | None, server_name: str) -> dict[str, Any]:
    cluster: dict[str, Any] = {
        "name": XDS_CLUSTER,
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [
                {"lb_endpoints": [{"endpoint": {"address": _socket_address(host, port)}}]}
            ],
        },
        "typed_extension_protocol_options": {
            _HTTP_OPTIONS: {
                "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        "connection_keepalive": {"interval": "30s", "timeout": "5s"}
                    }
                },
            }
        },
        "upstream_connection_options": {
            "tcp_keepalive": {"keepalive_probes": 3, "keepalive_time": 30, "keepalive_interval": 5}
        },
    }
    if not _is_ip(host):
        # "localhost" may resolve to ::1 first while the server listens on IPv4.
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if ca_pem is not None:
        cluster["transport_socket"] = _tls_socket(ca_pem, server_name)
    return cluster


def _tls_socket(ca_pem: str, server_name: str) -> dict[str, Any]:
    san_type = "IP_ADDRESS" if _is_ip(server_name) else "DNS"
    context: dict[str, Any] = {
        "@type": _UPSTREAM_TLS,
        "common_tls_context": {
            "alpn_protocols": ["h2"],
            "validation_context": {
                "trusted_ca": {"inline_string": ca_pem},
                "match_typed_subject_alt_names": [
                    {"san_type": san_type, "matcher": {"exact": server_name}}
                ],
            },
        },
    }
    if san_type == "DNS":
        context["sni"] = server_name  # SNI carries host names only, never IP literals
    return {"name": _TLS_SOCKET, "typed_config": context}


class _BlockDumper(yaml.SafeDumper):
    """SafeDumper that writes multi-line strings (PEM) as literal blocks."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_representer)
