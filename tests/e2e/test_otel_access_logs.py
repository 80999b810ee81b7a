"""Issue 12 (part): access logs over OTLP (MeshConfig `envoyOtelAls`) from real Envoys.

A mesh-wide Telemetry names an `envoyOtelAls` provider whose labels become the
records' attributes; a request from frontend through its sidecar to catalog's
makes one log record on each side, which a small OTLP/gRPC collector (LogsService
/Export, messages from the OpenTelemetry protos xds-protos ships, served by grpcio
in this test) receives with the request's method, path and response code.
"""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc import aio
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from .harness import MeshLab, eventually, request

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"
CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    extensionProviders:
    - name: otel-logs
      envoyOtelAls:
        service: "COLLECTOR_HOST"
        port: COLLECTOR_PORT
        logName: mesh-requests
        logFormat:
          labels: {method: "%REQ(:METHOD)%", path: "%REQ(:PATH)%", code: "%RESPONSE_CODE%"}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  accessLogging: [{providers: [{name: otel-logs}]}]
"""


class Collector:
    def __init__(self) -> None:
        self.records: list[dict[str, str]] = []

    async def Export(self, req: logs_service_pb2.ExportLogsServiceRequest,
                     context: Any) -> logs_service_pb2.ExportLogsServiceResponse:
        for rl in req.resource_logs:
            # an OpenTelemetry proto from before `scope_logs` / `log_records` were named
            # so: same field numbers, same shapes
            for sl in getattr(rl, "scope_logs", None) or rl.instrumentation_library_logs:
                for record in getattr(sl, "log_records", None) or sl.logs:
                    self.records.append({a.key: a.value.string_value
                                         for a in record.attributes})
        return logs_service_pb2.ExportLogsServiceResponse()

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(LOGS_SERVICE, {
            "Export": grpc.unary_unary_rpc_method_handler(
                self.Export,
                request_deserializer=logs_service_pb2.ExportLogsServiceRequest.FromString,
                response_serializer=logs_service_pb2.ExportLogsServiceResponse
                .SerializeToString)})


async def test_access_log_records_reach_an_otlp_collector(mesh: MeshLab) -> None:
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
        resp = await request(client.address, 15001, "GET", "/logged?x=1",
                             headers={"host": "catalog.shop:9080"}, timeout=5)
        assert resp.status == 200

        async def both_sides() -> list[dict[str, str]] | None:
            hits = [r for r in collector.records if r.get("path") == "/logged?x=1"]
            return hits if len(hits) >= 2 else None  # the client's and the server's

        hits = await eventually(both_sides, timeout=20, what="both sides' records")
        assert all(r["method"] == "GET" and r["code"] == "200" for r in hits)
    finally:
        await server.stop(None)
