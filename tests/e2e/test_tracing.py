"""Issue 12 (part): traces from real Envoys to an OpenTelemetry collector.

MeshConfig names an `opentelemetry` provider; a mesh-wide Telemetry samples
every request and tags spans. A request from frontend's app through its
sidecar to catalog's sidecar makes two spans (the client's, the server's),
which a small OTLP/gRPC collector (OTLP's TraceService/Export, its messages from
the OpenTelemetry protos xds-protos ships, served by grpcio in this test)
receives with one trace id.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from .harness import MeshLab, eventually
from .otlp import one_request, otlp_collector

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: otel
      opentelemetry: {service: "COLLECTOR_HOST", port: COLLECTOR_PORT}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  tracing:
  - providers: [{name: otel}]
    randomSamplingPercentage: 100
    customTags:
      mesh: {literal: {value: legation}}
"""


TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"


class Collector:
    def __init__(self) -> None:
        self.spans: list[tuple[str, str, dict[str, str]]] = []  # (service, trace id, attrs)

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for rs in request.resource_spans:
            service = next((a.value.string_value for a in rs.resource.attributes
                            if a.key == "service.name"), "")
            # xds-protos ships an OpenTelemetry proto from before `scope_spans` was named so:
            # same field number, same shape
            for ss in getattr(rs, "scope_spans", None) or rs.instrumentation_library_spans:
                for span in ss.spans:
                    attrs = {a.key: a.value.string_value for a in span.attributes}
                    self.spans.append((service, span.trace_id.hex(), attrs))
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_two_hops_share_a_trace_id_at_the_collector(mesh: MeshLab) -> None:
    collector = Collector()
    async with otlp_collector(mesh, TRACE_SERVICE, collector.Export,
                              trace_service_pb2.ExportTraceServiceRequest,
                              trace_service_pb2.ExportTraceServiceResponse) as address:
        await one_request(mesh, CONFIG, address, "/traced")

        async def both() -> dict[str, list[str]] | None:
            by_trace: dict[str, set[str]] = {}
            for service, trace, _ in collector.spans:
                by_trace.setdefault(trace, set()).add(service)
            found = {t: sorted(s) for t, s in by_trace.items()
                     if {"frontend.shop", "catalog-v1.shop"} <= s}
            return found or None

        # Envoy's OpenTelemetry tracer exports in batches, every 5 s by default.
        traces = await eventually(both, timeout=20, what="both hops' spans at the collector")
        (trace_id,) = traces
        print(f"\ntrace {trace_id}: {traces[trace_id]}")
        assert all(attrs.get("mesh") == "legation" for _, t, attrs in collector.spans
                   if t == trace_id)  # the Telemetry's custom tag
    await asyncio.sleep(0)
