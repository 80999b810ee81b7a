"""Issue 12 (part): access logs over OTLP (MeshConfig `envoyOtelAls`) from real Envoys.

A mesh-wide Telemetry names an `envoyOtelAls` provider whose labels become the
records' attributes; a request from frontend through its sidecar to catalog's
makes one log record on each side, which a small OTLP/gRPC collector (LogsService
/Export, messages from the OpenTelemetry protos xds-protos ships, served by grpcio
in this test) receives with the request's method, path and response code.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2

from .harness import MeshLab, eventually
from .otlp import one_request, otlp_collector

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


async def test_access_log_records_reach_an_otlp_collector(mesh: MeshLab) -> None:
    collector = Collector()
    async with otlp_collector(mesh, LOGS_SERVICE, collector.Export,
                              logs_service_pb2.ExportLogsServiceRequest,
                              logs_service_pb2.ExportLogsServiceResponse) as address:
        await one_request(mesh, CONFIG, address, "/logged?x=1")

        async def both_sides() -> list[dict[str, str]] | None:
            hits = [r for r in collector.records if r.get("path") == "/logged?x=1"]
            return hits if len(hits) >= 2 else None  # the client's and the server's

        hits = await eventually(both_sides, timeout=20, what="both sides' records")
        assert all(r["method"] == "GET" and r["code"] == "200" for r in hits)
