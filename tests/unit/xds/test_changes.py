"""Convergence per change (xds/changes.py): who must ACK what, when a change is done."""

from __future__ import annotations

from legation.xds.changes import ChangeLog
from legation.xds.status import StatusBoard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_change_converges_when_every_affected_proxy_acked_its_versions() -> None:
    clock, seen = Clock(), []
    log = ChangeLog(observe=seen.append, clock=clock)
    log.record(7, seen_at=100.0, objects=(("VirtualService", "shop", "catalog"),),
               expected={"a": {"rds": "r1"}, "b": {"rds": "r1", "cds": "c1"}})
    clock.now = 100.2
    log.on_ack("a", "rds", "r1")
    log.on_ack("b", "rds", "r1")
    (c,) = log.recent()
    assert not c["converged"] and c["proxies"]["b"]["waiting_for"] == ["cds"]
    assert c["proxies"]["a"]["acked_after_ms"] == 200.0
    log.on_ack("b", "cds", "old")  # another version: not this change
    clock.now = 100.5
    log.on_ack("b", "cds", "c1")
    (c,) = log.recent()
    assert c["converged"] and c["converged_after_ms"] == 500.0
    assert seen == [0.5]


def test_a_later_version_acks_the_earlier_change_and_nacks_are_kept() -> None:
    clock = Clock()
    log = ChangeLog(clock=clock)
    log.record(1, seen_at=100.0, objects=(), expected={"a": {"cds": "v1"}})
    log.record(2, seen_at=100.1, objects=(), expected={"a": {"cds": "v2"}})
    log.on_nack("a", "cds", "v1", "bad cluster")
    log.on_ack("a", "cds", "v2")  # holds both changes
    second, first = log.recent()
    assert first["converged"] and second["converged"]
    assert first["proxies"]["a"]["nacks"] == [
        {"type": "cds", "version": "v1", "message": "bad cluster"}]


def test_the_board_expects_only_the_types_a_proxy_subscribed_to() -> None:
    board = StatusBoard()
    _, st = board.open("a", "ads")
    st.type("cds")
    board.record_change(3, 100.0, (("Service", "shop", "x"),), {"a": {"cds": "c", "vhds": "v"},
                                                       "gone": {"cds": "c"}})
    (c,) = board.changes.recent()
    assert c["proxies"] == {"a": {"acked_after_ms": None, "waiting_for": ["cds"],
                                  "expected": {"cds": "c"}, "nacks": []}}


def test_a_nack_names_the_change_that_brought_the_version_once() -> None:
    """NACK containment (issue 13): the change whose expected version a proxy NACKed is
    handed on once (a repeated NACK of that version is recorded, not handed on again)."""
    log = ChangeLog(clock=Clock())
    told: list[tuple[object, ...]] = []
    log.on_rejected = lambda keys, node, short, msg: told.append((keys, node, short, msg))
    bad = ("VirtualService", "shop", "bad")
    log.record(1, seen_at=100.0, objects=(("Service", "shop", "a"),),
               expected={"a": {"rds": "r1"}})
    log.record(2, seen_at=100.1, objects=(bad,), expected={"a": {"rds": "r2"}})
    log.on_nack("a", "rds", "r2", "RE2 program size 1004 > max program size 100")
    log.on_nack("a", "rds", "r2", "RE2 program size 1004 > max program size 100")
    log.on_nack("a", "rds", "nope", "not a version any change expects")
    assert told == [((bad,), "a", "rds", "RE2 program size 1004 > max program size 100")]
    assert (log.recent()[0]["objects"]) == ["VirtualService shop/bad"]
