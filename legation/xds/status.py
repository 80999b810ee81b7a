"""What each connected proxy has been sent, has ACKed and has rejected.

Written by the xDS streams, read by the admin API (/debug/proxies) and the
demo. One `ProxyStatus` per node id; one `TypeStatus` per resource type.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from legation.model import ObjectKey
from legation.xds.changes import ChangeLog


@dataclass(slots=True, kw_only=True)
class Nack:
    version: str
    nonce: str
    message: str
    at: float  # unix time


@dataclass(slots=True, kw_only=True)
class TypeStatus:
    sent_version: str = ""
    sent_nonce: str = ""
    sent_at: float = 0.0
    acked_version: str = ""
    acked_at: float = 0.0
    last_nack: Nack | None = None
    pushes: int = 0

    def as_dict(self) -> dict[str, object]:
        nack = self.last_nack
        return {
            "sent_version": self.sent_version,
            "sent_nonce": self.sent_nonce,
            "acked_version": self.acked_version,
            "sent_at": self.sent_at,
            "acked_at": self.acked_at,
            "pushes": self.pushes,
            "last_nack": None
            if nack is None
            else {
                "version": nack.version,
                "nonce": nack.nonce,
                "message": nack.message,
                "at": nack.at,
            },
        }


@dataclass(slots=True, kw_only=True)
class ProxyStatus:
    node_id: str
    stream: str  # "ads", "delta-ads", "cds", ...
    peer: str = ""
    connected_at: float = field(default_factory=time.time)
    types: dict[str, TypeStatus] = field(default_factory=dict)
    changes: ChangeLog | None = field(default=None, repr=False)  # the board's

    def type(self, short: str) -> TypeStatus:
        return self.types.setdefault(short, TypeStatus())

    def as_dict(self) -> dict[str, object]:
        return {
            "node": self.node_id,
            "stream": self.stream,
            "peer": self.peer,
            "connected_at": self.connected_at,
            "types": {t: s.as_dict() for t, s in sorted(self.types.items())},
        }


class StatusBoard:
    """Every open stream's status, keyed by a stream id; and the changes' convergence
    (changes.py), which the streams' ACKs and NACKs feed."""

    def __init__(self, changes: ChangeLog | None = None) -> None:
        self._streams: dict[int, ProxyStatus] = {}
        self._next = 0
        self.changes = changes or ChangeLog()

    def open(self, node_id: str, stream: str, peer: str = "") -> tuple[int, ProxyStatus]:
        self._next += 1
        st = ProxyStatus(node_id=node_id, stream=stream, peer=peer, changes=self.changes)
        self._streams[self._next] = st
        return self._next, st

    def record_change(self, change_id: int, seen_at: float, objects: tuple[ObjectKey, ...],
                      moved: dict[str, dict[str, str]]) -> None:
        """A published change (the pipeline's hook): each proxy must ACK the new version of
        every type it subscribes to whose version moved."""
        subscribed: dict[str, set[str]] = {}
        for st in self._streams.values():
            subscribed.setdefault(st.node_id, set()).update(st.types)
        expected = {node: {t: v for t, v in types.items() if t in subscribed.get(node, ())}
                    for node, types in moved.items()}
        self.changes.record(change_id, seen_at=seen_at, objects=objects, expected=expected)

    def close(self, stream_id: int) -> None:
        self._streams.pop(stream_id, None)

    def all(self) -> list[ProxyStatus]:
        return sorted(self._streams.values(), key=lambda s: (s.node_id, s.stream, s.connected_at))


class Sync:
    """Where a proxy stands on one type (Istio's proxy-status words)."""

    SYNCED = "SYNCED"  # it ACKed the version it should have
    NOT_SENT = "NOT SENT"  # it has asked for nothing of the type, or been sent nothing
    STALE = "STALE"  # sent, not (yet) ACKed; or it ACKed an older version
    NACKED = "NACKED"  # it rejected the version it was sent last


def sync_state(st: TypeStatus | None, expected: str) -> str:
    """A proxy's standing on one type, given the version its snapshot holds."""
    if st is None or not st.sent_version:
        return Sync.NOT_SENT
    if st.last_nack is not None and st.last_nack.version == st.sent_version and (
            st.acked_version != st.sent_version):
        return Sync.NACKED
    return Sync.SYNCED if st.acked_version == expected else Sync.STALE
