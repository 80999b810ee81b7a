"""`python -m benchmarks.run --quick`: every scenario runs and reports sane values.

Only the structure and the behaviour behind the numbers are asserted (every
proxy got every change; an endpoint-only change carries one
ClusterLoadAssignment; resources are shared between proxies). Timings are
results, never pass/fail: there is no wall-clock threshold here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD_S = 300  # the quick run takes seconds; this only stops a hung run


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "bench-results.json"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--output", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=HANG_GUARD_S, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert "Fan-out" in done.stdout and "Translation" in done.stdout  # the tables
    data: dict[str, Any] = json.loads(out.read_text())
    return data


def test_the_file_names_the_run(result: dict[str, Any]) -> None:
    assert result["schema"] == 1
    assert result["quick"] is True
    assert result["machine"]["cpus"] >= 1
    assert set(result["scenarios"]) == {"translation", "fanout", "envoy", "scoping",
                                        "telemetry", "abuse"}


def test_abusive_clients_are_refused_and_logged_in_a_few_lines(result: dict[str, Any]) -> None:
    abuse = result["scenarios"]["abuse"]
    assert sum(abuse["refused"].values()) == 45 and "OK" not in abuse["refused"]
    assert abuse["log_lines"] < 45  # not a line per abusive request, let alone its payload
    assert abuse["log_bytes"] < 45 * 1000


def test_telemetry_config_adds_to_each_proxys_own_resources(result: dict[str, Any]) -> None:
    cost = result["scenarios"]["telemetry"]
    assert cost["none"]["proxies"] == cost["access_logs"]["proxies"] > 0
    assert 0 < cost["access_logs"]["added_bytes_per_proxy"] < (
        cost["logs_and_tracing"]["added_bytes_per_proxy"])


def test_a_sidecar_cuts_what_each_proxy_is_sent(result: dict[str, Any]) -> None:
    scoped = result["scenarios"]["scoping"]
    assert scoped["sidecar"]["proxies"] == scoped["unscoped"]["proxies"] > 0
    assert scoped["unscoped"]["distinct_bases"] == 1  # everyone shares one base
    assert scoped["sidecar"]["distinct_bases"] > 1  # one per namespace scope
    assert 0 < scoped["ratio"] < 0.5


def test_translation_shares_each_resource_between_proxies(result: dict[str, Any]) -> None:
    meshes = result["scenarios"]["translation"]["meshes"]
    assert [m["mesh"]["services"] for m in meshes] == sorted(m["mesh"]["services"] for m in meshes)
    for m in meshes:
        mesh = m["mesh"]
        assert mesh["diagnostics"] == 0, "the generated mesh is valid config"
        assert mesh["proxies"] == mesh["workloads"] > 0
        assert m["full_rebuild"]["proxies"] == mesh["proxies"]
        sharing = m["sharing"]
        assert sharing["references"] > sharing["distinct_objects"] >= sharing["distinct_contents"]
        assert sharing["ratio"] > 1
        assert set(m["bytes"]["distinct_by_type"]) >= {"cds", "eds", "lds", "rds"}
        assert m["bytes"]["per_proxy_mean"] > 0
        # one more endpoint of one service: one ClusterLoadAssignment per proxy changes
        assert m["after_endpoint_change"]["changed_resources_per_proxy"] == {"eds": 1.0}
        for part in ("translate_mesh", "translate_namespace", "translate_proxy", "full_rebuild"):
            assert m[part]["median_s"] > 0


def _runs(result: dict[str, Any]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = result["scenarios"]["fanout"]["runs"]
    assert runs
    for run in runs:
        assert "error" not in run, run.get("traceback") or run["error"]
    return runs


def test_fanout_reaches_every_proxy(result: dict[str, Any]) -> None:
    runs = _runs(result)
    assert {r["spec"]["mode"] for r in runs} == {"sotw", "delta"}
    for run in runs:
        proxies = run["spec"]["proxies"]
        assert run["connect"]["ready"] == proxies and run["connect"]["errors"] == 0
        assert run["rss_connected_bytes"] > 0
        kinds = [c["kind"] for c in run["changes"]]
        assert sorted(set(kinds)) == ["cluster", "endpoint"]
        for change in run["changes"]:
            assert change["complete"] == change["proxies"] == proxies
            assert change["acked_s"]["count"] == proxies
            assert 0 < change["published_s"] <= change["acked_s"]["max"]
            assert change["received_s"]["max"] <= change["acked_s"]["max"]
            assert change["debounce_quiet_s"] > 0


def test_a_reconnect_storm_resyncs_every_proxy(result: dict[str, Any]) -> None:
    for run in _runs(result):
        storm = run["storm"]
        assert storm["resynced"] == run["spec"]["proxies"], storm
        assert storm["wall_s"] > 0 and storm["server_cpu_s"] > 0
        assert run["rss_settled_bytes"] > 0


def test_endpoint_change_sends_only_the_changed_cla(result: dict[str, Any]) -> None:
    for run in _runs(result):
        for change in (c for c in run["changes"] if c["kind"] == "endpoint"):
            assert change["changed_types_per_proxy"] == {"eds": 1.0}
            assert change["responses_per_proxy"] == {"eds": 1.0}
            assert change["resources_per_proxy"] == {"eds": 1.0}
            assert 0 < change["bytes_per_proxy"]["max"] < 4096


def test_cluster_change_sends_all_clusters_in_sotw_and_one_in_delta(
    result: dict[str, Any],
) -> None:
    for run in _runs(result):
        for change in (c for c in run["changes"] if c["kind"] == "cluster"):
            assert {"cds", "eds"} <= set(change["changed_types_per_proxy"])
            clusters = change["resources_per_proxy"]["cds"]
            if run["spec"]["delta"]:
                assert clusters == 1.0
            else:
                assert clusters > 1.0  # SotW CDS responses carry the complete set


def test_fanout_summary_has_headlines_and_ratios(result: dict[str, Any]) -> None:
    fanout = result["scenarios"]["fanout"]
    headline = fanout["summary"]["headline"]
    for n in fanout["config"]["proxies"]:
        for mode in ("sotw", "delta"):
            for kind in ("endpoint", "cluster"):
                assert headline[f"{mode}/{n}/{kind}"]["all_complete"] is True
    ratios = fanout["summary"]["ratios"]
    assert {(r["proxies"], r["change"]) for r in ratios["delta_vs_sotw"]} == {
        (n, k) for n in fanout["config"]["proxies"] for k in ("endpoint", "cluster")
    }
    assert all(r["last_ack"] > 0 for r in ratios["delta_vs_sotw"])
    assert len(ratios["fleet_size"]) == 2 * 2 * (len(fanout["config"]["proxies"]) - 1)


def test_real_envoys_all_see_each_change(result: dict[str, Any]) -> None:
    envoy = result["scenarios"]["envoy"]
    if "skipped" in envoy:
        pytest.skip(envoy["skipped"])
    for run in envoy["runs"]:
        assert "error" not in run, run["error"]
        assert run["changes"]
        for change in run["changes"]:
            assert change["complete"] == change["envoys"] == envoy["config"]["envoys"]
            assert 0 < change["store_saw_file_s"] <= change["seen_s"]["max"]
