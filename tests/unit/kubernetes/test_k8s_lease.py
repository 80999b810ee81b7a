"""Leader election on a coordination.k8s.io/v1 Lease, against the emulated API server."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from k8s import ApiServer
from k8s.harness import until

from legation.kube.lease import LeaderElector, LeaseLock, LeaseRecord

NS = "legation-system"


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lock(api: Any, identity: str, clock: FakeMonotonic | None = None, **kw: Any) -> LeaseLock:
    return LeaseLock(api, namespace=NS, identity=identity, monotonic=clock or FakeMonotonic(),
                     **kw)


def _holders(apiserver: ApiServer) -> list[str]:
    """The lease's holderIdentity over its history, consecutive repeats collapsed."""
    seen: list[str] = []
    for ev in list(apiserver.state.history):
        if ev.rtype.kind == "Lease" and ev.type != "DELETED":
            holder = ev.obj.get("spec", {}).get("holderIdentity", "")
            if not seen or seen[-1] != holder:
                seen.append(holder)
    return seen


def _spec(apiserver: ApiServer) -> dict[str, Any]:
    lease = apiserver.get("coordination.k8s.io/v1", "Lease", "legation-leader", NS)
    assert lease is not None
    spec: dict[str, Any] = lease["spec"]
    return spec


def test_the_first_candidate_creates_and_holds_the_lease(apiserver: ApiServer, api: Any) -> None:
    a = _lock(api, "pod-a", duration_s=15)

    assert a.try_acquire_or_renew()

    spec = _spec(apiserver)
    assert spec["holderIdentity"] == "pod-a"
    assert spec["leaseDurationSeconds"] == 15
    assert spec["leaseTransitions"] == 0
    assert spec["acquireTime"] == spec["renewTime"]
    renewed = datetime.fromisoformat(spec["renewTime"])  # metav1.MicroTime: RFC 3339, UTC
    assert renewed.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - renewed) < timedelta(minutes=5)


def test_a_live_lease_is_not_taken_and_its_holder_renews(apiserver: ApiServer, api: Any) -> None:
    a, b = _lock(api, "pod-a"), _lock(api, "pod-b")
    assert a.try_acquire_or_renew()
    first = _spec(apiserver)

    assert not b.try_acquire_or_renew()
    assert a.try_acquire_or_renew()  # renewal

    renewed = _spec(apiserver)
    assert renewed["holderIdentity"] == "pod-a"
    assert renewed["acquireTime"] == first["acquireTime"]
    assert renewed["leaseTransitions"] == 0
    assert len(apiserver.writes("leases")) == 2  # one create, one update: b wrote nothing


def test_expiry_is_measured_on_the_candidates_own_clock(apiserver: ApiServer, api: Any) -> None:
    clock_b = FakeMonotonic()
    a, b = _lock(api, "pod-a", duration_s=15), _lock(api, "pod-b", clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()  # b starts watching the record now

    clock_b.now += 14.9
    assert not b.try_acquire_or_renew()  # not expired yet from b's point of view
    clock_b.now += 0.2
    assert b.try_acquire_or_renew()  # a stopped renewing: b takes over

    spec = _spec(apiserver)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("pod-b", 1)
    assert not a.try_acquire_or_renew()  # a sees b's fresh record: live, not a's


def test_a_renewal_resets_the_followers_expiry(apiserver: ApiServer, api: Any) -> None:
    clock_b = FakeMonotonic()
    a, b = _lock(api, "pod-a", duration_s=15), _lock(api, "pod-b", clock_b)
    assert a.try_acquire_or_renew()
    assert not b.try_acquire_or_renew()
    clock_b.now += 10
    assert a.try_acquire_or_renew()  # the record changes
    assert not b.try_acquire_or_renew()  # b observes the change at its now
    clock_b.now += 10  # 20 s after b first looked, 10 s after the renewal

    assert not b.try_acquire_or_renew()


def test_a_stale_resource_version_loses_the_race(apiserver: ApiServer, api: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _lock(api, "pod-a"), _lock(api, "pod-b")
    assert a.try_acquire_or_renew()
    assert a.release()
    released = b._read()  # both candidates see the free lease at the same resourceVersion
    assert released is not None and released.holder == ""
    assert a.try_acquire_or_renew()  # a writes first
    monkeypatch.setattr(b, "_read", lambda: released)

    assert not b.try_acquire_or_renew()  # 409 Conflict: b's update carried the old version

    assert _spec(apiserver)["holderIdentity"] == "pod-a"
    assert [r.method for r in apiserver.writes("leases")][-1] == "PUT"


def test_two_creators_one_wins(apiserver: ApiServer, api: Any,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _lock(api, "pod-a"), _lock(api, "pod-b")
    monkeypatch.setattr(b, "_read", lambda: None)  # b also saw no Lease
    assert a.try_acquire_or_renew()

    assert not b.try_acquire_or_renew()  # 409 AlreadyExists

    assert _spec(apiserver)["holderIdentity"] == "pod-a"


def test_release_hands_over_at_once(apiserver: ApiServer, api: Any) -> None:
    a, b = _lock(api, "pod-a"), _lock(api, "pod-b")
    assert a.try_acquire_or_renew()
    assert not b.release()  # not b's to release

    assert a.release()
    assert b.try_acquire_or_renew()  # no need to wait for expiry

    spec = _spec(apiserver)
    assert (spec["holderIdentity"], spec["leaseTransitions"]) == ("pod-b", 1)
    assert isinstance(b.observed, LeaseRecord) and b.observed.holder == "pod-b"


def test_elector_parameters_are_checked(api: Any) -> None:
    with pytest.raises(ValueError, match="lease duration > renew deadline"):
        LeaderElector(_lock(api, "a", duration_s=5), renew_deadline_s=5, retry_period_s=1)


class Duty:
    """Records which replicas run the singleton duty, and how many at once."""

    def __init__(self) -> None:
        self.running: set[str] = set()
        self.max_parallel = 0
        self.starts: list[str] = []

    def for_(self, who: str) -> Any:
        async def duty() -> None:
            self.running.add(who)
            self.starts.append(who)
            self.max_parallel = max(self.max_parallel, len(self.running))
            try:
                await asyncio.Event().wait()
            finally:
                self.running.discard(who)
        return duty


def _elector(api: Any, who: str) -> LeaderElector:
    lock = LeaseLock(api, namespace=NS, identity=who, duration_s=2, request_timeout_s=1)
    return LeaderElector(lock, renew_deadline_s=0.5, retry_period_s=0.05)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_one_replica_runs_the_duty_and_another_takes_over_on_shutdown(
    apiserver: ApiServer, api: Any
) -> None:
    duty = Duty()
    a, b = _elector(api, "pod-a"), _elector(api, "pod-b")
    ta = asyncio.create_task(a.run(duty.for_("pod-a")))
    await until(lambda: duty.running == {"pod-a"})
    tb = asyncio.create_task(b.run(duty.for_("pod-b")))
    try:
        await asyncio.sleep(0.3)  # b competes several rounds meanwhile
        assert duty.running == {"pod-a"} and not b.leading

        await _stop(ta)  # a shuts down: releases the lease (b may take it at once)
        await until(lambda: duty.running == {"pod-b"}, timeout=1.5)  # well before expiry (2 s)
        assert _holders(apiserver)[:3] == ["pod-a", "", "pod-b"]  # a released; b acquired
    finally:
        await _stop(ta)
        await _stop(tb)
    assert duty.max_parallel == 1
    assert duty.starts == ["pod-a", "pod-b"]
    assert _spec(apiserver)["holderIdentity"] == ""  # b released it too


async def test_the_duty_stops_when_the_lease_cannot_be_renewed(
    apiserver: ApiServer, api: Any
) -> None:
    duty = Duty()
    a = _elector(api, "pod-a")
    task = asyncio.create_task(a.run(duty.for_("pod-a")))
    try:
        await until(lambda: duty.running == {"pod-a"})
        apiserver.stop()  # no renewals any more: after the renew deadline, stop acting
        await until(lambda: not duty.running, timeout=5)
        assert not a.leading
        apiserver.start()
        await until(lambda: duty.running == {"pod-a"}, timeout=5)  # its own lease: renewed
    finally:
        await _stop(task)
    assert duty.starts == ["pod-a", "pod-a"] and a.terms == 2
