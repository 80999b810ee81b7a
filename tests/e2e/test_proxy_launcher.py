"""`legation proxy` (issue 15, item 2): the one command that runs a sidecar.

A real `legation proxy` process writes the client workload's bootstrap and
starts stock Envoy; requests go through it. On SIGTERM it drains as Istio's
agent does: Envoy's health check fails first (`/ready` answers 503 DRAINING)
while Envoy still runs, then everything exits 0. When its credential changes
(a rotated token file, as kubelet rotates a projected token) it hot-restarts
Envoy: the new epoch takes over the listeners and traffic keeps flowing.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

import pytest

from legation.demo.http import HttpError, request

from .harness import MeshLab, eventually
from .security_lab import SecureLab

ADMIN = 15000


async def _proxy(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "legation", "proxy", *args,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)


async def _admin(address: str, path: str) -> tuple[int, str]:
    resp = await request(address, ADMIN, "GET", path, timeout=2.0)
    return resp.status, resp.body.decode(errors="replace")


async def _ready(address: str) -> bool:
    try:
        return (await _admin(address, "/ready"))[0] == 200
    except (OSError, HttpError, TimeoutError, asyncio.IncompleteReadError):
        return False


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.kill()
        await proc.wait()


@pytest.mark.parametrize("delta", [False], ids=["sotw"])
async def test_proxy_runs_envoy_and_drains_on_sigterm(mesh: MeshLab, tmp_path: Path) -> None:
    mesh.service("catalog")
    await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("web")
    await mesh.control_plane.start()
    await mesh.start_sidecar(mesh.workloads["catalog-v1"])
    host, port = mesh.control_plane.xds
    proxy = await _proxy(
        "--config-dir", str(mesh.config_dir), "--workload", "web", "--namespace", "shop",
        "--xds-address", f"{host}:{port}", "--admin-address", f"{client.address}:{ADMIN}",
        "--workdir", str(tmp_path / "proxy"), "--drain-duration", "2s",
        "--", "--concurrency", "1")
    try:
        await eventually(lambda: _ready(client.address), what="Envoy LIVE", timeout=30)
        resp = await mesh.get(client, "catalog.shop:9080")
        assert resp.status == 200 and resp.header("x-served-by") == "catalog-v1"
        assert (tmp_path / "proxy" / "envoy-rev0.yaml").stat().st_mode & 0o077 == 0

        stopped_at = time.monotonic()
        proxy.send_signal(signal.SIGTERM)

        async def draining() -> bool:  # the health check fails while Envoy still runs
            status, body = await _admin(client.address, "/ready")
            return status == 503 and "DRAINING" in body

        await eventually(draining, what="/ready answering 503 DRAINING", timeout=5)
        assert await asyncio.wait_for(proxy.wait(), 15) == 0
        assert time.monotonic() - stopped_at >= 1.5  # the drain period was given
        assert not await _ready(client.address)  # and Envoy is gone
    finally:
        await _stop(proxy)


async def test_a_new_token_hot_restarts_envoy_without_a_failed_request(
    lab: SecureLab, tmp_path: Path,
) -> None:
    lab.service("catalog")
    backend = await lab.backend("catalog-v1", app="catalog", service_account="catalog")
    client = lab.client("web", service_account="web")
    await lab.start()
    await lab.start_sidecar(backend)
    token = tmp_path / "token"
    token.write_text(lab.token(workload="web", service_account="web"))
    host, port = lab.tls_xds
    proxy = await _proxy(
        "--config-dir", str(lab.config_dir), "--ca-dir", str(lab.ca_dir),
        "--workload", "web", "--namespace", "shop", "--xds-tls",
        "--xds-address", f"{host}:{port}", "--admin-address", f"{client.address}:{ADMIN}",
        "--token-file", str(token), "--check-interval", "0.3s",
        "--workdir", str(tmp_path / "proxy"))
    statuses: list[int] = []
    try:
        await eventually(lambda: _ready(client.address), what="Envoy LIVE", timeout=30)
        assert (await lab.call(client, "catalog")).status == 200

        async def traffic() -> None:
            while True:
                try:
                    statuses.append((await lab.call(client, "catalog", timeout=3)).status)
                except (OSError, HttpError, TimeoutError, asyncio.IncompleteReadError):
                    statuses.append(0)
                await asyncio.sleep(0.02)

        load = asyncio.create_task(traffic())
        await asyncio.sleep(1.1)  # a token minted a second later differs (its iat)
        token.write_text(lab.token(workload="web", service_account="web"))

        async def restarted() -> bool:
            _, body = await _admin(client.address, "/server_info")
            return '"restart_epoch": 1' in body and '"state": "LIVE"' in body

        await eventually(restarted, what="Envoy hot-restarted to epoch 1", timeout=30)
        await asyncio.sleep(1.0)
        load.cancel()
        boot1 = (tmp_path / "proxy" / "envoy-rev1.yaml").read_text()
        assert token.read_text() in boot1  # the new epoch carries the new credential
        assert statuses and set(statuses) == {200}, statuses
        assert (await lab.call(client, "catalog")).status == 200
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proxy.wait(), 25)
        finally:
            await _stop(proxy)
