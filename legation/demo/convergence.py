"""Config convergence as the demo shows it: per proxy, what it ACKed, and whether
that is everything the control plane currently holds for it.

Reads the in-process control plane (`legation.app.App`): the snapshot cache
(what each proxy should have, with the monotonic time of the change behind
it) and the status board (what each stream sent, ACKed, NACKed, and when).
A proxy is *in sync* when every non-empty resource type of its snapshot is
ACKed at the snapshot's version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from legation.cache import PUSH_ORDER, ProxyError, Snapshot, SnapshotCache, short_name
from legation.xds.status import StatusBoard


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyView:
    node_id: str
    stream: str  # "ads", "delta-ads"; "" when not connected
    acked: dict[str, str]  # short type -> ACKed version
    in_sync: bool
    last_ack_at: float  # unix time of its latest ACK (0: none)
    nack: str  # "<type>: <Envoy's message>" of its latest NACK, or ""
    refused: str  # why its stream was refused (e.g. NOT_FOUND), or ""
    changed_at: float  # monotonic time of the change behind its snapshot (0: none)


def proxy_view(node_id: str, cache: SnapshotCache, status: StatusBoard) -> ProxyView:
    entry = cache.get(node_id)
    streams = [s for s in status.all() if s.node_id == node_id]
    acked: dict[str, str] = {}
    last_ack, nack, nack_at = 0.0, "", 0.0
    for s in streams:
        for short, t in s.types.items():
            acked[short] = t.acked_version
            last_ack = max(last_ack, t.acked_at)
            if t.last_nack is not None and t.last_nack.at > nack_at:
                nack_at, nack = t.last_nack.at, f"{short}: {t.last_nack.message.strip()}"
    in_sync = isinstance(entry, Snapshot) and bool(streams) and all(
        acked.get(short_name(t)) == entry.version(t) for t in _wanted(entry)
    )
    return ProxyView(
        node_id=node_id,
        stream=streams[-1].stream if streams else "",
        acked=acked,
        in_sync=in_sync,
        last_ack_at=last_ack,
        nack=nack,
        refused=entry.code if isinstance(entry, ProxyError) else "",
        changed_at=entry.changed_at if isinstance(entry, Snapshot) else 0.0,
    )


def _wanted(snapshot: Snapshot) -> list[str]:
    return [t for t in PUSH_ORDER if snapshot.of_type(t)]


def all_in_sync(views: Iterable[ProxyView], *, since: float = 0.0) -> bool:
    """Every proxy in sync with a snapshot built from a change seen at or after `since`
    (monotonic): so a change is not reported converged before it was even published."""
    views = list(views)
    return bool(views) and all(v.in_sync and v.changed_at >= since for v in views)


def last_ack(views: Iterable[ProxyView]) -> float:
    return max((v.last_ack_at for v in views), default=0.0)
