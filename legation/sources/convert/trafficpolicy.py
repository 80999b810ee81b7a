"""DestinationRule `trafficPolicy` -> `TrafficPolicy`: load balancer, pools, outliers, TLS.

Shared by the destination level, subsets and port-level settings. Field
names, ranges and exclusions follow istio/api destination_rule.proto and
Istio's validation (istio/istio pkg/config/validation, validateTrafficPolicy
and friends).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.destination import (
    ClientTls,
    ConnectionPool,
    H2UpgradePolicy,
    HttpPool,
    OutlierDetection,
    PortPolicy,
    PortTrafficPolicy,
    TcpKeepalive,
    TcpPool,
    TlsMode,
    TrafficPolicy,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx
from legation.sources.convert.loadbalancer import load_balancer
from legation.sources.convert.yamlload import child_path

_SECTIONS = ("loadBalancer", "connectionPool", "outlierDetection", "tls")
_UNSUPPORTED = {
    "tunnel": "tunneling TCP needs listeners explicit-mode sidecars do not have",
    "proxyProtocol": "the upstream PROXY protocol is not implemented",
}


def traffic_policy(ctx: Ctx, raw: Any, path: str) -> TrafficPolicy | None:
    m = ctx.as_mapping(raw, path, problem="traffic-policy") if raw is not None else None
    if m is None:
        return None
    istio.check_fields(ctx, m, path, (*_SECTIONS, "portLevelSettings"),
                       what="a traffic policy", unsupported=_UNSUPPORTED)
    levels: list[PortTrafficPolicy] = []
    seen: dict[int, str] = {}
    for ppath, item in ctx.items(m, "portLevelSettings", path, problem="port-level-settings"):
        p = ctx.as_mapping(item, ppath, problem="port-level-settings")
        if p is None:
            continue
        istio.check_fields(ctx, p, ppath, ("port", *_SECTIONS), what="a port traffic policy")
        if p.get("port") is None:
            ctx.missing(child_path(ppath, "port"), "port", "the service port, {number: <port>}")
            continue
        port = istio.port_selector(ctx, p, "port", ppath)
        if port and port in seen:
            ctx.error(child_path(ppath, "port"), "port-duplicate",
                      f"port {port} already has settings at {seen[port]}; expected each port "
                      "once.")
            continue
        if port:
            seen[port] = ppath
            levels.append(PortTrafficPolicy(port=port, policy=port_policy(ctx, p, ppath)))
    return TrafficPolicy(policy=port_policy(ctx, m, path), port_level=tuple(levels))


def port_policy(ctx: Ctx, m: Mapping[str, Any], path: str) -> PortPolicy:
    return PortPolicy(
        load_balancer=load_balancer(ctx, istio.section(ctx, m, "loadBalancer", path),
                                    child_path(path, "loadBalancer")),
        connection_pool=_pool(ctx, istio.section(ctx, m, "connectionPool", path),
                              child_path(path, "connectionPool")),
        outlier_detection=_outlier(ctx, istio.section(ctx, m, "outlierDetection", path),
                                   child_path(path, "outlierDetection")),
        tls=_tls(ctx, istio.section(ctx, m, "tls", path), child_path(path, "tls")),
    )


def _pool(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> ConnectionPool | None:
    if m is None:
        return None
    istio.check_fields(ctx, m, path, ("tcp", "http"), what="a connection pool")
    tcp = istio.section(ctx, m, "tcp", path)
    http = istio.section(ctx, m, "http", path)
    return ConnectionPool(
        tcp=_tcp(ctx, tcp, child_path(path, "tcp")) if tcp is not None else None,
        http=_http(ctx, http, child_path(path, "http")) if http is not None else None,
    )


def _tcp(ctx: Ctx, m: Mapping[str, Any], path: str) -> TcpPool:
    istio.check_fields(ctx, m, path, ("maxConnections", "connectTimeout", "tcpKeepalive",
                                      "maxConnectionDuration", "idleTimeout"),
                       what="TCP connection pool settings")
    keepalive = None
    ka = istio.section(ctx, m, "tcpKeepalive", path)
    if ka is not None:
        kpath = child_path(path, "tcpKeepalive")
        istio.check_fields(ctx, ka, kpath, ("probes", "time", "interval"), what="TCP keepalive")
        keepalive = TcpKeepalive(
            probes=istio.integer(ctx, ka, "probes", kpath, high=istio.UINT32_MAX),
            time_ms=istio.duration_ms(ctx, ka, "time", kpath),
            interval_ms=istio.duration_ms(ctx, ka, "interval", kpath),
        )
    if m.get("idleTimeout") is not None:
        ctx.info(child_path(path, "idleTimeout"), "field-unsupported",
                 "tcp.idleTimeout applies to TCP proxy listeners, which explicit-mode sidecars "
                 "do not have for outbound traffic; it is ignored.")
    return TcpPool(
        max_connections=istio.integer(ctx, m, "maxConnections", path),
        connect_timeout_ms=istio.duration_ms(ctx, m, "connectTimeout", path),
        keepalive=keepalive,
        max_connection_duration_ms=istio.duration_ms(ctx, m, "maxConnectionDuration", path),
        idle_timeout_ms=istio.duration_ms(ctx, m, "idleTimeout", path, allow_zero=True),
    )


def _http(ctx: Ctx, m: Mapping[str, Any], path: str) -> HttpPool:
    istio.check_fields(ctx, m, path, ("http1MaxPendingRequests", "http2MaxRequests",
                                      "maxRequestsPerConnection", "maxRetries", "idleTimeout",
                                      "h2UpgradePolicy", "useClientProtocol",
                                      "maxConcurrentStreams"),
                       what="HTTP connection pool settings")
    upgrade = istio.enum_value(ctx, m, "h2UpgradePolicy", path,
                               [p.value for p in H2UpgradePolicy])
    return HttpPool(
        http1_max_pending_requests=istio.integer(ctx, m, "http1MaxPendingRequests", path),
        http2_max_requests=istio.integer(ctx, m, "http2MaxRequests", path),
        max_requests_per_connection=istio.integer(ctx, m, "maxRequestsPerConnection", path),
        max_retries=istio.integer(ctx, m, "maxRetries", path),
        idle_timeout_ms=istio.duration_ms(ctx, m, "idleTimeout", path),
        h2_upgrade_policy=H2UpgradePolicy(upgrade or "DEFAULT"),
        use_client_protocol=bool(istio.boolean(ctx, m, "useClientProtocol", path)),
        max_concurrent_streams=istio.integer(ctx, m, "maxConcurrentStreams", path, low=1),
    )


def _outlier(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> OutlierDetection | None:
    if m is None:
        return None
    istio.check_fields(
        ctx, m, path,
        ("consecutive5xxErrors", "consecutiveGatewayErrors", "consecutiveLocalOriginFailures",
         "splitExternalLocalOriginErrors", "interval", "baseEjectionTime",
         "maxEjectionPercent", "minHealthPercent"),
        what="outlier detection",
        deprecated={"consecutiveErrors": "Legation ignores it; use consecutive5xxErrors or "
                    "consecutiveGatewayErrors"},
    )
    return OutlierDetection(
        consecutive_5xx_errors=istio.integer(ctx, m, "consecutive5xxErrors", path,
                                             high=istio.UINT32_MAX),
        consecutive_gateway_errors=istio.integer(ctx, m, "consecutiveGatewayErrors", path,
                                                 high=istio.UINT32_MAX),
        consecutive_local_origin_failures=istio.integer(
            ctx, m, "consecutiveLocalOriginFailures", path, high=istio.UINT32_MAX),
        split_external_local_origin_errors=bool(
            istio.boolean(ctx, m, "splitExternalLocalOriginErrors", path)),
        interval_ms=istio.duration_ms(ctx, m, "interval", path),
        base_ejection_time_ms=istio.duration_ms(ctx, m, "baseEjectionTime", path),
        max_ejection_percent=istio.integer(ctx, m, "maxEjectionPercent", path, high=100),
        min_health_percent=istio.integer(ctx, m, "minHealthPercent", path, high=100),
    )


def _tls(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> ClientTls | None:
    if m is None:
        return None
    istio.check_fields(ctx, m, path, ("mode", "clientCertificate", "privateKey",
                                      "caCertificates", "credentialName", "subjectAltNames",
                                      "sni", "insecureSkipVerify", "caCrl"),
                       what="client TLS settings")
    mode = TlsMode(istio.enum_value(ctx, m, "mode", path, [t.value for t in TlsMode])
                   or "DISABLE")
    tls = ClientTls(
        mode=mode,
        client_certificate=istio.string(ctx, m, "clientCertificate", path),
        private_key=istio.string(ctx, m, "privateKey", path),
        ca_certificates=istio.string(ctx, m, "caCertificates", path),
        ca_crl=istio.string(ctx, m, "caCrl", path),
        credential_name=istio.string(ctx, m, "credentialName", path),
        subject_alt_names=istio.strings(ctx, m, "subjectAltNames", path),
        sni=istio.string(ctx, m, "sni", path),
        insecure_skip_verify=istio.boolean(ctx, m, "insecureSkipVerify", path),
    )
    _check_tls(ctx, tls, path)
    return tls


def _check_tls(ctx: Ctx, tls: ClientTls, path: str) -> None:
    files = [n for n, v in (("clientCertificate", tls.client_certificate),
                            ("privateKey", tls.private_key),
                            ("caCertificates", tls.ca_certificates)) if v]
    if tls.mode is TlsMode.ISTIO_MUTUAL and (files or tls.credential_name):
        ctx.error(path, "tls-invalid", "ISTIO_MUTUAL uses the mesh's own certificates; expected "
                  f"no {', '.join(files + (['credentialName'] if tls.credential_name else []))}.")
    if tls.credential_name:
        ctx.warn(child_path(path, "credentialName"), "field-unsupported",
                 "credentialName needs Kubernetes secrets delivered over SDS, which Legation "
                 "does not do for upstream TLS; it is ignored (give file paths instead).")
        if files:
            ctx.error(path, "tls-invalid", "sets credentialName and certificate files; "
                      "expected one or the other.")
    if tls.mode is TlsMode.MUTUAL and not tls.credential_name:
        for name, value in (("clientCertificate", tls.client_certificate),
                            ("privateKey", tls.private_key)):
            if not value:
                ctx.missing(child_path(path, name), "tls", f"the path of the {name} file "
                            "(required for MUTUAL)")
    if tls.mode is TlsMode.DISABLE and (files or tls.sni or tls.subject_alt_names):
        ctx.warn(path, "tls-ignored", "mode is DISABLE, so the other TLS settings are ignored.")
