"""`legation proxy`: stock Envoy for one workload, run as Istio's pilot-agent runs it.

`EnvoyLauncher.run`:
- writes the bootstrap (`Launch.bootstrap()`) to ``<workdir>/envoy-rev<N>.yaml`` and
  starts Envoy with Istio's drain settings (``--drain-strategy immediate``, a short
  ``--drain-time-s`` and ``--parent-shutdown-time-s``), a base id of its own
  (``--use-dynamic-base-id``, recorded with ``--base-id-path``: several proxies
  share a host) and the user's extra arguments;
- every `check_s` renders the bootstrap again; when it changed (a rotated trust
  bundle for the TLS xDS connection, a refreshed credential: see credentials.py)
  it hot-restarts Envoy: the new process (``--restart-epoch N+1``, same base id)
  takes the listening sockets over from the old one, which drains its
  connections and exits after ``--parent-shutdown-time-s``; nothing is refused;
- on SIGTERM or SIGINT it drains as pilot-agent does: Envoy's health check fails
  first (``POST /healthcheck/fail``: ``/ready`` answers 503 DRAINING, so load
  balancers and kubelet stop sending), listeners drain gracefully
  (``POST /drain_listeners?graceful``), and after `drain_s` Envoy gets SIGTERM;
  the launcher exits 0 well within a termination grace period of
  `drain_s` + a few seconds. SIGHUP and SIGUSR1 (reopen access logs) are
  forwarded to Envoy;
- when Envoy exits on its own, the launcher exits with Envoy's code.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from legation.agent.envoyproc import dies_with_parent, stop_process

_log = structlog.get_logger("legation.proxy")


@dataclass(frozen=True, slots=True, kw_only=True)
class Launch:
    envoy: Path
    workdir: Path
    admin: tuple[str, int]  # Envoy's admin address (the bootstrap's)
    bootstrap: Callable[[], str]  # the current bootstrap text (cheap; same text: no restart)
    extra_args: Sequence[str] = ()
    drain_s: float = 5.0  # Istio's terminationDrainDuration
    check_s: float = 10.0  # how often the bootstrap is rendered again
    parent_shutdown_s: int = 15  # how long an old epoch may drain after a hot restart
    log_level: str = "warning"


@dataclass(slots=True)
class _Epoch:
    number: int
    text: str
    proc: asyncio.subprocess.Process


@dataclass(slots=True)
class EnvoyLauncher:
    launch: Launch
    epochs: list[_Epoch] = field(default_factory=list)  # oldest first; the last is current
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def current(self) -> _Epoch:
        return self.epochs[-1]

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            loop.add_signal_handler(sig, self._forward, sig)
        self.launch.workdir.mkdir(parents=True, exist_ok=True)
        await self._start(self.launch.bootstrap())
        try:
            return await self._supervise()
        finally:
            for epoch in self.epochs:
                await stop_process(epoch.proc, grace=self.launch.drain_s + 5)

    async def _supervise(self) -> int:
        while True:
            exited = asyncio.ensure_future(self.current.proc.wait())
            stop = asyncio.ensure_future(self._stop.wait())
            done, _ = await asyncio.wait({exited, stop}, timeout=self.launch.check_s,
                                         return_when=asyncio.FIRST_COMPLETED)
            for f in (exited, stop):
                if f not in done:
                    f.cancel()
            if stop in done:
                await self._drain()
                return 0
            if exited in done:
                code = self.current.proc.returncode or 0
                _log.error("proxy.envoy-exited", code=code, epoch=self.current.number)
                return code
            self._reap_old()
            text = self.launch.bootstrap()
            if text != self.current.text:
                await self._start(text)

    async def _start(self, text: str) -> None:
        """Envoy with this bootstrap: the first epoch, or a hot restart of the current."""
        number = self.epochs[-1].number + 1 if self.epochs else 0
        path = self.launch.workdir / f"envoy-rev{number}.yaml"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.chmod(0o600)  # it holds the workload's credential
        tmp.replace(path)
        base_id = self.launch.workdir / "base-id"
        ident = (["--use-dynamic-base-id", "--base-id-path", str(base_id)] if number == 0
                 else ["--base-id", base_id.read_text().strip()])
        defaults = {  # Envoy refuses a flag given twice: the user's win
            "--drain-strategy": "immediate",
            "--drain-time-s": str(max(1, int(self.launch.drain_s))),
            "--parent-shutdown-time-s": str(self.launch.parent_shutdown_s),
            "--log-level": self.launch.log_level,
        }
        given = set(self.launch.extra_args)
        command = [
            str(self.launch.envoy), "-c", str(path), *ident,
            "--restart-epoch", str(number),
            *(x for flag, value in defaults.items() if flag not in given
              for x in (flag, value)),
            *self.launch.extra_args,
        ]
        proc = await asyncio.create_subprocess_exec(*dies_with_parent(command))
        self.epochs.append(_Epoch(number=number, text=text, proc=proc))
        _log.info("proxy.envoy-started", epoch=number, pid=proc.pid, bootstrap=str(path),
                  hot_restart=number > 0)

    def _reap_old(self) -> None:
        """Forget old epochs that have exited (a hot restart's parent drains, then goes)."""
        self.epochs = [e for e in self.epochs[:-1] if e.proc.returncode is None] + [self.current]

    def _forward(self, sig: int) -> None:
        for epoch in self.epochs:
            if epoch.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    epoch.proc.send_signal(sig)

    async def _drain(self) -> None:
        """Fail the health check, drain the listeners, give connections `drain_s`, stop."""
        _log.info("proxy.draining", drain_s=self.launch.drain_s)
        for path in ("/healthcheck/fail", "/drain_listeners?graceful"):
            await asyncio.to_thread(_admin_post, self.launch.admin, path)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.launch.drain_s):
                await self.current.proc.wait()  # it may go sooner (its own signal handling)
        for epoch in self.epochs:
            await stop_process(epoch.proc, grace=5.0)
        _log.info("proxy.stopped")


def _admin_post(admin: tuple[str, int], path: str) -> None:
    host, port = admin
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=2):
            pass
    except (urllib.error.URLError, OSError) as e:  # Envoy gone already: nothing to drain
        _log.warning("proxy.admin-failed", path=path, error=str(e))
