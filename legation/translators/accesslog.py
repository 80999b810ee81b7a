"""Access logs: `LogSink`s (model/telemetry.py) -> Envoy `AccessLog`s on HTTP connection
managers and TCP proxies.

Each sink is Envoy's file access logger (`envoy.access_loggers.file`) on its
provider's path, a text line (the provider's format, else the default line
below, modelled on Istio's: what was asked, what came back, where it went) or
a JSON object of the provider's labels; a Telemetry `filter.expression` is
Envoy's CEL access log filter, evaluated per request.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.access_loggers.filters.cel.v3 import cel_pb2
from google.protobuf import struct_pb2

from legation.model.telemetry import LogSink
from legation.translators.common import pack

FILE_LOGGER = "envoy.access_loggers.file"
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


def _access_log(sink: LogSink) -> accesslog_pb2.AccessLog:
    provider = sink.provider
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
    if sink.filter:
        log.filter.extension_filter.name = CEL_FILTER
        log.filter.extension_filter.typed_config.CopyFrom(
            pack(cel_pb2.ExpressionFilter(expression=sink.filter)))
    return log
