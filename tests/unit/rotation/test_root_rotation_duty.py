"""Root rotation as a running duty, with manual time: make-before-break, the grace bound,
retirement at the last leaf's expiry with the pruned bundle pushed, triggers, refusals."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from sds.helpers import write_plugin_layout

from legation.security import RootState
from legation.security.rotation import Phase, Refusal, RotationPolicy, Trigger

from .helpers import T0, ManualTime, World, settle

GRACE = timedelta(minutes=2)


@pytest.fixture
def time() -> ManualTime:
    return ManualTime()


def _world(tmp_path: Path, time: ManualTime, **policy: object) -> World:
    policy.setdefault("rotate_before", None)
    policy.setdefault("grace", GRACE)
    return World(tmp_path / "ca", time, policy=RotationPolicy(**policy))  # type: ignore[arg-type]


async def test_the_new_root_reaches_every_proxy_before_it_signs_a_leaf(
    tmp_path: Path, time: ManualTime
) -> None:
    world = _world(tmp_path, time)
    a = world.connect("a", "a-sa")
    b = world.connect("b", "b-sa", auto_ack=False)
    world.ack(b)
    old = world.root(RootState.ACTIVE)
    async with world.running():
        outcome = await world.rotation.request()
        new = outcome.fingerprint
        assert outcome.refused is None and new and new != old
        # staged: in the bundle, sent to both proxies, signing nothing
        assert world.bundle() == (old, new)
        assert world.rotation.phase() is Phase.DISTRIBUTING
        assert a.given[-1].roots == (old, new) and b.given[-1].roots == (old, new)

        await time.advance(timedelta(seconds=30))  # b has not ACKed: nothing signed by new
        assert world.root(RootState.ACTIVE) == old
        assert world.rotation.debug()["rotation"]["pending_proxies"] == ["b.shop"]
        assert world.rotation.pending_proxies() == 1

        world.ack(b)
        acked_at = time()
        await time.advance(timedelta(seconds=1))
        assert world.root(RootState.ACTIVE) == new
        assert world.rotation.record is not None
        assert not world.rotation.record.grace_expired
        assert world.rotation.record.seconds["distributing"] == pytest.approx(30.2, abs=0.01)

    given = [g for p in (a, b) for g in p.given]
    first_new_leaf = min(g.at for g in given if g.leaf_root == new)
    assert first_new_leaf >= acked_at  # b's ACK of the bundle came first
    for g in given:  # no proxy ever held a leaf its bundle did not trust
        assert g.leaf_root in g.roots
    # every proxy now presents a leaf of the new root (re-issued at activation)
    assert a.given[-1].leaf_root == new and b.given[-1].leaf_root == new


async def test_a_proxy_that_never_acks_holds_activation_back_for_the_grace_period_only(
    tmp_path: Path, time: ManualTime
) -> None:
    world = _world(tmp_path, time)
    world.connect("a", "a-sa")
    world.connect("b", "b-sa", auto_ack=False)  # never ACKs anything
    old = world.root(RootState.ACTIVE)
    async with world.running():
        staged_at = time()
        new = (await world.rotation.request()).fingerprint
        await time.advance(GRACE - timedelta(seconds=1))
        assert world.root(RootState.ACTIVE) == old
        await time.advance(timedelta(seconds=1.5))
        assert world.root(RootState.ACTIVE) == new

    record = world.rotation.record
    assert record is not None and record.grace_expired and record.pending == ("b.shop",)
    assert record.seconds["distributing"] == pytest.approx(GRACE.total_seconds(), abs=0.25)
    assert record.phase_at is not None and record.phase_at - staged_at >= GRACE


async def test_the_old_root_retires_when_its_last_leaf_expires_and_the_pruned_bundle_is_pushed(
    tmp_path: Path, time: ManualTime
) -> None:
    world = _world(tmp_path, time)
    a = world.connect("a", "a-sa")  # leaf expires at T0 + 1 h
    await time.advance(timedelta(minutes=10))
    c = world.connect("c", "c-sa")  # leaf expires at T0 + 1 h 10 min: the last of the old root
    last_old_leaf = c.given[-1]
    assert last_old_leaf.at == T0 + timedelta(minutes=10)
    old = world.root(RootState.ACTIVE)
    async with world.running():
        new = (await world.rotation.request()).fingerprint
        await time.advance(timedelta(seconds=1))
        assert world.root(RootState.ACTIVE) == new
        record = world.rotation.record
        assert record is not None
        retires_at = T0 + timedelta(minutes=70)
        assert record.retires_at == retires_at
        assert world.rotation.phase() is Phase.RETIRING

        await time.advance(retires_at - time() - timedelta(seconds=1))
        assert world.bundle() == (old, new)
        assert all(old in p.given[-1].roots for p in (a, c))
        pushes = len(world.refreshes)

        await time.advance(timedelta(seconds=1))
        assert time() == retires_at
        assert world.bundle() == (new,)
        assert world.refreshes[pushes:] == [retires_at]  # the timer, at that very instant
        for p in (a, c):
            assert p.given[-1].at == retires_at and p.given[-1].roots == (new,)
        assert world.rotation.phase() is Phase.IDLE
        assert record.retired_at == retires_at
        assert record.phase is Phase.IDLE and "retiring" in record.seconds


async def test_rotation_starts_by_itself_when_the_root_nears_its_expiry(
    tmp_path: Path, time: ManualTime
) -> None:
    # the root lives 3650 days from T0; rotate when less than that minus two hours is left
    before = timedelta(days=3650) - timedelta(hours=2)
    world = _world(tmp_path, time, rotate_before=before, check_every=timedelta(minutes=10))
    world.connect("a", "a-sa")
    old = world.root(RootState.ACTIVE)
    async with world.running():
        await time.advance(timedelta(hours=1, minutes=55))
        assert world.root(RootState.ACTIVE) == old
        await time.advance(timedelta(minutes=20))
        assert world.root(RootState.ACTIVE) != old
        assert world.rotation.record is not None
        assert world.rotation.record.trigger is Trigger.AUTO
        await time.advance(timedelta(hours=1))  # the new root has its 3650 days: not due
    metrics = generate_latest(world.registry).decode()
    assert 'legation_root_rotations_total{trigger="auto"} 1.0' in metrics


async def test_a_root_staged_before_a_restart_is_carried_through(
    tmp_path: Path, time: ManualTime
) -> None:
    world = _world(tmp_path, time)
    world.connect("a", "a-sa")
    world.ca.stage_new_root()  # then the process stopped
    staged = world.root(RootState.STAGED)
    async with world.running():
        await time.advance(timedelta(seconds=1))
        assert world.root(RootState.ACTIVE) == staged
    assert world.rotation.record is not None
    assert world.rotation.record.trigger is Trigger.RESUMED


async def test_requests_are_refused_while_one_runs_and_when_not_leading(
    tmp_path: Path, time: ManualTime
) -> None:
    world = _world(tmp_path, time)
    world.connect("b", "b-sa", auto_ack=False)
    refused = await world.rotation.request()  # lead() is not running here
    assert refused.refused is Refusal.NOT_LEADER
    async with world.running():
        assert (await world.rotation.request()).refused is None
        again = await world.rotation.request()
        assert again.refused is Refusal.IN_PROGRESS
        assert "in progress" in again.message
        metrics = generate_latest(world.registry).decode()
        assert 'legation_root_rotation_phase{phase="distributing"} 1.0' in metrics
        assert 'legation_root_rotation_phase{phase="idle"} 0.0' in metrics
        assert "legation_root_rotation_pending_proxies 1.0" in metrics


async def test_an_operator_provided_ca_is_never_rotated(tmp_path: Path, time: ManualTime) -> None:
    write_plugin_layout(tmp_path / "ca")
    world = _world(tmp_path, time, rotate_before=timedelta(days=3000))
    world.connect("a", "a-sa")
    bundle = world.bundle()
    async with world.running():
        outcome = await world.rotation.request()
        assert outcome.refused is Refusal.PLUG_IN
        assert "replacing its files" in outcome.message
        await time.advance(timedelta(hours=2))  # the root expires within 3000 days: no matter
        await settle()
    assert world.bundle() == bundle
    debug = world.rotation.debug()
    assert debug["mode"] == "plug-in" and debug["automatic_rotation"] is None
    assert [r["state"] for r in debug["roots"]] == ["trusted"]


async def test_debug_view_shows_each_roots_state_and_retirement(
    tmp_path: Path, time: ManualTime
) -> None:
    world = _world(tmp_path, time)
    a = world.connect("a", "a-sa", auto_ack=False)
    world.ack(a)
    async with world.running():
        new = (await world.rotation.request()).fingerprint
        staged = world.rotation.debug()
        assert [r["state"] for r in staged["roots"]] == ["active", "staged"]
        assert staged["phase"] == "distributing" and staged["leading"] is True
        world.ack(a)
        await time.advance(timedelta(seconds=1))
        debug = world.rotation.debug()
    roots = {r["fingerprint"]: r for r in debug["roots"]}
    assert roots[new]["state"] == "active" and roots[new]["in_bundle"]
    (old,) = [r for f, r in roots.items() if f != new]
    assert old["state"] == "retiring" and old["in_bundle"]
    assert old["retires_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert debug["phase"] == "retiring"
    assert debug["rotation"]["trigger"] == "operator" and debug["rotation"]["root"] == new
    assert int(roots[new]["serial"], 16) > 0
