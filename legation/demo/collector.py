"""The demo's trace collector: OTLP/gRPC TraceService/Export on 127.0.0.1:4317.

The shop's telemetry.yaml sends every sidecar's spans here (MeshConfig
`opentelemetry` provider); the demo shows one trace id and the workloads whose
spans carry it. Messages come from the OpenTelemetry protos xds-protos ships
(they predate the `scope_spans` name: same field number, same shape).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import grpc
from grpc import aio
from opentelemetry.proto.collector.trace.v1 import (  # type: ignore[import-untyped]
    trace_service_pb2,
)

TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
COLLECTOR = ("127.0.0.1", 4317)
KEPT = 10_000  # spans remembered (service, trace id)


class TraceCollector:
    def __init__(self, host: str = COLLECTOR[0], port: int = COLLECTOR[1]) -> None:
        self.address = (host, port)
        self.spans: deque[tuple[str, str]] = deque(maxlen=KEPT)
        self._server: aio.Server | None = None

    async def __aenter__(self) -> TraceCollector:
        self._server = aio.server()
        self._server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            TRACE_SERVICE, {"Export": grpc.unary_unary_rpc_method_handler(
                self._export,
                request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse
                .SerializeToString)}),))
        self._server.add_insecure_port(f"{self.address[0]}:{self.address[1]}")
        await self._server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.stop(None)

    async def _export(self, request: Any, context: Any) -> Any:
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes
                            if a.key == "service.name"), "")
            for ss in getattr(rs, "scope_spans", None) or rs.instrumentation_library_spans:
                for span in ss.spans:
                    self.spans.append((service, span.trace_id.hex()))
        return trace_service_pb2.ExportTraceServiceResponse()

    def widest_trace(self) -> tuple[str, list[str]] | None:
        """The trace id seen from the most workloads, and those workloads."""
        by_trace: dict[str, set[str]] = {}
        for service, trace in self.spans:
            by_trace.setdefault(trace, set()).add(service)
        if not by_trace:
            return None
        trace = max(by_trace, key=lambda t: (len(by_trace[t]), t))
        return trace, sorted(by_trace[trace])
