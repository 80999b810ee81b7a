"""Root CA rotation as a running duty: make-before-break, observable, operable.

The CA (legation/security/ca.py) knows the two steps (`stage_new_root`,
`activate_staged_root`) and drops a retired root from the trust bundle once
the last leaf it signed expired. This module runs them in the server, in
order, against the proxies actually connected:

1. distributing: a new root is staged: it joins the trust bundle (``ROOTCA``)
   and signs nothing. Every connected proxy is republished, and the duty waits
   until each proxy holding a ``ROOTCA`` has ACKed an SDS version that
   contains the new root (legation/xds/bundleacks.py), or `grace` has passed. A
   proxy that connects later gets the new bundle with its first snapshot.
2. reissuing: the staged root is activated and signs every new leaf; every
   workload certificate is re-issued (`CertificateIssuer.rotate_all`) and
   pushed by the issuer's `on_rotate`.
3. retiring: the old root stays in the bundle until the last leaf it signed
   expired. At that instant a timer (`watch_retirements`, on every replica)
   republishes every proxy with the pruned bundle.

Triggers (`lead`): automatic when the active root has less than
`rotate_before` left (checked every `check_every`), and the operator
(`request`, behind the admin API's ``POST /ca/rotate-root``, that is
`legation ca rotate-root`). An Istio plug-in CA is the operator's to rotate:
both triggers leave it alone. A staged root found when leading starts (a
crash, or another leader's unfinished rotation) is carried through.

With replicas sharing the CA through a Secret (legation/kube/casecret.py), `lead`
runs only on the Lease holder, and every CA change goes through
`share.change` (re-read the Secret, change, publish with a resourceVersion
precondition). The leader sees only its own proxies' ACKs, so it also waits
`follower_sync` (three of the other replicas' poll periods) before activating,
and keeps the old root trusted one workload-certificate lifetime past that:
the other replicas sign with it until they reload.

Time comes from the injected clock, waiting from the injected sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

import structlog
from cryptography import x509
from prometheus_client import CollectorRegistry, Counter

from legation.model import SpiffeId
from legation.security import CAError, CertificateAuthority, CertificateIssuer, RootInfo, RootState
from legation.security.certs import cert_to_pem, fingerprint
from legation.security.clock import Clock
from legation.security.rotation_state import (
    AckState,
    Outcome,
    Phase,
    PhaseCollector,
    Refusal,
    RotationPolicy,
    RotationRecord,
    Trigger,
    bundle_certs,
    ca_debug,
)

__all__ = ["Outcome", "Phase", "Refusal", "RootRotation", "RotationPolicy", "Share", "Trigger"]

_log = structlog.get_logger("legation.security.rotation")

T = TypeVar("T")
Sleep = Callable[[float], Coroutine[Any, Any, object]]
REQUEST_TIMEOUT_S = 8.0  # an operator request waits this long (under the admin server's 10 s)


class BundleAckTracker(Protocol):
    """Which proxies still lack a trust bundle with a root (legation/xds/bundleacks.py)."""

    def pending(self, root_pem: str) -> AckState: ...


class Share(Protocol):
    """The CA shared by replicas (legation/kube/casecret.py)."""

    async def sync(self) -> None: ...

    def change(self, fn: Callable[[], T]) -> Awaitable[T]: ...


class RootRotation:
    """Runs root rotations (`lead`) and prunes retired roots (`watch_retirements`)."""

    def __init__(
        self,
        ca: CertificateAuthority,
        issuer: CertificateIssuer,
        *,
        acks: BundleAckTracker,
        refresh_all: Callable[[], None],
        policy: RotationPolicy,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        registry: CollectorRegistry | None = None,
        share: Share | None = None,
        leader: Callable[[], str] = lambda: "",
    ) -> None:
        self._ca, self._issuer, self._acks = ca, issuer, acks
        self._refresh_all = refresh_all
        self.policy = policy
        self._clock, self._sleep = clock, sleep
        self._share = share
        self._leader = leader
        self.leading = False
        self._busy: Phase | None = None  # DISTRIBUTING/REISSUING while `lead` works on one
        self._trigger: Trigger | None = None  # of the root staged by this replica
        self._request: asyncio.Future[Outcome] | None = None
        self._wake = asyncio.Event()  # a request arrived
        self._changed = asyncio.Event()  # the CA changed: re-plan the retirement timer
        self.record: RotationRecord | None = None
        self._rotations: Counter | None = None
        if registry is not None:
            self._rotations = Counter(
                "legation_root_rotations", "Root CA rotations completed (new root activated).",
                ["trigger"], registry=registry,
            )  # fmt: skip
            registry.register(PhaseCollector(self))

    # -- operator ---------------------------------------------------------------------

    async def request(self) -> Outcome:
        """Start a rotation now (the admin API's POST): answers once the new root is staged."""
        if self._ca.plugged_in:
            return Outcome(refused=Refusal.PLUG_IN, message=(
                f"{self._ca.ca_dir} holds an operator-provided (Istio plug-in) CA: rotate it "
                "by replacing its files; Legation does not rotate it"))  # fmt: skip
        if not self.leading:
            leader = self._leader()
            return Outcome(refused=Refusal.NOT_LEADER, message=(
                "this replica does not run root rotation; ask the leader"
                + (f" ({leader})" if leader else "")))  # fmt: skip
        if self._request is not None or self.phase() in (Phase.DISTRIBUTING, Phase.REISSUING):
            return Outcome(refused=Refusal.IN_PROGRESS, message=(
                f"a root rotation is in progress (phase {self.phase()}); see /debug/ca"))
        request = self._request = asyncio.get_running_loop().create_future()
        self._wake.set()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                return await asyncio.shield(request)
        except TimeoutError:
            return Outcome(refused=Refusal.FAILED, message=(
                f"the new root was not staged within {REQUEST_TIMEOUT_S:g}s; it may still be: "
                "see /debug/ca"))  # fmt: skip

    def notify_changed(self) -> None:
        """The CA changed outside this duty (reloaded from the shared Secret)."""
        self._changed.set()

    # -- the leader's duty --------------------------------------------------------------

    async def lead(self) -> None:
        """Rotate when due or asked, forever; cancel to stop (e.g. leadership lost)."""
        self.leading = True
        try:
            while True:
                try:
                    await self._step()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # CAError, SecretConflict, the API server: retry
                    self._busy = None
                    self._answer(Outcome(refused=Refusal.FAILED, message=str(e)))
                    log = _log.error if isinstance(e, CAError) else _log.exception
                    log("sds.root-rotation-failed", error=str(e),
                        retry_in_s=self.policy.retry_after_s)  # fmt: skip
                    await self._sleep(self.policy.retry_after_s)
        finally:
            self.leading, self._busy = False, None
            self._answer(Outcome(refused=Refusal.NOT_LEADER, message="leadership lost"))

    async def _step(self) -> None:
        if self._share is not None:
            await self._share.sync()
        if self._ca.plugged_in:
            await self._wait(None, self._wake)  # nothing to rotate; requests are refused
            return
        if self._ca.staged_at() is not None:
            await self._complete(self._trigger or Trigger.RESUMED)
            return
        trigger = await self._next_trigger()
        if trigger is not None:
            await self._stage(trigger)

    async def _next_trigger(self) -> Trigger | None:
        self._wake.clear()
        if self._request is not None:
            return Trigger.OPERATOR
        before = self.policy.rotate_before
        if before is not None and self._ca.root_expiry() - self._clock() < before:
            return Trigger.AUTO
        await self._wait(self.policy.check_every.total_seconds(), self._wake)
        return None

    async def _stage(self, trigger: Trigger) -> None:
        self._busy = Phase.DISTRIBUTING
        await self._apply(self._ca.stage_new_root)
        root = self._staged()
        self._trigger = trigger
        self.record = RotationRecord(
            trigger=trigger, root=fingerprint(root), started_at=self._clock()
        )
        _log.info("sds.root-rotation-started", trigger=str(trigger), root=fingerprint(root))
        self._answer(Outcome(fingerprint=fingerprint(root)))

    async def _complete(self, trigger: Trigger) -> None:
        root = self._staged()
        record = self.record
        if record is None or record.root != fingerprint(root):
            record = self.record = RotationRecord(
                trigger=trigger, root=fingerprint(root), started_at=self._clock()
            )
        self._busy = Phase.DISTRIBUTING
        self._refresh_all()
        start = self._clock()
        await self._await_acks(root, record, deadline=start + self.policy.grace,
                               not_before=start + self.policy.follower_sync)  # fmt: skip
        self._busy = Phase.REISSUING
        old = self._active_fingerprint()
        before = self._serials()
        now = self._clock()
        until = now + self.policy.follower_sync + self.policy.workload_ttl
        await self._apply(lambda: self._ca.activate_staged_root(
            trusted_until_at_least=until if self.policy.follower_sync else None))  # fmt: skip
        self._trigger = None
        record.enter(Phase.REISSUING, self._clock())
        record.retired, record.retires_at = old, self._retirement(old)
        if record.retires_at is None or record.retires_at <= self._clock():
            record.retired_at = self._clock()  # it signed nothing still valid: gone already
        if self._rotations is not None:
            self._rotations.labels(trigger=str(trigger)).inc()
        _log.info("sds.root-activated-for-rotation", root=record.root, retired=old,
                  retires_at=record.retires_at)  # fmt: skip
        self._issuer.rotate_all()
        self._refresh_all()
        self._changed.set()
        await self._await_reissued(before)
        record.enter(Phase.IDLE if record.retired_at else Phase.RETIRING, self._clock())
        self._busy = None

    async def _await_acks(
        self,
        root: x509.Certificate,
        record: RotationRecord,
        *,
        deadline: datetime,
        not_before: datetime,
    ) -> None:
        pem = cert_to_pem(root)
        while True:
            state = self._acks.pending(pem)
            record.streams, record.pending = state.streams, state.pending
            now = self._clock()
            if now >= not_before and (not state.pending or now >= deadline):
                break
            await self._sleep(self.policy.ack_poll_s)
        if state.pending:
            record.grace_expired = True
            _log.warning("sds.root-rotation-grace-expired", root=record.root,
                         pending=list(state.pending[:20]), count=len(state.pending))  # fmt: skip
        else:
            _log.info("sds.root-bundle-acked", root=record.root, proxies=state.streams)

    async def _await_reissued(self, before: dict[SpiffeId, int]) -> None:
        deadline = self._clock() + self.policy.grace
        while self._clock() < deadline:
            now = self._serials()
            if all(now[i] != serial for i, serial in before.items() if i in now):
                return
            await self._sleep(self.policy.ack_poll_s)

    def _serials(self) -> dict[SpiffeId, int]:
        out: dict[SpiffeId, int] = {}
        for identity in self._issuer.identities():
            with contextlib.suppress(CAError, KeyError):
                out[identity] = self._issuer.certificate(identity).serial
        return out

    async def _apply(self, fn: Callable[[], object]) -> None:
        if self._share is None:
            fn()
        else:
            await self._share.change(fn)

    def _answer(self, outcome: Outcome) -> None:
        request, self._request = self._request, None
        if request is not None and not request.done():
            request.set_result(outcome)

    # -- every replica: the pruned bundle reaches the proxies ---------------------------

    async def watch_retirements(self) -> None:
        """Republish every proxy when a retired root leaves the bundle; forever."""
        announced = {r.fingerprint for r in self._ca.roots() if self._gone(r, self._clock())}
        while True:
            self._changed.clear()
            now = self._clock()
            retired = [r for r in self._ca.roots() if r.state is RootState.RETIRED]
            newly = [r for r in retired if self._gone(r, now) and r.fingerprint not in announced]
            if newly:
                announced.update(r.fingerprint for r in newly)
                self._refresh_all()
                for r in newly:
                    _log.info("sds.root-retired", fingerprint=r.fingerprint, at=r.signed_until)
                    record = self.record
                    if record is not None and record.retired == r.fingerprint:
                        record.retired_at = now
                        if record.phase is Phase.RETIRING:
                            record.enter(Phase.IDLE, now)
            upcoming = [r.signed_until for r in retired if r.signed_until and r.signed_until > now]
            seconds = (min(upcoming) - now).total_seconds() if upcoming else None
            await self._wait(seconds, self._changed)

    @staticmethod
    def _gone(root: RootInfo, now: datetime) -> bool:
        return root.state is RootState.RETIRED and (
            root.signed_until is None or root.signed_until <= now
        )

    # -- state ----------------------------------------------------------------------------

    def phase(self) -> Phase:
        if self._busy is not None:
            return self._busy
        now = self._clock()
        roots = self._ca.roots()
        if any(r.state is RootState.STAGED for r in roots):
            return Phase.DISTRIBUTING
        if any(r.state is RootState.RETIRED and not self._gone(r, now) for r in roots):
            return Phase.RETIRING
        return Phase.IDLE

    def pending_proxies(self) -> int:
        record = self.record
        return len(record.pending) if record and self._busy is Phase.DISTRIBUTING else 0

    def debug(self) -> dict[str, Any]:
        """/debug/ca: the roots, the phase, the current or last rotation."""
        return ca_debug(
            self._ca, now=self._clock(), phase=str(self.phase()), leading=self.leading,
            leader=self._leader(), policy=self.policy,
            rotation=self.record.as_dict() if self.record else None,
        )  # fmt: skip

    def _staged(self) -> x509.Certificate:
        fp = next((r.fingerprint for r in self._ca.roots() if r.state is RootState.STAGED), "")
        for cert in bundle_certs(self._ca):
            if fingerprint(cert) == fp:
                return cert
        raise CAError(f"{self._ca.ca_dir}: no staged root in the trust bundle")

    def _active_fingerprint(self) -> str:
        return next((r.fingerprint for r in self._ca.roots() if r.state is RootState.ACTIVE), "")

    def _retirement(self, fp: str) -> datetime | None:
        return next((r.signed_until for r in self._ca.roots() if r.fingerprint == fp), None)

    async def _wait(self, seconds: float | None, event: asyncio.Event) -> None:
        """Until `event` is set or `seconds` (None: forever) have passed on the clock;
        slept in chunks of at most max_sleep_s, so a wall-clock jump is noticed."""
        deadline = None if seconds is None else self._clock() + timedelta(seconds=seconds)
        while not event.is_set():
            chunk = self.policy.max_sleep_s
            if deadline is not None:
                chunk = min(chunk, (deadline - self._clock()).total_seconds())
                if chunk <= 0:
                    return
            async with asyncio.TaskGroup() as tg:
                woken = tg.create_task(event.wait())
                slept = tg.create_task(self._sleep(chunk))
                await asyncio.wait((woken, slept), return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
                slept.cancel()
