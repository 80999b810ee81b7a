"""`legation serve` as a child process: start, wait ready, kill, restart, read its admin API.

Where `legation.demo.envoy` manages the data plane, this manages the control
plane the same way, as a real process, so that killing it (SIGKILL) and
starting it again is a real outage and a real cold start. Used by the
end-to-end tests (tests/e2e/harness.py); the demo itself runs the control
plane in-process (`legation.app.App`).

The process runs `python -m legation serve` with the interpreter running
this code, logs JSON lines to `<workdir>/<name>.log` (appended across
restarts, so one file tells the whole story), and gets the same parent-death
signal as an Envoy (see envoy.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

from legation.agent.envoyproc import stop_process
from legation.demo.http import HttpError, HttpResponse, request

_POLL = 0.02  # seconds between readiness probes


class ControlPlaneError(Exception):
    """The control plane did not start, died, or its admin API failed."""


class ControlPlane:
    """One `legation serve` process at a time; after stop()/kill() it may start again."""

    def __init__(
        self,
        *,
        config_dirs: Sequence[Path],
        workdir: Path,
        xds: tuple[str, int],
        admin: tuple[str, int],
        name: str = "legation",
        debounce_quiet: str = "20ms",
        debounce_max: str = "200ms",
        log_level: str = "info",
        extra_args: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.xds = xds
        self.admin = admin
        self._args = [
            *(arg for d in config_dirs for arg in ("--config-dir", str(d))),
            "--xds-address", f"{xds[0]}:{xds[1]}",
            "--admin-address", f"{admin[0]}:{admin[1]}",
            "--debounce-quiet", debounce_quiet,
            "--debounce-max", debounce_max,
            "--log-format", "json",
            "--log-level", log_level,
            *extra_args,
        ]  # fmt: skip
        self._proc: asyncio.subprocess.Process | None = None

    # -- lifecycle -------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def command(self) -> list[str]:
        base = [sys.executable, "-m", "legation", "serve", *self._args]
        setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
        return [setpriv, "--pdeathsig", "KILL", "--", *base] if setpriv else base

    async def start(self, *, timeout: float = 20.0) -> None:
        """Spawn the server and wait until `/readyz` answers 200."""
        if self.running:
            raise ControlPlaneError(f"{self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            await self.wait_ready(timeout=timeout)
        except BaseException:
            await self.stop()
            raise

    async def kill(self) -> int | None:
        """SIGKILL: no goodbye to any stream, as a crash or an OOM kill."""
        return await self.stop(grace=0.0, sig=signal.SIGKILL)

    async def stop(self, *, grace: float = 5.0, sig: int = signal.SIGTERM) -> int | None:
        """Send `sig`, SIGKILL after `grace` seconds; always reaped. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        return await stop_process(proc, grace=grace, sig=sig)

    async def restart(self, *, timeout: float = 20.0) -> None:
        await self.stop()
        await self.start(timeout=timeout)

    async def __aenter__(self) -> ControlPlane:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def wait_ready(self, *, timeout: float = 20.0) -> None:
        last = "no answer"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self._proc is not None and self._proc.returncode is not None:
                        raise ControlPlaneError(
                            f"{self.name} exited with {self._proc.returncode}; "
                            f"log {self.log_path}:\n{self.log_tail()}"
                        )
                    try:
                        resp = await self.admin_get("/readyz", timeout=2.0)
                    except (OSError, TimeoutError, HttpError) as e:
                        last = f"{type(e).__name__}: {e}"
                    else:
                        last = f"{resp.status} {resp.text().strip()}"
                        if resp.status == 200:
                            return
                    await asyncio.sleep(_POLL)
        except TimeoutError:
            raise ControlPlaneError(
                f"{self.name}: /readyz not 200 within {timeout}s (last: {last}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            ) from None

    # -- log -------------------------------------------------------------

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def log_events(self, event: str | None = None) -> list[dict[str, Any]]:
        """The JSON log lines written so far (all runs), optionally only one event."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # not ours (e.g. a Python warning)
            if isinstance(record, dict) and (event is None or record.get("event") == event):
                out.append(record)
        return out

    # -- admin API -------------------------------------------------------

    async def admin_get(self, path: str, *, timeout: float = 5.0) -> HttpResponse:
        return await request(*self.admin, "GET", path, timeout=timeout)

    async def admin_json(self, path: str, *, timeout: float = 5.0) -> Any:
        resp = await self.admin_get(path, timeout=timeout)
        if resp.status != 200:
            raise ControlPlaneError(f"GET {path} -> {resp.status}: {resp.text()[:500]}")
        return resp.json()

    async def proxies(self) -> list[dict[str, Any]]:
        """`/debug/proxies`: one entry per open stream."""
        data: list[dict[str, Any]] = await self.admin_json("/debug/proxies")
        return data

    async def acked(self) -> dict[str, dict[str, str]]:
        """node id -> {type ("cds", ...): ACKed version}, for nodes with an open stream."""
        out: dict[str, dict[str, str]] = {}
        for entry in await self.proxies():
            types = entry["types"]
            out.setdefault(entry["node"], {}).update(
                {t: s["acked_version"] for t, s in types.items()}
            )
        return out

    async def versions(self, node_id: str) -> dict[str, str] | None:
        """The versions of the snapshot `node_id` gets now, per type; None if it has none."""
        resp = await self.admin_get("/debug/config_dump?proxy=" + quote(node_id, safe=""))
        if resp.status == 404:
            return None
        if resp.status != 200:
            raise ControlPlaneError(f"config_dump {node_id}: {resp.status} {resp.text()[:300]}")
        versions: dict[str, str] = resp.json()["versions"]
        return versions

    async def diagnostics(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = await self.admin_json("/debug/diagnostics")
        return data

    async def metrics(self) -> dict[str, float]:
        """`/metrics` samples as {`name{labels}`: value}."""
        resp = await self.admin_get("/metrics")
        if resp.status != 200:
            raise ControlPlaneError(f"GET /metrics -> {resp.status}")
        return parse_metrics(resp.text())


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {`name{labels}`: value} (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        with contextlib.suppress(ValueError):
            out[key] = float(value)
    return out


def metric_sum(samples: Mapping[str, float], name: str) -> float:
    """The sum of every sample of `name`, whatever its labels."""
    return sum(v for k, v in samples.items() if k == name or k.startswith(name + "{"))
