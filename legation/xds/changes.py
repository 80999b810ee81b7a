"""Convergence per change: did this change reach every proxy it affects, and how fast?

The pipeline records each published change (`record`): which objects changed,
when the change was first seen, and, per proxy whose snapshot it changed, the
version of each type that proxy must now ACK. The xDS streams report ACKs and
NACKs (`on_ack`, `on_nack`). A proxy has converged on a change once it has
ACKed every such version (a later version of the type counts too: it holds
this change as well); the change has converged once every affected proxy has.
Its convergence time (first seen -> last affected proxy's ACK) goes to the
`legation_change_convergence_seconds` histogram, and the last changes are kept
for `/debug/changes` and `legation changes`. A NACK of an expected version is
recorded with the proxy's message.

Single-threaded: called on the event loop only (the pipeline's publication and
the streams' ACK handling both run there).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from legation.model import ObjectKey

KEPT = 64  # changes kept for /debug/changes


@dataclass(slots=True)
class _Proxy:
    expected: dict[str, str]  # type (short name) -> version to ACK
    pending: set[str]  # types not ACKed yet
    acked_at: float = 0.0  # monotonic; 0 until every expected type is ACKed
    nacks: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class Change:
    id: int  # the mesh version published
    seen_at: float  # monotonic: when the change was first seen
    wall: float  # unix time of the same moment
    keys: tuple[ObjectKey, ...]  # (kind, namespace, name) of each changed object
    proxies: dict[str, _Proxy]
    converged_at: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        def ms(at: float) -> float | None:
            return round((at - self.seen_at) * 1000, 1) if at else None

        return {
            "id": self.id,
            "at": self.wall,
            "objects": [f"{k} {ns}/{n}" if ns else f"{k} {n}" for k, ns, n in self.keys],
            "converged": bool(self.converged_at) or not self.proxies,
            "converged_after_ms": ms(self.converged_at),
            "proxies": {
                node: {"acked_after_ms": ms(p.acked_at), "waiting_for": sorted(p.pending),
                       "expected": p.expected, "nacks": p.nacks}
                for node, p in sorted(self.proxies.items())
            },
        }


class ChangeLog:
    def __init__(self, *, observe: Callable[[float], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._observe = observe
        self._clock = clock
        self._changes: deque[Change] = deque(maxlen=KEPT)
        # Told which change a proxy NACKed: (change's keys, node, type, message). The app
        # holds those objects back (NACK containment, MeshStore.reject).
        self.on_rejected: Callable[[tuple[ObjectKey, ...], str, str, str], None] | None = None

    def record(self, change_id: int, *, seen_at: float, objects: tuple[ObjectKey, ...],
               expected: Mapping[str, Mapping[str, str]]) -> None:
        """A published change: `expected` maps each affected proxy to {type: version}."""
        proxies = {node: _Proxy(expected=dict(types), pending=set(types))
                   for node, types in expected.items() if types}
        wall = time.time() - (self._clock() - seen_at)
        change = Change(id=change_id, seen_at=seen_at, wall=wall, keys=objects,
                        proxies=proxies)
        self._changes.append(change)
        if not proxies:
            change.converged_at = seen_at

    def on_ack(self, node_id: str, short: str, version: str) -> None:
        now = self._clock()
        for change in self._changes:
            p = change.proxies.get(node_id)
            if p is None or short not in p.pending:
                continue
            if p.expected[short] == version or self._newer(change, node_id, short, version):
                p.pending.discard(short)
                if not p.pending:
                    p.acked_at = now
                    self._settle(change, now)

    def on_nack(self, node_id: str, short: str, version: str, message: str) -> None:
        """Record a NACK with the change(s) that expected that version, and tell
        `on_rejected` of the newest such change: it brought what Envoy refused."""
        culprit: Change | None = None
        for change in self._changes:
            p = change.proxies.get(node_id)
            if p is not None and p.expected.get(short) == version:
                first = not any(n["version"] == version and n["type"] == short
                                for n in p.nacks)
                p.nacks.append({"type": short, "version": version, "message": message})
                if first:
                    culprit = change
        if culprit is not None and culprit.keys and self.on_rejected is not None:
            self.on_rejected(culprit.keys, node_id, short, message)

    def recent(self) -> list[dict[str, Any]]:
        """Newest first."""
        return [c.as_dict() for c in reversed(self._changes)]

    def _newer(self, change: Change, node_id: str, short: str, version: str) -> bool:
        """`version` is what a later change expects of this proxy: it includes `change`."""
        later = False
        for c in self._changes:
            if c is change:
                later = True
                continue
            p = c.proxies.get(node_id)
            if later and p is not None and p.expected.get(short) == version:
                return True
        return False

    def _settle(self, change: Change, now: float) -> None:
        if change.converged_at or any(p.pending for p in change.proxies.values()):
            return
        change.converged_at = now
        if self._observe is not None:
            self._observe(now - change.seen_at)
