"""CertificateIssuer: caching, rotation at ~50% of lifetime with jitter, on_rotate, run()."""

from __future__ import annotations

import asyncio
import random
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from legation.model import SpiffeId
from legation.security import CAError, CertificateAuthority, CertificateIssuer

from .helpers import TD, FakeTime, ident, verify_client

HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def ca(tmp_path: Path, clock: FakeTime) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)


def _issuer(ca: CertificateAuthority, clock: FakeTime, **kw: object) -> CertificateIssuer:
    kw.setdefault("rng", random.Random(7))
    return CertificateIssuer(ca, clock=clock, sleep=clock.sleep, **kw)  # type: ignore[arg-type]


async def _run_until(issuer: CertificateIssuer, clock: FakeTime, end: datetime) -> None:
    """Drive `run()` on simulated time until the clock reaches `end`."""
    task = asyncio.create_task(issuer.run())
    try:
        async with asyncio.timeout(30):
            while clock.now < end:
                await asyncio.sleep(0)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def test_certificate_is_cached_per_identity(ca: CertificateAuthority, clock: FakeTime) -> None:
    issuer = _issuer(ca, clock, ttl=HOUR)
    a = issuer.certificate(ident(sa="a"))
    assert issuer.certificate(ident(sa="a")) is a
    b = issuer.certificate(ident(sa="b"))
    assert b.serial != a.serial and b.identity == ident(sa="b")
    assert issuer.identities() == (ident(sa="a"), ident(sa="b"))
    assert a.not_after == clock.now + HOUR


@pytest.mark.parametrize("seed", range(20))
def test_next_rotation_is_half_lifetime_minus_up_to_ten_percent(
    ca: CertificateAuthority, clock: FakeTime, seed: int
) -> None:
    issuer = _issuer(ca, clock, ttl=timedelta(hours=24), rng=random.Random(seed))
    issuer.certificate(ident())
    at = issuer.next_rotation(ident())
    assert (
        clock.now + timedelta(hours=12) - timedelta(hours=2.4)
        <= at
        <= clock.now + timedelta(hours=12)
    )


def test_jitter_spreads_rotations(ca: CertificateAuthority, clock: FakeTime) -> None:
    issuer = _issuer(ca, clock, ttl=timedelta(hours=24))
    times = set()
    for i in range(20):
        issuer.certificate(ident(sa=f"sa-{i}"))
        times.add(issuer.next_rotation(ident(sa=f"sa-{i}")))
    assert len(times) == 20
    assert max(times) - min(times) > timedelta(minutes=30)


def test_next_rotation_of_unknown_identity(ca: CertificateAuthority, clock: FakeTime) -> None:
    with pytest.raises(KeyError):
        _issuer(ca, clock).next_rotation(ident())


async def test_a_simulated_day_rotates_every_identity_repeatedly(
    ca: CertificateAuthority, clock: FakeTime
) -> None:
    rotated: list[tuple[SpiffeId, datetime]] = []

    def record(identity: SpiffeId) -> None:  # what the pipeline does: fetch and push
        rotated.append((identity, clock.now))
        history[identity].append(issuer.certificate(identity))

    issuer = _issuer(ca, clock, ttl=HOUR, on_rotate=record)
    start = clock.now
    history = {i: [issuer.certificate(i)] for i in (ident(sa="a"), ident(sa="b"))}
    await _run_until(issuer, clock, start + timedelta(hours=24))

    for identity, certs in history.items():
        # every 27-30 minutes for a 1 h certificate: 48..54 rotations a day
        assert 48 <= len(certs) - 1 <= 54, len(certs)
        times = [t for i, t in rotated if i == identity]
        for prev, cert, t in zip(certs, certs[1:], times, strict=False):
            issued = prev.not_after - HOUR
            assert issued + HOUR * 0.4 <= t <= issued + HOUR * 0.5
            assert t < prev.not_after  # the old one was still valid: no gap
            assert cert.serial != prev.serial
            assert cert.not_after == t + HOUR
            verify_client(cert, ca.trust_bundle().roots_pem, at=t)
    assert {i for i, _ in rotated} == set(history)


async def test_run_with_nothing_to_do_waits_for_the_first_certificate(
    ca: CertificateAuthority, clock: FakeTime
) -> None:
    seen: list[SpiffeId] = []
    issuer = _issuer(ca, clock, ttl=HOUR, on_rotate=seen.append)
    task = asyncio.create_task(issuer.run())
    for _ in range(20):
        await asyncio.sleep(0)
    assert clock.slept == []  # idle: no timer at all
    await asyncio.to_thread(issuer.certificate, ident())  # from a worker thread, like translation
    async with asyncio.timeout(10):
        while not seen:
            await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen[0] == ident()


def test_forget_stops_rotation(ca: CertificateAuthority, clock: FakeTime) -> None:
    seen: list[SpiffeId] = []
    issuer = _issuer(ca, clock, ttl=HOUR, on_rotate=seen.append)
    issuer.certificate(ident(sa="a"))
    issuer.certificate(ident(sa="b"))
    issuer.forget(ident(sa="a"))
    clock.advance(HOUR)
    assert issuer.rotate_due() == (ident(sa="b"),)
    assert seen == [ident(sa="b")]
    assert ident(sa="a") not in issuer.expiries()


def test_expired_certificate_is_reissued_on_read_and_announced(
    ca: CertificateAuthority, clock: FakeTime
) -> None:
    seen: list[SpiffeId] = []
    issuer = _issuer(ca, clock, ttl=HOUR, on_rotate=seen.append)
    old = issuer.certificate(ident())
    clock.advance(2 * HOUR)  # e.g. the host was suspended
    new = issuer.certificate(ident())
    assert new.serial != old.serial and new.not_after > clock.now
    assert issuer.rotate_due() == (ident(),)  # the other proxies of it get the new one too
    assert seen == [ident()]


def test_rotate_all_reissues_everything_now(ca: CertificateAuthority, clock: FakeTime) -> None:
    issuer = _issuer(ca, clock, ttl=HOUR)
    before = {i: issuer.certificate(i).serial for i in (ident(sa="a"), ident(sa="b"))}
    issuer.rotate_all()
    assert issuer.rotate_due() == (ident(sa="a"), ident(sa="b"))
    assert all(issuer.certificate(i).serial != s for i, s in before.items())


def test_failures_do_not_stop_rotation(
    ca: CertificateAuthority, clock: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[SpiffeId] = []

    def explode(identity: SpiffeId) -> None:
        calls.append(identity)
        raise RuntimeError("push failed")

    issuer = _issuer(ca, clock, ttl=HOUR, on_rotate=explode)
    old = issuer.certificate(ident())
    clock.advance(HOUR * 0.5)
    assert issuer.rotate_due() == (ident(),)  # the callback's error is logged, not raised
    assert calls == [ident()]

    def failing_issue(*args: object, **kw: object) -> object:
        raise CAError("disk on fire")

    monkeypatch.setattr(ca, "issue", failing_issue)
    current = issuer.certificate(ident())
    clock.advance(HOUR * 0.5)
    assert issuer.rotate_due() == ()
    assert issuer.certificate(ident()) is current  # still serving the valid one
    assert issuer.next_rotation(ident()) == clock.now + timedelta(seconds=10)  # retry soon
    monkeypatch.undo()
    clock.advance(timedelta(seconds=10))
    assert issuer.rotate_due() == (ident(),)
    assert issuer.certificate(ident()).serial not in (old.serial, current.serial)


def test_rotation_never_spins_near_the_signer_expiry(
    ca: CertificateAuthority, clock: FakeTime
) -> None:
    issuer = _issuer(ca, clock, ttl=HOUR)
    clock.now = ca.signer_expiry() - timedelta(milliseconds=500)
    issuer.certificate(ident())
    assert issuer.next_rotation(ident()) >= clock.now + timedelta(seconds=1)


def test_ttl_must_be_positive(ca: CertificateAuthority, clock: FakeTime) -> None:
    with pytest.raises(ValueError, match="positive"):
        _issuer(ca, clock, ttl=timedelta(0))
