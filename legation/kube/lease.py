"""Leader election on a coordination.k8s.io/v1 Lease, for singleton duties.

Every replica serves xDS; a few duties must run on one replica at a time (root
rotation, publishing the CA Secret). `LeaseLock` holds one Lease object;
`LeaderElector.run(duty)` runs `duty` only while this replica holds it.

The protocol is client-go's (k8s.io/client-go/tools/leaderelection):
- the Lease's `spec` records `holderIdentity`, `leaseDurationSeconds`,
  `acquireTime`, `renewTime` and `leaseTransitions`;
- a candidate takes the Lease when it has no holder, or when its record has
  not changed for `leaseDurationSeconds` as measured on the candidate's OWN
  monotonic clock from when it last saw the record change (so clock skew
  between nodes does not matter; renewTime is informative only);
- every write is an update carrying the `resourceVersion` it read (optimistic
  concurrency): of two candidates, the second gets 409 Conflict and stays a
  follower; creating a missing Lease races the same way (409 AlreadyExists);
- the holder renews every `retry_period_s`; if it cannot renew for
  `renew_deadline_s` it stops the duty (it must assume someone else may take
  over once `duration_s` has passed), and on shutdown it releases the Lease
  (empty holder) so another replica takes over at once.

The official client blocks: Lease calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s

_log = structlog.get_logger("legation.kube.lease")

LEADER_LEASE = "legation-leader"


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRecord:
    """The Lease's spec as last read, and the resourceVersion to update it from."""

    holder: str
    duration_s: int
    acquire_time: str
    renew_time: str
    transitions: int
    resource_version: str


class LeaseLock:
    """One Lease object in `namespace`/`name`, competed for by `identity`. Blocking calls."""

    def __init__(
        self,
        api: Any,  # kubernetes.client.ApiClient
        *,
        namespace: str,
        identity: str,
        name: str = LEADER_LEASE,
        duration_s: int = 15,
        request_timeout_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if not identity:
            raise ValueError("a lease holder identity is required (e.g. the pod name)")
        self._api = k8s.CoordinationV1Api(api)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.duration_s = duration_s
        self._timeout = request_timeout_s
        self._monotonic, self._wall = monotonic, wall
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0

    @property
    def request_timeout_s(self) -> float:
        return self._timeout

    @property
    def observed(self) -> LeaseRecord | None:
        """The record as this candidate last saw it (None before the first read)."""
        return self._observed

    def try_acquire_or_renew(self) -> bool:
        """Take or renew the Lease; False if another holder's lease is live or we lost a race.
        Raises `k8s.ApiException` / urllib3 errors when the API server cannot be reached."""
        current = self._read()
        now = self._wall()
        if current is None:
            return self._create(now)
        self._observe(current)
        mine = current.holder == self.identity
        if current.holder and not mine and not self._expired(current):
            return False
        return self._update(current, self._spec(
            holder=self.identity, duration_s=self.duration_s, now=now,
            acquire=current.acquire_time if mine else _micro(now),
            transitions=current.transitions if mine else current.transitions + 1))

    def release(self) -> bool:
        """Give the Lease up if we hold it (empty holder, as client-go's ReleaseOnCancel)."""
        current = self._read()
        if current is None or current.holder != self.identity:
            return False
        now = self._wall()
        return self._update(current, self._spec(holder="", duration_s=1, now=now,
                                                acquire=_micro(now),
                                                transitions=current.transitions))

    # -- internals -----------------------------------------------------------------------

    def _expired(self, current: LeaseRecord) -> bool:
        return self._observed_at + current.duration_s <= self._monotonic()

    def _observe(self, record: LeaseRecord) -> None:
        if self._observed is None or record != self._observed:
            self._observed, self._observed_at = record, self._monotonic()

    def _read(self) -> LeaseRecord | None:
        try:
            resp = self._api.read_namespaced_lease(self.name, self.namespace,
                                                   _preload_content=False,
                                                   _request_timeout=self._timeout)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return _record(json.loads(resp.data))

    def _create(self, now: datetime) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": self._spec(holder=self.identity, duration_s=self.duration_s, now=now,
                                   acquire=_micro(now), transitions=0)}
        try:
            resp = self._api.create_namespaced_lease(self.namespace, body,
                                                     _preload_content=False,
                                                     _request_timeout=self._timeout)
        except k8s.ApiException as exc:
            if exc.status == 409:  # another candidate created it first
                return False
            raise
        self._observed, self._observed_at = _record(json.loads(resp.data)), self._monotonic()
        return True

    def _update(self, current: LeaseRecord, spec: dict[str, Any]) -> bool:
        body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "resourceVersion": current.resource_version},
                "spec": spec}
        try:
            resp = self._api.replace_namespaced_lease(self.name, self.namespace, body,
                                                      _preload_content=False,
                                                      _request_timeout=self._timeout)
        except k8s.ApiException as exc:
            if exc.status == 409:  # somebody wrote since we read: they win this round
                return False
            raise
        self._observed, self._observed_at = _record(json.loads(resp.data)), self._monotonic()
        return True

    @staticmethod
    def _spec(*, holder: str, duration_s: int, now: datetime, acquire: str,
              transitions: int) -> dict[str, Any]:
        return {"holderIdentity": holder, "leaseDurationSeconds": duration_s,
                "acquireTime": acquire, "renewTime": _micro(now), "leaseTransitions": transitions}


_TRANSIENT = (k8s.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError)


class LeaderElector:
    """Runs a duty on whichever replica holds the Lease (see the module doc)."""

    def __init__(
        self,
        lock: LeaseLock,
        *,
        renew_deadline_s: float = 10.0,
        retry_period_s: float = 2.0,
        rng: random.Random | None = None,
    ) -> None:
        if not lock.duration_s > renew_deadline_s > retry_period_s > 0:
            raise ValueError("expected lease duration > renew deadline > retry period > 0")
        self._lock = lock
        self._renew_deadline_s = renew_deadline_s
        self._retry_period_s = retry_period_s
        self._rng = rng or random.Random()
        self.leading = False
        self.terms = 0  # how many times this replica became the leader

    async def run(self, duty: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Forever: wait to lead, run `duty` while leading (cancelled when leadership is
        lost), then compete again. Releases the Lease when cancelled or when `duty` returns."""
        log = _log.bind(lease=f"{self._lock.namespace}/{self._lock.name}",
                        identity=self._lock.identity)
        try:
            while True:
                while not await self._attempt(log):
                    await asyncio.sleep(self._retry_period_s * (1 + 0.2 * self._rng.random()))
                self.leading, self.terms = True, self.terms + 1
                log.info("lease.leading", term=self.terms)
                async with asyncio.TaskGroup() as tg:
                    work = tg.create_task(duty())
                    await self._renew_until_lost(work, log)
                    work.cancel()
                if work.done() and not work.cancelled():
                    return  # the duty is over: release (below) so that nobody waits for us
                self.leading = False
                log.warning("lease.lost", term=self.terms)
        finally:
            if self.leading:
                self.leading = False
                await self._release(log)
    async def _attempt(self, log: Any) -> bool:
        try:
            return await asyncio.to_thread(self._lock.try_acquire_or_renew)
        except _TRANSIENT as exc:
            log.warning("lease.error", error=f"{type(exc).__name__}: {exc}")
            return False

    async def _renew_until_lost(self, work: asyncio.Task[None], log: Any) -> None:
        last_ok = time.monotonic()
        while not work.done():
            done, _ = await asyncio.wait({work}, timeout=self._retry_period_s)
            if done:
                return
            if await self._attempt(log):
                last_ok = time.monotonic()
            elif time.monotonic() - last_ok >= self._renew_deadline_s or self._taken():
                return

    def _taken(self) -> bool:
        seen = self._lock.observed
        return seen is not None and seen.holder not in ("", self._lock.identity)

    async def _release(self, log: Any) -> None:
        with contextlib.suppress(*_TRANSIENT, TimeoutError):
            async with asyncio.timeout(self._lock.request_timeout_s + 1):
                if await asyncio.to_thread(self._lock.release):
                    log.info("lease.released")


def _record(data: Any) -> LeaseRecord:
    meta = data.get("metadata") or {}
    spec = data.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_s=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=str(spec.get("acquireTime") or ""),
        renew_time=str(spec.get("renewTime") or ""),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str(meta.get("resourceVersion") or ""),
    )


def _micro(when: datetime) -> str:
    """metav1.MicroTime: RFC 3339 with microseconds, in UTC."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
