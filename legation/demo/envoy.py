"""Real Envoy processes: start one with a bootstrap, wait for it, query its admin, stop it.

Shared by `legation demo` and the end-to-end tests (tests/e2e/harness.py).
Each Envoy runs with `--use-dynamic-base-id` (many on one host), its admin
address written by Envoy itself to a file (`--admin-address-path`, so an
admin port of 0 is fine), and its stdout/stderr in `<workdir>/<name>.log`.

Not leaking processes: `stop()` sends SIGTERM, then SIGKILL after a grace
period, and always reaps the child. On Linux the child also gets a parent
death signal (via util-linux `setpriv --pdeathsig`, when installed), so an
Envoy dies with the process that started it even if that one is killed.
(Linux sends it when the *thread* that forked exits: asyncio forks on the
event loop's thread, so start Envoys from the loop that outlives them.)

An `Envoy` object runs one process at a time; after `stop()` it may be
started again (a fresh process, not a hot restart).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import quote

from legation.agent.envoyproc import EnvoyNotFound, dies_with_parent, stop_process
from legation.agent.envoyproc import envoy_binary as find_envoy
from legation.bootstrap import render_bootstrap
from legation.demo.http import HttpError, HttpResponse, request

WaitFor = Literal["ready", "admin", "none"]
_POLL = 0.05  # seconds between readiness probes



class EnvoyError(Exception):
    """Envoy could not be started, did not become ready, or its admin API failed."""


def envoy_binary() -> Path:
    """The Envoy binary (agent/envoyproc.py), or EnvoyError saying how to get one."""
    try:
        return find_envoy()
    except EnvoyNotFound as e:
        raise EnvoyError(str(e)) from None


class Envoy:
    """One Envoy process. Use as `async with Envoy(...) as envoy:` or start()/stop()."""

    def __init__(
        self,
        *,
        name: str,
        bootstrap: Mapping[str, Any] | Path | None = None,
        workdir: Path,
        binary: Path | None = None,
        log_level: str = "warn",
        component_log_level: str | None = None,
        concurrency: int = 1,
        extra_args: Sequence[str] = (),
        new_session: bool = False,
        launcher: Sequence[str] = (),
    ) -> None:
        """`new_session`: run Envoy in a session of its own, so a terminal's Ctrl-C (sent to
        the whole foreground process group) reaches only its parent, which stops it.
        `launcher`: run Envoy through this `legation proxy ...` command (it writes the
        bootstrap itself: `bootstrap` is then unused), Envoy's own flags after `--`."""
        self.name = name
        self.workdir = workdir
        self.log_path = workdir / f"{name}.log"
        self.admin_address_path = workdir / f"{name}.admin"
        self._bootstrap = bootstrap
        self._binary = binary
        self._args = [
            "--log-level", log_level,
            "--concurrency", str(concurrency),
            *(["--component-log-level", component_log_level] if component_log_level else []),
            *extra_args,
        ]  # fmt: skip
        self._new_session = new_session
        self._launcher = list(launcher)
        self._proc: asyncio.subprocess.Process | None = None
        self._admin: tuple[str, int] | None = None

    # -- lifecycle -------------------------------------------------------

    @property
    def bootstrap_path(self) -> Path:
        if isinstance(self._bootstrap, Path):
            return self._bootstrap
        return self.workdir / f"{self.name}.bootstrap.yaml"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    def command(self) -> list[str]:
        if self._launcher:  # `legation proxy`: its drain settings, Envoy's flags after --
            return dies_with_parent([
                *self._launcher, "--", "--admin-address-path", str(self.admin_address_path),
                "--file-flush-interval-msec", "250", *self._args])
        binary = self._binary or envoy_binary()
        base = [str(binary), "-c", str(self.bootstrap_path), "--use-dynamic-base-id",
                "--admin-address-path", str(self.admin_address_path),
                # As Istio runs its proxies: a listener update tells every connection of
                # the old listener to close at once (not gradually over --drain-time-s),
                # so a policy change governs pooled connections within a request.
                "--drain-strategy", "immediate", "--drain-time-s", "1",
                "--parent-shutdown-time-s", "2",
                # access log lines on disk within a quarter second (Envoy's default: 10 s)
                "--file-flush-interval-msec", "250", *self._args]  # fmt: skip
        return dies_with_parent(base)

    async def start(self, *, wait: WaitFor = "ready", timeout: float = 20.0) -> None:
        """Spawn Envoy, then wait until `/ready` says LIVE ("ready"), until the
        admin API answers at all ("admin": e.g. still waiting for xDS), or not."""
        if self.running:
            raise EnvoyError(f"envoy {self.name} is already running (pid {self.pid})")
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self._bootstrap is not None and not isinstance(self._bootstrap, Path):
            self.bootstrap_path.write_text(render_bootstrap(dict(self._bootstrap)))
        elif self._bootstrap is None and not self._launcher:
            raise EnvoyError(f"envoy {self.name}: no bootstrap and no launcher to write one")
        self.admin_address_path.unlink(missing_ok=True)
        with self.log_path.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=self._new_session,
            )
        try:
            if wait == "ready":
                await self.wait_ready(timeout=timeout)
            elif wait == "admin":
                await self.wait_admin(timeout=timeout)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, *, grace: float = 5.0) -> int | None:
        """SIGTERM, SIGKILL after `grace` seconds; always reaped. Returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        code = await stop_process(proc, grace=grace)
        self._admin = None
        return code

    async def __aenter__(self) -> Envoy:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- readiness -------------------------------------------------------

    @property
    def admin_address(self) -> tuple[str, int]:
        """(host, port) of the admin API, as Envoy reported it."""
        if self._admin is None:
            self._admin = self._read_admin_address()
            if self._admin is None:
                raise EnvoyError(f"envoy {self.name}: admin address not known yet")
        return self._admin

    def _read_admin_address(self) -> tuple[str, int] | None:
        try:
            text = self.admin_address_path.read_text().strip()
        except FileNotFoundError:
            return None
        host, sep, port = text.rpartition(":")
        return (host.strip("[]"), int(port)) if sep and port.isdigit() else None

    async def wait_admin(self, *, timeout: float = 20.0) -> None:
        """Until the admin API answers (any status)."""
        await self._wait(lambda r: True, timeout=timeout, what="admin API")

    async def wait_ready(self, *, timeout: float = 20.0) -> None:
        """Until `GET /ready` answers 200 (server state LIVE: initial xDS done)."""
        await self._wait(lambda r: r.status == 200, timeout=timeout, what="/ready 200")

    async def _wait(self, ok: Callable[[HttpResponse], bool], *, timeout: float, what: str) -> None:
        last = "no answer"
        try:
            async with asyncio.timeout(timeout):
                while True:
                    self._check_alive()
                    if self._read_admin_address() is not None:
                        try:
                            resp = await self.admin_get("/ready", timeout=2.0)
                        except (EnvoyError, OSError, TimeoutError, HttpError) as e:
                            last = f"{type(e).__name__}: {e}"
                        else:
                            last = f"{resp.status} {resp.text().strip()}"
                            if ok(resp):
                                return
                    await asyncio.sleep(_POLL)
        except TimeoutError:
            raise EnvoyError(
                f"envoy {self.name}: no {what} within {timeout}s (last: {last}); "
                f"log {self.log_path}:\n{self.log_tail()}"
            ) from None

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.returncode is not None:
            raise EnvoyError(
                f"envoy {self.name} exited with {self._proc.returncode}; "
                f"log {self.log_path}:\n{self.log_tail()}"
            )

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- admin API -------------------------------------------------------

    async def admin_get(self, path: str, *, timeout: float = 5.0) -> HttpResponse:
        host, port = self.admin_address
        return await request(host, port, "GET", path, timeout=timeout)

    async def admin_post(self, path: str, *, timeout: float = 5.0) -> HttpResponse:
        """Mutating admin endpoints (/healthcheck/fail, /drain_listeners, ...) need POST."""
        host, port = self.admin_address
        return await request(host, port, "POST", path, timeout=timeout)

    async def admin_json(self, path: str, *, timeout: float = 5.0) -> Any:
        resp = await self.admin_get(path, timeout=timeout)
        if resp.status != 200:
            raise EnvoyError(f"envoy {self.name}: GET {path} -> {resp.status}: {resp.text()[:500]}")
        try:
            return resp.json()
        except ValueError as e:
            raise EnvoyError(f"envoy {self.name}: GET {path} is not JSON: {e}") from e

    async def config_dump(self, *, resource: str | None = None, include_eds: bool = False) -> Any:
        """`/config_dump` as JSON; `resource` e.g. "dynamic_active_clusters"."""
        params = [f"resource={resource}"] if resource else []
        if include_eds:
            params.append("include_eds")
        return await self.admin_json("/config_dump" + ("?" + "&".join(params) if params else ""))

    async def clusters(self) -> Any:
        """`/clusters?format=json`: every cluster with its hosts and their health."""
        return await self.admin_json("/clusters?format=json")

    async def certs(self) -> Any:
        """`/certs`: the certificates Envoy holds (SDS-delivered ones included)."""
        return await self.admin_json("/certs")

    async def stats(self, filter: str | None = None) -> dict[str, Any]:
        """Counters and gauges as {name: value}; `filter` is Envoy's regex filter."""
        query = "/stats?format=json" + (f"&filter={quote(filter, safe='')}" if filter else "")
        data = await self.admin_json(query)
        return {s["name"]: s["value"] for s in data.get("stats", ()) if "value" in s}

    async def ready(self) -> bool:
        try:
            return (await self.admin_get("/ready", timeout=2.0)).status == 200
        except (EnvoyError, OSError, TimeoutError, HttpError):
            return False

    def __repr__(self) -> str:
        return f"Envoy(name={self.name!r}, pid={self.pid}, log={str(self.log_path)!r})"
