"""Istio's MeshConfig -> `MeshConfig` (model/meshconfig.py).

Two ways in, one schema (istio/api mesh/v1alpha1/config.proto):

- `legation serve --mesh-config FILE`: the file is a MeshConfig document, as
  istiod's ``--meshConfig`` (`convert_mesh_config_text`);
- the ConfigMap ``istio`` whose key ``mesh`` holds that document as a string,
  as Istio installs it (`convert_config_map`). Other ConfigMaps are not read
  (an INFO says so).

A field Legation applies is checked strictly (an invalid value keeps the last
good MeshConfig in force); a field of Istio's schema that Legation does not
apply gets an INFO naming it; a field that is not in Istio's schema a warning
with the closest known name (a newer Istio's field is not an outage).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

import yaml
from envoy.type.v3 import http_status_pb2

from legation.model import (
    Diagnostic,
    MeshConfig,
    OutboundPolicy,
    Severity,
    SourceRef,
)
from legation.model.meshconfig import MESH_CONFIG_KIND, ExtAuthzProvider, RateLimitProvider
from legation.model.telemetry import LogEncoding, LogProvider, TracingProvider
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, describe
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path, load_documents

MESH_CONFIG_MAP = "istio"  # Istio's ConfigMap name; its key `mesh` is the MeshConfig
MESH_KEY = "mesh"
APPLIED = ("outboundTrafficPolicy", "accessLogFile", "accessLogEncoding", "accessLogFormat",
           "extensionProviders", "defaultProviders")
# The rest of Istio's MeshConfig (istio/api mesh/v1alpha1/config.proto, 1.2x): known,
# not applied by Legation.
NOT_APPLIED = (
    "proxyListenPort", "proxyInboundListenPort", "proxyHttpPort", "connectTimeout",
    "protocolDetectionTimeout", "tcpKeepalive", "ingressClass", "ingressService",
    "ingressControllerMode", "ingressSelector", "enableTracing",
    "enableEnvoyAccessLogService",
    "disableEnvoyListenerLog", "defaultConfig", "inboundTrafficPolicy", "configSources",
    "enableAutoMtls", "trustDomain", "trustDomainAliases", "caCertificates",
    "defaultServiceExportTo", "defaultVirtualServiceExportTo",
    "defaultDestinationRuleExportTo", "rootNamespace", "localityLbSetting", "dnsRefreshRate",
    "h2UpgradePolicy", "inboundClusterStatName", "outboundClusterStatName", "certificates",
    "serviceSettings", "enablePrometheusMerge", "verifyCertificateAtClient", "ca",
    "discoverySelectors", "pathNormalization",
    "defaultHttpRetryPolicy", "meshMTLS", "tlsDefaults", "gatewayTopology",
    "serviceScopeConfigs", "meshNetworks", "enableSdsTokenMount", "sdsUdsPath",
    "thriftConfig", "mixerCheckServer", "mixerReportServer", "disablePolicyChecks",
    "policyCheckFailOpen", "sidecarToTelemetrySessionAffinity", "outboundTrafficPolicyMode",
)
_POLICY_FIELDS = ("mode", "egressProxy")
# Why some fields of NOT_APPLIED change nothing here (istio/istio pilot/pkg/networking/core/
# tracing.go: enableTracing only gates the fallback to ProxyConfig tracing when no
# Telemetry and no defaultProviders.tracing configure any)
_WHY_NOT = {
    "enableTracing": "it only gates Istio's legacy tracing from defaultConfig.tracing, which "
                     "Legation does not serve; tracing comes from Telemetry and "
                     "defaultProviders.tracing, as in Istio whenever those are set",
}


def convert_config_map(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> MeshConfig | None:
    """The ConfigMap ``istio``: its ``mesh`` key as a MeshConfig; others are not read."""
    if meta.name != MESH_CONFIG_MAP:
        ctx.info("metadata.name", "not-read",
                 f"ConfigMap {meta.namespace}/{meta.name} is not read: Legation reads the "
                 f"ConfigMap {MESH_CONFIG_MAP!r} (key {MESH_KEY!r}, Istio's MeshConfig) only.")
        return None
    values = ctx.mapping(data, "data", "", problem="data")
    text = values.get(MESH_KEY)
    path = child_path("data", MESH_KEY)
    if text is None:
        ctx.info(path, "mesh-missing", f"the ConfigMap has no key {MESH_KEY!r}: Istio's "
                 "defaults apply.")
        text = ""
    if not isinstance(text, str):
        ctx.invalid(path, "mesh", text, "a MeshConfig as a YAML string (mesh: |-)")
        return None
    try:
        parsed = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        ctx.error(path, "mesh-invalid", f"the MeshConfig is not valid YAML: "
                  f"{str(exc).splitlines()[0]} (expected Istio's MeshConfig as YAML).")
        return None
    return _config(ctx, parsed, path, namespace=meta.namespace)


def convert_mesh_config_text(text: str, *, file: str
                             ) -> tuple[MeshConfig | None, list[Diagnostic], bool]:
    """A `--mesh-config` file: (config or None, diagnostics, broken). An empty file is
    Istio's defaults; None means keep the last good one."""
    loaded = load_documents(text, file=file)
    if loaded.broken:
        return None, list(loaded.diagnostics), True
    docs = loaded.documents
    ref = SourceRef(kind=MESH_CONFIG_KIND, namespace="", name="mesh", file=file,
                    line=docs[0].line if docs else 1)
    ctx = Ctx(ref=ref, lines=docs[0].lines if docs else None)
    diagnostics = []
    for d in loaded.diagnostics:  # the loader speaks of manifests; a MeshConfig is not one
        if d.code == "yaml.not-an-object":
            ctx.error("", "mesh-invalid", d.message.split(";")[0] + "; expected a MeshConfig "
                      "mapping, e.g. {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}.")
        else:
            diagnostics.append(d)
    if len(docs) > 1:
        ctx.error("", "documents", f"the file holds {len(docs)} YAML documents; expected one "
                  "MeshConfig.")
    config = _config(ctx, docs[0].data if docs else {}, "", namespace="")
    diagnostics.extend(ctx.diagnostics)
    failed = any(d.severity is Severity.ERROR for d in diagnostics)
    return (None if failed else config), diagnostics, False


def _config(ctx: Ctx, data: Any, path: str, *, namespace: str) -> MeshConfig | None:
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        ctx.invalid(path, "mesh", data, "a MeshConfig mapping, e.g. "
                    "{outboundTrafficPolicy: {mode: REGISTRY_ONLY}}")
        return None
    known = (*APPLIED, *NOT_APPLIED)
    for key in data:
        name = str(key)
        if name in NOT_APPLIED:
            why = _WHY_NOT.get(name, "")
            ctx.info(child_path(path, name), "field-not-applied",
                     f"{name} is part of Istio's MeshConfig but not applied by Legation"
                     f"{': ' + why if why else ''}.")
        elif name not in APPLIED:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            ctx.warn(child_path(path, name), "field-unknown",
                     f"MeshConfig has no field {name!r}; it is ignored.{hint}")
    policy = _outbound(ctx, data, path)
    log_file = istio.string(ctx, data, "accessLogFile", path, expected="a file path")
    encoding = istio.enum_value(ctx, data, "accessLogEncoding", path, ["TEXT", "JSON"]) or "TEXT"
    log_format = istio.string(ctx, data, "accessLogFormat", path,
                              expected="an Envoy access log format string")
    providers = _providers(ctx, data, path)
    tracers = _tracers(ctx, data, path)
    authorizers = _authorizers(ctx, data, path)
    limiters = _rate_limiters(ctx, data, path)
    default_logs, default_tracing = _default_providers(ctx, data, path)
    if ctx.failed:
        return None
    return MeshConfig(ref=ctx.ref, name=ctx.ref.name, namespace=namespace,
                      outbound_policy=policy, access_log_file=log_file,
                      access_log_encoding=LogEncoding(encoding), access_log_format=log_format,
                      log_providers=providers, default_log_providers=default_logs,
                      tracing_providers=tracers, default_tracing_providers=default_tracing,
                      authz_providers=authorizers, rate_limit_providers=limiters)


def _tracers(ctx: Ctx, data: Mapping[str, Any], path: str) -> tuple[TracingProvider, ...]:
    """`extensionProviders` of kind opentelemetry (OTLP over gRPC) or zipkin."""
    out = []
    for ppath, item in ctx.mapping_items(data, "extensionProviders", path, problem="provider"):
        kind = next((k for k in ("opentelemetry", "zipkin") if k in item), "")
        if not kind:
            continue
        name = istio.string(ctx, item, "name", ppath, required=True, expected="a name")
        kpath = child_path(ppath, kind)
        section = ctx.mapping(item, kind, ppath, problem=kind)
        service = istio.string(ctx, section, "service", kpath, required=True,
                               expected="the collector's host name, e.g. "
                               "otel-collector.observability.svc.cluster.local")
        port = ctx.port(section, "port", kpath, problem="port", required=True)
        others = sorted(k for k in section if k not in ("service", "port"))
        if others:
            ctx.info(child_path(kpath, others[0]), "field-not-applied",
                     f"{kind}.{', '.join(others)} not applied.")
        if name and service and port:
            out.append(TracingProvider(name=name, kind=kind, service=service, port=port))
    return tuple(out)


_AUTHZ_COMMON = ("service", "port", "timeout", "failOpen", "statusOnError",
                 "includeRequestBodyInCheck")
_AUTHZ_HTTP = (*_AUTHZ_COMMON, "pathPrefix", "includeRequestHeadersInCheck",
               "includeAdditionalHeadersInCheck", "headersToUpstreamOnAllow",
               "headersToDownstreamOnAllow", "headersToDownstreamOnDeny",
               "includeHeadersInCheck")
_AUTHZ_GRPC = _AUTHZ_COMMON
_STATUS_CODES = frozenset(c for c in http_status_pb2.StatusCode.values() if c)


def _authorizers(ctx: Ctx, data: Mapping[str, Any], path: str
                 ) -> tuple[ExtAuthzProvider, ...]:
    """`extensionProviders` of kind envoyExtAuthzHttp or envoyExtAuthzGrpc (Istio's
    defaults: timeout 600s, failOpen false, statusOnError 403)."""
    out = []
    for ppath, item in ctx.mapping_items(data, "extensionProviders", path, problem="provider"):
        kind = next((k for k in ("envoyExtAuthzHttp", "envoyExtAuthzGrpc") if k in item), "")
        if not kind:
            continue
        grpc = kind == "envoyExtAuthzGrpc"
        name = istio.string(ctx, item, "name", ppath, required=True, expected="a name")
        kpath = child_path(ppath, kind)
        section = ctx.mapping(item, kind, ppath, problem="ext-authz")
        istio.check_fields(ctx, section, kpath, _AUTHZ_GRPC if grpc else _AUTHZ_HTTP,
                           what=kind, deprecated={"includeHeadersInCheck":
                                                  "use includeRequestHeadersInCheck"})
        service = istio.string(ctx, section, "service", kpath, required=True,
                               expected="the authorizer's host name, e.g. "
                               "ext-authz.foo.svc.cluster.local")
        port = ctx.port(section, "port", kpath, problem="port", required=True)
        timeout = istio.duration_ms(ctx, section, "timeout", kpath)
        status = _status(ctx, section, kpath)
        body = istio.section(ctx, section, "includeRequestBodyInCheck", kpath) or {}
        bpath = child_path(kpath, "includeRequestBodyInCheck")
        istio.check_fields(ctx, body, bpath, ("maxRequestBytes", "allowPartialMessage",
                                              "packAsBytes"), what="a body setting")
        max_bytes = istio.integer(ctx, body, "maxRequestBytes", bpath, low=1)
        headers = (*istio.strings(ctx, section, "includeRequestHeadersInCheck", kpath),
                   *istio.strings(ctx, section, "includeHeadersInCheck", kpath))
        added = ctx.string_map(section, "includeAdditionalHeadersInCheck", kpath,
                               problem="header")
        if not (name and service and port):
            continue
        out.append(ExtAuthzProvider(
            name=name, grpc=grpc, service=service, port=port,
            timeout_s=(timeout if timeout is not None else 600_000) / 1000,
            fail_open=bool(istio.boolean(ctx, section, "failOpen", kpath)),
            status_on_error=status,
            path_prefix=istio.string(ctx, section, "pathPrefix", kpath),
            include_request_headers=headers,
            include_additional_headers=tuple(sorted(added.items())),
            headers_to_upstream_on_allow=istio.strings(ctx, section, "headersToUpstreamOnAllow",
                                                       kpath),
            headers_to_downstream_on_allow=istio.strings(
                ctx, section, "headersToDownstreamOnAllow", kpath),
            headers_to_downstream_on_deny=istio.strings(
                ctx, section, "headersToDownstreamOnDeny", kpath),
            body_max_bytes=(max_bytes or 8192) if body else 0,  # Istio's default size
            body_allow_partial=bool(istio.boolean(ctx, body, "allowPartialMessage", bpath)),
            body_as_bytes=bool(istio.boolean(ctx, body, "packAsBytes", bpath))))
    return tuple(out)


def _rate_limiters(ctx: Ctx, data: Mapping[str, Any], path: str
                   ) -> tuple[RateLimitProvider, ...]:
    """`extensionProviders` of kind envoyRateLimit (Legation's: service, port, timeout,
    failOpen; Envoy's defaults: 20ms, fail open)."""
    out = []
    for ppath, item in ctx.mapping_items(data, "extensionProviders", path, problem="provider"):
        if "envoyRateLimit" not in item:
            continue
        name = istio.string(ctx, item, "name", ppath, required=True, expected="a name")
        kpath = child_path(ppath, "envoyRateLimit")
        section = ctx.mapping(item, "envoyRateLimit", ppath, problem="rate-limit")
        istio.check_fields(ctx, section, kpath, ("service", "port", "timeout", "failOpen"),
                           what="envoyRateLimit")
        service = istio.string(ctx, section, "service", kpath, required=True,
                               expected="the rate limit service's host name, e.g. "
                               "ratelimit.infra.svc.cluster.local")
        port = ctx.port(section, "port", kpath, problem="port", required=True)
        timeout = istio.duration_ms(ctx, section, "timeout", kpath)
        fail_open = istio.boolean(ctx, section, "failOpen", kpath)
        if name and service and port:
            out.append(RateLimitProvider(
                name=name, service=service, port=port,
                timeout_s=(timeout if timeout is not None else 20) / 1000,
                fail_open=True if fail_open is None else fail_open))
    return tuple(out)


def _status(ctx: Ctx, section: Mapping[str, Any], path: str) -> int:
    """`statusOnError`: an HTTP status Envoy knows, as a string ("403"), default 403."""
    raw = section.get("statusOnError")
    if raw is None:
        return 403
    text = str(raw) if isinstance(raw, str | int) and not isinstance(raw, bool) else ""
    if text.isdigit() and int(text) in _STATUS_CODES:
        return int(text)
    ctx.invalid(child_path(path, "statusOnError"), "status-on-error", raw,
                'an HTTP status code Envoy can send, e.g. "403" or "503"')
    return 403


def _providers(ctx: Ctx, data: Mapping[str, Any], path: str) -> tuple[LogProvider, ...]:
    """`extensionProviders`: the envoyFileAccessLog and envoyOtelAls ones (tracing ones:
    `_tracers`, authorizers: `_authorizers`); other kinds are said not to be (yet)."""
    out = []
    for ppath, item in ctx.mapping_items(data, "extensionProviders", path, problem="provider"):
        name = istio.string(ctx, item, "name", ppath, required=True, expected="a name")
        kinds = [k for k in item if k != "name"]
        if kinds in (["opentelemetry"], ["zipkin"], ["envoyExtAuthzHttp"],
                     ["envoyExtAuthzGrpc"], ["envoyRateLimit"]):
            continue
        if kinds not in (["envoyFileAccessLog"], ["envoyOtelAls"]):
            ctx.info(ppath, "provider-not-applied",
                     f"provider {name!r} ({', '.join(kinds) or 'no kind'}) is not applied: "
                     "Legation serves envoyFileAccessLog, envoyOtelAls, opentelemetry, zipkin, "
                     "envoyExtAuthzHttp, envoyExtAuthzGrpc and envoyRateLimit providers (and "
                     "the built-in envoy).")
            continue
        kind = kinds[0]
        otel = kind == "envoyOtelAls"
        fpath = child_path(ppath, kind)
        section = ctx.mapping(item, kind, ppath, problem="file-access-log")
        istio.check_fields(ctx, section, fpath,
                           ("service", "port", "logName", "logFormat") if otel
                           else ("path", "logFormat"), what=kind)
        file = "" if otel else (istio.string(ctx, section, "path", fpath) or "/dev/stdout")
        service, port = "", None
        if otel:
            service = istio.string(ctx, section, "service", fpath, required=True,
                                   expected="the collector's host name, e.g. "
                                   "otel-collector.observability.svc.cluster.local")
            port = ctx.port(section, "port", fpath, problem="port", required=True)
        fmt = ctx.mapping(section, "logFormat", fpath, problem="log-format")
        text = istio.string(ctx, fmt, "text", child_path(fpath, "logFormat"))
        labels = ctx.mapping(fmt, "labels", child_path(fpath, "logFormat"), problem="labels")
        if text and labels:
            ctx.error(child_path(fpath, "logFormat"), "log-format-invalid",
                      "a log format is text or labels, not both.")
        json_labels = tuple((str(k), str(v)) for k, v in sorted(labels.items()))
        if not name or (otel and not (service and port)):
            continue
        out.append(LogProvider(name=name, path=file, text_format=text, json_labels=json_labels,
                               otel=otel, service=service, port=port or 0,
                               log_name=istio.string(ctx, section, "logName", fpath)
                               if otel else ""))
    return tuple(out)


def _default_providers(ctx: Ctx, data: Mapping[str, Any], path: str
                       ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(defaultProviders.accessLogging, defaultProviders.tracing)."""
    section = ctx.mapping(data, "defaultProviders", path, problem="default-providers")
    dpath = child_path(path, "defaultProviders")
    for key in section:
        if key not in ("accessLogging", "tracing"):
            ctx.info(child_path(dpath, str(key)), "field-not-applied",
                     f"defaultProviders.{key} is not applied yet (accessLogging and tracing "
                     "are).")
    return (istio.strings(ctx, section, "accessLogging", dpath),
            istio.strings(ctx, section, "tracing", dpath))


def _outbound(ctx: Ctx, data: Mapping[str, Any], path: str) -> OutboundPolicy:
    p = child_path(path, "outboundTrafficPolicy")
    section = ctx.mapping(data, "outboundTrafficPolicy", path, problem="outbound-policy",
                          expected="a mapping {mode: ALLOW_ANY | REGISTRY_ONLY}")
    for key in section:
        if key not in _POLICY_FIELDS:
            ctx.error(child_path(p, str(key)), "field-unknown",
                      f"outboundTrafficPolicy has no field {key!r}; expected mode.")
    if "egressProxy" in section:
        ctx.info(child_path(p, "egressProxy"), "field-not-applied",
                 "egressProxy is not applied: route outbound traffic to an egress gateway "
                 "with a VirtualService instead.")
    mode = section.get("mode", OutboundPolicy.ALLOW_ANY.value)
    if mode not in [m.value for m in OutboundPolicy]:
        ctx.error(child_path(p, "mode"), "outbound-policy-invalid",
                  f"found {describe(mode)}; expected ALLOW_ANY or REGISTRY_ONLY.")
        return OutboundPolicy.ALLOW_ANY
    return OutboundPolicy(mode)
