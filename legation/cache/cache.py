"""SnapshotCache: the latest Snapshot of every connected proxy, and who to wake.

The pipeline writes snapshots (`set`), xDS streams read them and wait on a
`Watch`. The first watch of a node announces it to the pipeline
(`on_connect`), which builds its snapshot; when the last watch of a node
closes, its snapshot is dropped so memory follows the connected fleet.
Whether a node gets its virtual hosts over VHDS is said by its first watch
(its stream is delta ADS) and kept while it is connected (`vhds`).
Everything here runs on the event loop thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from legation.cache.snapshot import ProxyError, Snapshot


class Watch:
    """One stream's interest in one node's snapshot."""

    __slots__ = ("changed", "node_id")

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.changed = asyncio.Event()


class SnapshotCache:
    def __init__(self) -> None:
        self._entries: dict[str, Snapshot | ProxyError] = {}
        self._watches: dict[str, set[Watch]] = {}
        self._vhds: set[str] = set()
        self.on_connect: Callable[[str], None] | None = None
        self.on_disconnect: Callable[[str], None] | None = None

    def set(self, node_id: str, entry: Snapshot | ProxyError) -> None:
        """Publish a proxy's snapshot (or error); ignored if nobody is connected."""
        watches = self._watches.get(node_id)
        if not watches:
            return
        if self._entries.get(node_id) is entry:
            return
        self._entries[node_id] = entry
        for w in watches:
            w.changed.set()

    def get(self, node_id: str) -> Snapshot | ProxyError | None:
        return self._entries.get(node_id)

    def connected(self) -> list[str]:
        return sorted(self._watches)

    def vhds(self, node_id: str) -> bool:
        """Whether the node's snapshot carries its virtual hosts as VHDS resources."""
        return node_id in self._vhds

    @contextmanager
    def watch(self, node_id: str, *, vhds: bool = False) -> Iterator[Watch]:
        """`vhds`: the stream can take VHDS (delta ADS); the node's first watch decides."""
        w = Watch(node_id)
        first = node_id not in self._watches
        if first and vhds:
            self._vhds.add(node_id)
        self._watches.setdefault(node_id, set()).add(w)
        if node_id in self._entries:
            w.changed.set()
        if first and self.on_connect is not None:
            self.on_connect(node_id)
        try:
            yield w
        finally:
            remaining = self._watches.get(node_id)
            if remaining is not None:
                remaining.discard(w)
                if not remaining:
                    del self._watches[node_id]
                    self._entries.pop(node_id, None)
                    self._vhds.discard(node_id)
                    if self.on_disconnect is not None:
                        self.on_disconnect(node_id)
