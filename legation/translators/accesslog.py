"""Access logs: `LogSink`s (model/telemetry.py) -> Envoy `AccessLog`s on HTTP connection
managers and TCP proxies.

Each sink is Envoy's file access logger (`envoy.access_loggers.file`) on its
provider's path, a text line (the provider's format, else the default line
below, modelled on Istio's: what was asked, what came back, where it went) or
a JSON object of the provider's labels; a Telemetry `filter.expression` is
Envoy's CEL access log filter, evaluated per request. An `envoyOtelAls`
provider is Envoy's OpenTelemetry access logger instead: one OTLP log record
per request (the same line as its body, or the labels as attributes) sent
over gRPC to the cluster ``accesslog|<provider>`` (`log_clusters`), as Istio.
"""

from __future__ import annotations

from typing import Any

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import (
    base_pb2,
    config_source_pb2,
    grpc_service_pb2,
    substitution_format_string_pb2,
)
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.access_loggers.open_telemetry.v3 import logs_service_pb2 as otel_pb2
from google.protobuf import struct_pb2

from legation.model.telemetry import LogProvider, LogSink
from legation.translators.common import host_cluster, pack

FILE_LOGGER = "envoy.access_loggers.file"
OTEL_LOGGER = "envoy.access_loggers.open_telemetry"
CEL_FILTER = "envoy.access_loggers.extension_filters.cel"
DEFAULT_TEXT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% "
    "%BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%DOWNSTREAM_REMOTE_ADDRESS% %ROUTE_NAME%\n"
)


def access_logs(sinks: tuple[LogSink, ...]) -> list[accesslog_pb2.AccessLog]:
    return [_access_log(s) for s in sinks]


def log_clusters(*groups: tuple[LogSink, ...]) -> list[cluster_pb2.Cluster]:
    """The collector clusters the sinks of an `envoyOtelAls` provider send to."""
    providers = {s.provider.name: s.provider for g in groups for s in g if s.provider.otel}
    return [_collector(providers[n]) for n in sorted(providers)]


def cluster_name(provider: LogProvider) -> str:
    return f"accesslog|{provider.name}"


def _collector(provider: LogProvider) -> cluster_pb2.Cluster:
    return host_cluster(cluster_name(provider), provider.service, provider.port, grpc=True)


def _otel(sink: LogSink) -> Any:
    provider = sink.provider
    config = otel_pb2.OpenTelemetryAccessLogConfig(
        common_config=als_pb2.CommonGrpcAccessLogConfig(
            log_name=provider.log_name or provider.name,
            grpc_service=grpc_service_pb2.GrpcService(
                envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(
                    cluster_name=cluster_name(provider))),
            transport_api_version=config_source_pb2.V3))
    if provider.json_labels:
        for key, value in provider.json_labels:
            config.attributes.values.add(key=key).value.string_value = value
    else:
        config.body.string_value = (provider.text_format or DEFAULT_TEXT).rstrip("\n")
    return config


def _access_log(sink: LogSink) -> accesslog_pb2.AccessLog:
    provider = sink.provider
    if provider.otel:
        log = accesslog_pb2.AccessLog(name=OTEL_LOGGER, typed_config=pack(_otel(sink)))
        _filter(log, sink)
        return log
    fmt = substitution_format_string_pb2.SubstitutionFormatString()
    if provider.json_labels:
        fmt.json_format.CopyFrom(struct_pb2.Struct(fields={
            k: struct_pb2.Value(string_value=v) for k, v in provider.json_labels}))
    else:
        text = provider.text_format or DEFAULT_TEXT
        fmt.text_format_source.CopyFrom(base_pb2.DataSource(
            inline_string=text if text.endswith("\n") else text + "\n"))
    log = accesslog_pb2.AccessLog(
        name=FILE_LOGGER,
        typed_config=pack(file_pb2.FileAccessLog(path=provider.path, log_format=fmt)))
    _filter(log, sink)
    return log


def _filter(log: accesslog_pb2.AccessLog, sink: LogSink) -> None:
    if sink.filter:
        log.filter.extension_filter.name = CEL_FILTER
        log.filter.extension_filter.typed_config.CopyFrom(
            pack(cel_pb2.ExpressionFilter(expression=sink.filter)))
