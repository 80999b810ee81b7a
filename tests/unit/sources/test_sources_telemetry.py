"""Telemetry (access logging): conversion, precedence, and what each proxy logs to."""

from __future__ import annotations

import pytest
from sources_builders import convert, marked_line

from legation.mesh.store import MeshStore
from legation.model import Severity, Workload
from legation.model.telemetry import LogMode, Telemetry
from legation.sources.convert import convert_text

HEAD = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"


def telemetry(name: str, namespace: str, body: str) -> str:
    return HEAD + f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n{body}"


def test_an_access_logging_entry() -> None:
    (t,) = convert(telemetry("t", "shop", """\
  selector: {matchLabels: {app: a}}
  accessLogging:
  - providers: [{name: file}]
    filter: {expression: "response.code >= 400"}
    match: {mode: CLIENT}
""")).objects
    assert isinstance(t, Telemetry) and t.selector == (("app", "a"),)
    (entry,) = t.access_logging
    assert (entry.providers, entry.filter, entry.mode) == (
        ("file",), "response.code >= 400", LogMode.CLIENT)


@pytest.mark.parametrize(("body", "code", "severity"), [
    ("  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT}\n"
     "      tagOverrides: {x: {value: request.host}}  # <-\n", "telemetry.field-not-applied",
     Severity.WARNING),
    ("  tracing:\n  - randomSamplingPercentage: 120  # <-\n", "telemetry.sampling-invalid",
     Severity.ERROR),
    ("  accessLogging:\n  - match: {mode: BOTH}  # <-\n", "telemetry.mode-invalid",
     Severity.ERROR),
    ("  accessLogs: []  # <-\n", "telemetry.field-unknown", Severity.ERROR),
], ids=["metrics", "sampling", "mode", "unknown"])
def test_what_is_said(body: str, code: str, severity: Severity) -> None:
    text = telemetry("t", "shop", body)
    result = convert(text)
    found = [d for d in result.diagnostics if d.code == code]
    assert found and found[0].severity is severity and found[0].line == marked_line(text)


MESH = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    accessLogFile: /dev/stdout
    extensionProviders:
    - {name: file, envoyFileAccessLog: {path: /tmp/a.log}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a, namespace: shop}
spec: {address: 10.0.0.1, labels: {app: a}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b, namespace: shop}
spec: {address: 10.0.0.2, labels: {app: b}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: c, namespace: other}
spec: {address: 10.0.0.3, labels: {app: c}}
"""


def _paths(extra: str, workload: str, mode: LogMode = LogMode.CLIENT) -> list[str]:
    store = MeshStore()
    store.replace_source("m", convert_text(MESH + extra, file="m.yaml").objects)
    mesh = store.snapshot()
    (w,) = [x for x in mesh.workloads if isinstance(x, Workload) and x.name == workload]
    return [s.provider.path for s in mesh.access_logs(w, mode)]


def test_without_telemetry_meshconfig_decides() -> None:
    assert _paths("", "a") == ["/dev/stdout"]


def test_the_most_specific_telemetry_wins() -> None:
    docs = ("---\n" + telemetry("mesh", "istio-system",
                                "  accessLogging: [{providers: [{name: file}]}]\n")
            + "---\n" + telemetry("ns", "shop", "  accessLogging: [{disabled: true}]\n")
            + "---\n" + telemetry("wl", "shop", "  selector: {matchLabels: {app: a}}\n"
                                  "  accessLogging: [{providers: [{name: envoy}], "
                                  "match: {mode: SERVER}}]\n"))
    assert _paths(docs, "c") == ["/tmp/a.log"]  # mesh-wide
    assert _paths(docs, "b") == []  # its namespace: disabled
    assert _paths(docs, "a", LogMode.SERVER) == ["/dev/stdout"]  # its own, server side
    assert _paths(docs, "a", LogMode.CLIENT) == []  # the namespace's for the client side
