"""The demo's load: `GET /shop` through the client's sidecar, at a steady rate, tallied.

Each request goes to the client sidecar's outbound listener as to an HTTP
proxy (absolute-form URI naming the service). The answer says which workload
served it (`x-served-by`) and, for a fan-out (order -> catalog, payment),
which workload served each call; `Tally` counts them per (service, workload)
in total and over a sliding window, and counts errors by kind.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from legation.demo.http import HttpError, HttpResponse, request

WINDOW_S = 5.0
CANARY_EVERY = 10
Key = tuple[str, str]  # (service host, e.g. "catalog.shop"; workload)


@dataclass(slots=True)
class Tally:
    total: Counter[Key] = field(default_factory=Counter)
    identities: dict[str, str] = field(default_factory=dict)  # workload -> SPIFFE ID it showed
    canary: Counter[Key] = field(default_factory=Counter)  # requests sent with x-canary: true
    errors: Counter[str] = field(default_factory=Counter)  # kind -> count
    requests: int = 0
    last_error: str = ""
    _recent: deque[tuple[float, tuple[Key, ...]]] = field(default_factory=deque)

    def record(
        self, keys: tuple[Key, ...], error: str | None, *, now: float, detail: str = "",
        canary: bool = False,
    ) -> None:
        """One request: the workloads that served it; `error` a short kind ("HTTP 502")."""
        self.requests += 1
        self.total.update(keys)
        if canary:
            self.canary.update(keys)
        self._recent.append((now, keys))
        if error is not None:
            self.errors[error] += 1
            self.last_error = f"{error}: {detail}" if detail else error

    def window(self, *, now: float) -> Counter[Key]:
        while self._recent and self._recent[0][0] < now - WINDOW_S:
            self._recent.popleft()
        return Counter(k for _, keys in self._recent for k in keys)

    def rate(self, *, now: float, over: float = 1.0) -> float:
        self.window(now=now)
        return sum(1 for t, _ in self._recent if t >= now - over) / over

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def identities(resp: HttpResponse) -> dict[str, str]:
    """workload -> the SPIFFE ID its sidecar presented, for every hop of one answer."""
    out = {}
    if resp.header("x-served-identity"):
        out[resp.header("x-served-by") or "?"] = str(resp.header("x-served-identity"))
    try:
        body: Any = resp.json()
    except ValueError:
        return out
    for call in body.get("calls", ()) if isinstance(body, dict) else ():
        if call.get("served_by") and call.get("identity"):
            out[str(call["served_by"])] = str(call["identity"])
    return out


def outcome(target: str, resp: HttpResponse) -> tuple[tuple[Key, ...], str | None]:
    """What one /shop answer says: the workloads that served it, and an error if any."""
    keys = [(target.rsplit(":", 1)[0], resp.header("x-served-by") or "?")]
    error = None if resp.status == 200 else f"HTTP {resp.status}"
    try:
        body: Any = resp.json()
    except ValueError:
        body = {}
    calls = body.get("calls", ()) if isinstance(body, dict) else ()
    for call in calls:
        if call.get("served_by"):
            keys.append((str(call["target"]).rsplit(":", 1)[0], str(call["served_by"])))
        if call.get("status") != 200 and error is None:
            error = f"{call.get('target')} {call.get('status') or 'unreachable'}"
    return tuple(keys), error


class Load:
    """Requests at `rate` per second (open loop, at most `concurrency` in flight)."""

    def __init__(
        self,
        *,
        proxy: tuple[str, int],
        targets: tuple[str, ...],
        rate: float = 20.0,
        concurrency: int = 16,
        timeout: float = 5.0,
    ) -> None:
        self.tally = Tally()
        self._proxy = proxy
        self._targets = targets
        self._interval = 1.0 / rate
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout

    async def run(self) -> None:
        """Until cancelled; requests in flight are cancelled with it. Every
        `CANARY_EVERY`-th request carries `x-canary: true` (the shop's header route)."""
        async with asyncio.TaskGroup() as tg:
            for n, target in enumerate(itertools.cycle(self._targets)):
                await self._slots.acquire()
                tg.create_task(self._one(target, canary=n % CANARY_EVERY == CANARY_EVERY - 1))
                await asyncio.sleep(self._interval)

    async def _one(self, target: str, *, canary: bool = False) -> None:
        try:
            host, port = self._proxy
            headers = {"host": target, **({"x-canary": "true"} if canary else {})}
            try:
                resp = await request(
                    host, port, "GET", f"http://{target}/shop",
                    headers=headers, timeout=self._timeout,
                )  # fmt: skip
            except (OSError, TimeoutError, HttpError) as e:
                self.tally.record((), type(e).__name__, now=time.monotonic(), detail=str(e))
                return
            keys, error = outcome(target, resp)
            self.tally.identities.update(identities(resp))
            self.tally.record(keys, error, now=time.monotonic(), canary=canary)
        finally:
            self._slots.release()

    async def stop(self, task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
