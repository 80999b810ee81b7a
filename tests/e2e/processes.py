"""End-to-end processes: per-process loopback addresses, fleets of Envoys and demo apps
that always clean up, and a bounded `eventually`. Process management itself lives in
`legation.demo.envoy` (the demo uses it too)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from legation.demo.app import DemoApp, Target
from legation.demo.controlplane import ControlPlaneError
from legation.demo.envoy import Envoy, EnvoyError, WaitFor
from legation.demo.http import HttpError

T = TypeVar("T")

RESERVATION_PORT = 65534  # outside Linux's default ephemeral range (32768-60999)


class Loopback:
    """Distinct 127.B.y.z addresses for one test process.

    B is derived from the pid (100-227), so concurrent pytest runs start far
    apart; each handed-out address is also reserved by binding (not listening
    on) `RESERVATION_PORT` on it, so two processes that meet in the same block
    skip each other's addresses instead of sharing them.
    """

    def __init__(self, *, pid: int | None = None) -> None:
        self._block = 100 + (os.getpid() if pid is None else pid) % 128
        self._next = 0
        self._held: list[socket.socket] = []

    def next(self) -> str:
        while self._next < 254 * 256:
            y, z = divmod(self._next, 254)
            self._next += 1
            address = f"127.{self._block}.{y}.{z + 1}"
            if self._reserve(address):
                return address
        raise RuntimeError(f"loopback block 127.{self._block}.0.0/16 exhausted")

    def many(self, n: int) -> tuple[str, ...]:
        return tuple(self.next() for _ in range(n))

    def _reserve(self, address: str) -> bool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((address, RESERVATION_PORT))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                return False
            raise
        self._held.append(sock)
        return True

    def close(self) -> None:
        for sock in self._held:
            sock.close()
        self._held.clear()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (racy by nature: prefer port 0 where possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns a truthy value (returned) or `timeout` passes.

    Exceptions from `check` count as "not yet"; the last one (or the last
    falsy value) is reported in the AssertionError raised on timeout.
    """
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    value = await check()
                except (
                    AssertionError,
                    OSError,
                    TimeoutError,
                    EnvoyError,
                    KeyError,
                    HttpError,
                    ControlPlaneError,
                ) as e:
                    last = e
                else:
                    if value:
                        return value
                    last = value
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}") from None


class EnvoyFleet:
    """Envoys started by one test; `stop_all()` stops and reaps every one."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.envoys: list[Envoy] = []

    async def start(
        self,
        name: str,
        bootstrap: dict[str, Any] | Path,
        *,
        wait: WaitFor = "ready",
        timeout: float = 20.0,
        log_level: str = "warn",
        component_log_level: str | None = None,
    ) -> Envoy:
        envoy = Envoy(
            name=name,
            bootstrap=bootstrap,
            workdir=self.workdir,
            log_level=log_level,
            component_log_level=component_log_level,
        )
        self.envoys.append(envoy)
        await envoy.start(wait=wait, timeout=timeout)
        return envoy

    async def stop_all(self) -> None:
        await asyncio.gather(*(e.stop() for e in self.envoys), return_exceptions=True)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {e!r}\n{e.log_tail(lines)}" for e in self.envoys)


class AppFleet:
    """Demo workloads started in-process by one test."""

    def __init__(self) -> None:
        self.apps: list[DemoApp] = []

    async def start(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str | None = None,
        proxy: tuple[str, int] | None = None,
        calls: Sequence[str] = (),
    ) -> DemoApp:
        app = DemoApp(
            name=name,
            host=host,
            port=port,
            version=version,
            proxy=proxy,
            calls=tuple(Target.parse(c) for c in calls),
        )
        await app.start()
        self.apps.append(app)
        return app

    async def stop_all(self) -> None:
        await asyncio.gather(*(a.stop() for a in self.apps), return_exceptions=True)


