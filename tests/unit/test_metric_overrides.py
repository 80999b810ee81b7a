"""Telemetry metric overrides -> the stats a sidecar's bootstrap drops (issue 12)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import yaml

from legation.cli import main
from legation.model import Severity
from legation.model.telemetry import Telemetry, disabled_stats
from legation.sources.convert import convert_text

MESH = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-1, namespace: shop}
spec: {address: 10.0.0.1, labels: {app: web}, serviceAccount: web}
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: ALL_METRICS, mode: SERVER}
      disabled: true
    - match: {metric: REQUEST_DURATION, mode: CLIENT}
      disabled: true
---
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  metrics:
  - overrides:
    - match: {metric: REQUEST_DURATION}
      disabled: false
    - match: {metric: REQUEST_SIZE}
      disabled: true
      tagOverrides: {request_host: {value: request.host}}
    - match: {metric: REQUEST_COUNT}
      tagOverrides: {team: {value: "'shop'"}}
"""


def _telemetries() -> tuple[Telemetry, ...]:
    result = convert_text(MESH, file="t.yaml")
    assert not [d for d in result.diagnostics if d.severity is Severity.ERROR]
    return tuple(o for o in result.objects if isinstance(o, Telemetry))


def test_the_workload_level_wins_and_the_stats_of_each_side_go() -> None:
    patterns = disabled_stats(_telemetries(), namespace="shop", labels=(("app", "web"),),
                              root_namespace="istio-system")
    # the mesh disables every server-side metric; the workload enables durations again
    assert all(p.startswith(r"^cluster\.inbound\|") for p in patterns)
    assert not any("upstream_rq_time" in p for p in patterns)
    assert any(re.fullmatch(p[1:-1], "cluster.inbound|9080||.upstream_rq_200") for p in patterns)
    assert not any(re.fullmatch(p[1:-1], "cluster.outbound|9080||a.b.upstream_rq_200")
                   for p in patterns)
    other = disabled_stats(_telemetries(), namespace="shop", labels=(("app", "db"),),
                           root_namespace="istio-system")
    assert r"^cluster\.outbound\|.*\.upstream_rq_time$" in other


def test_what_cannot_apply_is_said() -> None:
    result = convert_text(MESH, file="t.yaml")
    codes = {d.code for d in result.diagnostics}
    assert "telemetry.field-not-applied" in codes  # tagOverrides
    assert "telemetry.metric-not-derived" in codes  # REQUEST_SIZE
    assert "telemetry.metrics-at-bootstrap" in codes  # restart needed
    assert "telemetry.tag-proxy-wide" in codes  # a literal tag: on every stat


def test_legation_bootstrap_writes_them_into_envoys_stats_settings(tmp_path: Path) -> None:
    (tmp_path / "mesh").mkdir()
    (tmp_path / "mesh" / "mesh.yaml").write_text(textwrap.dedent(MESH))
    out = tmp_path / "boot.yaml"
    assert main(["bootstrap", "--config-dir", str(tmp_path / "mesh"), "--workload", "db-1",
                 "--namespace", "shop", "--service-account", "x",
                 "--admin-address", "127.0.0.1:15000", "-o", str(out)]) == 2  # no such one
    assert main(["bootstrap", "--config-dir", str(tmp_path / "mesh"), "--workload", "web-1",
                 "--namespace", "shop", "--admin-address", "127.0.0.1:15000",
                 "-o", str(out)]) == 0
    matcher = yaml.safe_load(out.read_text())["stats_config"]["stats_matcher"]
    regexes = [p["safe_regex"]["regex"] for p in matcher["exclusion_list"]["patterns"]]
    assert r"^cluster\.inbound\|.*\.upstream_cx_total$" in regexes
    tags = yaml.safe_load(out.read_text())["stats_config"]["stats_tags"]
    assert {"tag_name": "team", "fixed_value": "shop"} in tags
