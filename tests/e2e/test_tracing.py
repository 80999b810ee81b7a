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

import grpc
import pytest
from grpc import aio
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from .harness import MeshLab, eventually, request

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

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(TRACE_SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.Export,
                request_deserializer=trace_service_pb2.ExportTraceServiceRequest.FromString,
                response_serializer=trace_service_pb2.ExportTraceServiceResponse
                .SerializeToString)})


async def test_two_hops_share_a_trace_id_at_the_collector(mesh: MeshLab) -> None:
    collector = Collector()
    server = aio.server()
    server.add_generic_rpc_handlers((collector.handler(),))
    host = mesh.loopback.next()
    port = server.add_insecure_port(f"{host}:0")
    await server.start()
    try:
        mesh.write("telemetry.yaml", CONFIG.replace("COLLECTOR_HOST", host)
                   .replace("COLLECTOR_PORT", str(port)))
        mesh.service("catalog")
        await mesh.backend("catalog-v1", app="catalog")
        client = mesh.client("frontend")
        await mesh.start()
        await eventually(lambda: mesh.converged([w.node_id for w in mesh.workloads.values()]),
                         what="every proxy ACKed")
        resp = await request(client.address, 15001, "GET", "/traced",
                             headers={"host": "catalog.shop:9080"}, timeout=5)
        assert resp.status == 200

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
    finally:
        await server.stop(None)
        await asyncio.sleep(0)
