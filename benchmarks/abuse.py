"""Abusive xDS clients against a real `legation serve`: memory and log growth (issue 13).

The clients of the issue's report, on loopback, none with a credential:
`NODE_STREAMS` streams whose node id is 4 MB, `NACKS` NACKs of 8 MB each,
`NAME_REQUESTS` requests naming 100,000 resources each. Measured: the server's
resident memory (VmRSS) before and after, and how many bytes of log it wrote.

Run against another checkout (`--source DIR`, e.g. an older commit in a
worktree) to compare before and after a change on the same machine:

    python -m benchmarks.abuse                      # this checkout
    python -m benchmarks.abuse --source /tmp/old    # another one
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from grpc import aio

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
NODE_STREAMS = 15
NODE_ID_BYTES = 4_000_000
NACKS = 10
NACK_BYTES = 8_000_000
NAME_REQUESTS = 20
NAMES = 100_000
MESH = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: web}}
"""


@dataclass
class AbuseResult:
    rss_before_mb: float
    rss_after_mb: float
    log_bytes: int
    log_lines: int
    refused: dict[str, int]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _stream(target: str, requests: list[Any]) -> str:
    """Send `requests` on one ADS stream; the status the server ends it with."""
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    async with aio.insecure_channel(target, options=options) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        try:
            async with asyncio.timeout(20):
                for r in requests:
                    await call.write(r)
                await asyncio.sleep(0.2)
                call.cancel()
                return str((await call.code()).name)
        except (aio.AioRpcError, aio.UsageError, TimeoutError, grpc.RpcError):
            return str((await call.code()).name)


def _request(node_id: str = "web-1.shop", **fields: Any) -> Any:
    r = discovery_pb2.DiscoveryRequest(type_url=CLUSTER, **fields)
    r.node.id = node_id
    return r


async def _abuse(target: str) -> dict[str, int]:
    refused: dict[str, int] = {}

    def count(code: str) -> None:
        refused[code] = refused.get(code, 0) + 1

    for _ in range(NODE_STREAMS):
        count(await _stream(target, [_request("x" * NODE_ID_BYTES)]))
    first = _request()
    for _ in range(NACKS):
        nack = _request(response_nonce="1")
        nack.error_detail.message = "e" * NACK_BYTES
        count(await _stream(target, [first, nack]))
    names = [f"outbound|80||svc-{i}.shop.svc.cluster.local" for i in range(NAMES)]
    for _ in range(NAME_REQUESTS):
        count(await _stream(target, [_request(resource_names=names)]))
    return refused


def run(source: Path | None = None) -> AbuseResult:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "mesh").mkdir()
        (root / "mesh" / "mesh.yaml").write_text(MESH)
        xds, admin = _free_port(), _free_port()
        log = root / "legation.log"
        env = dict(os.environ)
        if source is not None:
            env["PYTHONPATH"] = str(source)
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "legation", "serve", "--config-dir", str(root / "mesh"),
                 "--xds-address", f"127.0.0.1:{xds}", "--admin-address", f"127.0.0.1:{admin}",
                 "--log-format", "json"],
                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp)
            try:
                time.sleep(3.0)  # started, initial scan done
                before = _rss_mb(proc.pid)
                refused = asyncio.run(_abuse(f"127.0.0.1:{xds}"))
                time.sleep(1.0)
                after = _rss_mb(proc.pid)
            finally:
                proc.terminate()
                proc.wait(timeout=10)
        data = log.read_bytes()
        return AbuseResult(rss_before_mb=round(before, 1), rss_after_mb=round(after, 1),
                           log_bytes=len(data), log_lines=data.count(b"\n"), refused=refused)


def summary(result: dict[str, Any]) -> str:
    return (f"abusive xDS clients ({NODE_STREAMS} x {NODE_ID_BYTES // 1_000_000} MB node ids, "
            f"{NACKS} x {NACK_BYTES // 1_000_000} MB NACKs, {NAME_REQUESTS} x {NAMES:,} names): "
            f"RSS {result['rss_before_mb']} -> {result['rss_after_mb']} MB, log "
            f"{result['log_bytes']:,} bytes in {result['log_lines']} lines; refused "
            f"{result['refused']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=None,
                        help="the checkout whose `legation` to run (default: this one)")
    args = parser.parse_args()
    print(json.dumps(asdict(run(args.source)), indent=2))


if __name__ == "__main__":
    main()
