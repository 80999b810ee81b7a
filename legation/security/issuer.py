"""Workload certificates per identity: issued on first use, cached, rotated.

One certificate per SPIFFE identity, shared by every proxy of that service
account. `run()` re-issues each at half its lifetime minus a random jitter
of up to a tenth of it (so a fleet started together does not rotate
together), then calls `on_rotate(identity)` so the pipeline pushes the new
`default` Secret to that identity's proxies; Envoy swaps certificates on an
SDS update without restarting or dropping connections.

Lifetime is counted from issuance, not from `not_before`: `not_before` is
backdated five minutes for clock skew, which for short TTLs (the 30 s of the
rotation test) would put the halfway mark before the certificate was even
issued. For a 24 h certificate the two differ by 2.5 minutes.

Time comes from the injected `clock`; waiting goes through the injected
`sleep` (in chunks of at most `max_sleep`, so a wall-clock jump is noticed),
so tests drive a simulated day in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from legation.model import SpiffeId, WorkloadCertificate
from legation.security.ca import CertificateAuthority
from legation.security.certs import KeyType
from legation.security.clock import Clock
from legation.security.errors import CAError
from legation.security.metrics import SdsMetrics

_log = structlog.get_logger(__name__)

Sleep = Callable[[float], Coroutine[Any, Any, object]]
ROTATE_AT = 0.5  # of the lifetime
JITTER = 0.1  # at most this fraction of the lifetime earlier
MIN_ROTATION_DELAY = timedelta(seconds=1)  # never a hot loop near the signer's expiry


@dataclass(frozen=True, slots=True, kw_only=True)
class _Entry:
    cert: WorkloadCertificate
    issued_at: datetime
    rotate_at: datetime


class CertificateIssuer:
    """The certificates the proxies hold, and the loop that renews them."""

    def __init__(
        self,
        ca: CertificateAuthority,
        *,
        ttl: timedelta = timedelta(hours=24),
        clock: Clock,
        rng: random.Random,
        on_rotate: Callable[[SpiffeId], None] | None = None,
        sleep: Sleep = asyncio.sleep,
        key_type: KeyType = KeyType.ECDSA_P256,
        metrics: SdsMetrics | None = None,
        retry_after: timedelta = timedelta(seconds=10),
        max_sleep: timedelta = timedelta(seconds=60),
    ) -> None:
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        self._ca = ca
        self._ttl = ttl
        self._clock = clock
        self._rng = rng
        self._on_rotate = on_rotate
        self._sleep = sleep
        self._key_type = key_type
        self._metrics = metrics
        self._retry_after = retry_after
        self._max_sleep = max_sleep.total_seconds()
        self._lock = threading.Lock()  # certificate() may be called off the event loop
        self._entries: dict[SpiffeId, _Entry] = {}
        self._pending: set[SpiffeId] = set()  # re-issued outside run(): still to announce
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        if metrics is not None:
            metrics.watch_issuer(self)

    @property
    def ttl(self) -> timedelta:
        return self._ttl

    def certificate(self, identity: SpiffeId) -> WorkloadCertificate:
        """The current certificate of `identity`, issued now if there is none (or it expired)."""
        with self._lock:
            entry = self._entries.get(identity)
            now = self._clock()
            if entry is not None and now < entry.cert.not_after:
                return entry.cert
            entry = self._issue(identity, now)
            if identity in self._entries:
                self._pending.add(identity)  # other proxies of it hold the expired one
            self._entries[identity] = entry
        self._wake()
        return entry.cert

    def next_rotation(self, identity: SpiffeId) -> datetime:
        """When `run()` will re-issue the certificate of `identity` (KeyError if none)."""
        with self._lock:
            return self._entries[identity].rotate_at

    def forget(self, identity: SpiffeId) -> None:
        """No proxy uses `identity` any more: stop rotating its certificate."""
        with self._lock:
            self._entries.pop(identity, None)
            self._pending.discard(identity)

    def identities(self) -> tuple[SpiffeId, ...]:
        with self._lock:
            return tuple(sorted(self._entries))

    def expiries(self) -> Mapping[SpiffeId, datetime]:
        with self._lock:
            return {i: e.cert.not_after for i, e in self._entries.items()}

    def rotate_all(self) -> None:
        """Re-issue every certificate at the next turn of `run()` (after a root activation)."""
        with self._lock:
            self._pending.update(self._entries)
        self._wake()

    def rotate_due(self) -> tuple[SpiffeId, ...]:
        """Re-issue what is due now; call `on_rotate` for each. One pass of `run()`."""
        with self._lock:
            now = self._clock()
            due = sorted(
                {i for i, e in self._entries.items() if e.rotate_at <= now} | self._pending
            )
            self._pending.clear()
            rotated = [i for i in due if self._reissue(i, now)]
        for identity in rotated:
            self._announce(identity)
        return tuple(rotated)

    async def run(self) -> None:
        """Rotate certificates forever; cancel to stop."""
        self._loop = asyncio.get_running_loop()
        self._wakeup = asyncio.Event()
        try:
            while True:
                self._wakeup.clear()
                self.rotate_due()
                await self._wait(self._seconds_to_next())
        finally:
            self._loop, self._wakeup = None, None

    # -- internals --------------------------------------------------------------------

    def _issue(self, identity: SpiffeId, now: datetime) -> _Entry:
        cert = self._ca.issue(identity, ttl=self._ttl, key_type=self._key_type)
        lifetime = cert.not_after - now
        jitter = lifetime * (JITTER * self._rng.random())
        rotate_at = max(now + lifetime * ROTATE_AT - jitter, now + MIN_ROTATION_DELAY)
        return _Entry(cert=cert, issued_at=now, rotate_at=rotate_at)

    def _reissue(self, identity: SpiffeId, now: datetime) -> bool:
        old = self._entries.get(identity)
        if old is None:
            return False  # forgotten meanwhile
        try:
            self._entries[identity] = self._issue(identity, now)
        except CAError as e:
            _log.error(
                "sds.rotation-failed",
                identity=str(identity),
                error=str(e),
                retry_in_s=self._retry_after.total_seconds(),
            )
            self._entries[identity] = _Entry(
                cert=old.cert, issued_at=old.issued_at, rotate_at=now + self._retry_after
            )
            return False
        if self._metrics is not None:
            self._metrics.rotations.inc()
        _log.info(
            "sds.certificate-rotated",
            identity=str(identity),
            not_after=self._entries[identity].cert.not_after.isoformat(),
        )
        return True

    def _announce(self, identity: SpiffeId) -> None:
        if self._on_rotate is None:
            return
        try:
            self._on_rotate(identity)
        except Exception:
            _log.exception("sds.on-rotate-failed", identity=str(identity))

    def _seconds_to_next(self) -> float | None:
        with self._lock:
            if self._pending:
                return 0.0
            if not self._entries:
                return None
            earliest = min(e.rotate_at for e in self._entries.values())
            now = self._clock()
        return max(0.0, min((earliest - now).total_seconds(), self._max_sleep))

    async def _wait(self, seconds: float | None) -> None:
        """Sleep `seconds` (forever if None), or less when woken by a change."""
        assert self._wakeup is not None
        async with asyncio.TaskGroup() as tg:
            woken = tg.create_task(self._wakeup.wait())
            if seconds is None:
                await woken
                return
            slept = tg.create_task(self._sleep(seconds))
            await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()
            slept.cancel()

    def _wake(self) -> None:
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None:
            return  # run() computes its schedule when it starts
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(wakeup.set)
