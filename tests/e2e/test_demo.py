"""`legation demo` as `make demo` runs it: a subprocess on the repository's examples/shop,
real Envoys and apps on 127.0.10.x, stopped after --duration, nothing left behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from legation.demo.ports import PortError, check_free
from legation.demo.runner import Demo, find_config_dir

REPO = Path(__file__).resolve().parents[2]


def _demo_ports_free(tmp_path: Path) -> str | None:
    source = find_config_dir(None)
    demo = Demo(source=source, mesh_dir=source, work=tmp_path, out=sys.stdout)
    try:
        check_free(demo.ports())
    except PortError as e:
        return str(e)
    return None


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z":
            found.append(f"{proc.name}: {cmdline}")
    return found


def summary(output: str) -> dict[str, str]:
    [line] = [x for x in output.splitlines() if x.startswith("summary ")]
    return dict(pair.split("=", 1) for pair in line.split()[1:])


def test_demo_runs_the_shop_and_leaves_nothing_behind(tmp_path: Path) -> None:
    busy = _demo_ports_free(tmp_path)
    if busy is not None:
        pytest.skip(f"the demo's fixed addresses are taken: {busy}")

    done = subprocess.run(
        [sys.executable, "-m", "legation", "demo", "--duration", "8"],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=REPO,
        check=False,
    )

    out = done.stdout
    if done.returncode == 2 and "already in use" in done.stderr:  # taken since the check
        pytest.skip(f"the demo's fixed addresses are taken: {done.stderr.strip()}")
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{done.stderr}"
    got = summary(out)
    assert got["errors"] == "0", out
    assert int(got["catalog-v1"]) > 0 and int(got["catalog-v2"]) > 0, out
    assert got["order-v1"] == got["payment-v1"] == got["requests"], out
    assert got["in_sync"] == "6/6" and got["nacks"] == "0", out
    # From outside the mesh, over HTTPS through the ingress gateway, certificate verified.
    assert got["ingress"] == "200", out
    assert re.search(r"outside → GET https://shop.example.com:8443/shop via ingress-gateway "
                     r"\(127.0.10.6\) → 200 \(served by order-v1; certificate for "
                     r"shop.example.com verified\)", out), out
    # A service outside the mesh, known by its ServiceEntry, through frontend's sidecar.
    assert got["external"] == "200", out
    assert re.search(r"frontend → GET http://rates.example.com:80/ \(ServiceEntry\) → 200 "
                     r"\(served by rates.example.com, outside the mesh\)", out), out
    assert float(got["startup_s"]) > 0, out
    # A newcomer sees the mTLS identity each workload presented, and the header route:
    # requests sent with x-canary: true go to catalog-v2 (the split alone sends it 10%;
    # while the demo's live change has taken the rules away, any version serves them).
    assert got["identity.catalog-v2"] == "spiffe://cluster.local/ns/shop/sa/catalog-sa", out
    assert got["identity.order-v1"] == "spiffe://cluster.local/ns/shop/sa/order-sa", out
    canary = dict(pair.split(":") for pair in got["canary"].split(","))
    assert int(canary["catalog-v2"]) > int(canary.get("catalog-v1", 0)), out
    # gRPC to catalog.shop:7070, the same VirtualService steering both callers: the
    # proxyless client (mTLS from its agent's files; STRICT refuses plaintext) and the
    # caller through frontend's sidecar both reach v1 and v2, and nothing fails
    for caller in ("grpc.proxyless", "grpc.sidecar"):
        answers = dict(pair.split(":") for pair in got[caller].split(","))
        assert set(answers) == {"catalog-v1", "catalog-v2"}, (caller, out)
        assert int(answers["catalog-v1"]) > int(answers["catalog-v2"]), (caller, out)
    changes = [x for x in out.splitlines() if x.startswith("change ")]
    assert len(changes) == 2, out  # made live, then undone, each in sync everywhere
    assert all(re.search(r"→ (\d)/\1 proxies in sync [\d.]+s after the write", c) for c in changes)
    assert "stopped: 6 Envoys (0 still running)" in out
    assert "6 stock Envoys, each run by `legation proxy`" in out  # the users' command
    # Where to look, and one access log line of the client's sidecar (telemetry.yaml).
    assert "where to look while it runs: legation proxy-status" in out
    assert re.search(r'access log \(frontend\'s sidecar\): \[\S+\] "GET /shop HTTP/1.1" 200',
                     out), out
    # ... and a trace: one request's spans from several sidecars at the demo's collector
    found = re.search(r"trace ([0-9a-f]{32}): spans from (.+) \(received by the demo's OTLP "
                      r"collector 127.0.0.1:4317\)", out)
    assert found is not None, out
    assert "frontend.shop" in found.group(2) and "," in found.group(2), out
    [workdir] = set(re.findall(r"(/\S*legation-demo-[^/\s]+)/", out))
    assert not Path(workdir).exists()  # the temporary copy and logs are cleaned up
    assert _processes_mentioning(workdir) == []  # no Envoy (or anything) left running
