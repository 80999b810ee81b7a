"""Pipeline: MeshStore -> (debounce) -> build (memo.py) -> Snapshots -> SnapshotCache.

Changes are debounced: a burst of store changes is coalesced until the store
has been quiet for `quiet` seconds, or `max_delay` has passed since the first
change of the burst. Only connected proxies are built; a proxy that connects
gets its snapshot at once (from the memo when the mesh is unchanged). What a
build costs and shares is memo.py's; here is who runs it and when.

Ownership: the memo (build state) is used by one thread at a time, under
`_building`: the worker thread that publishes, or a `snapshot_of` caller.
Certificates are issued before a build (`_issue`), so a build itself calls no
CA and does no I/O. Snapshots are published on the loop, one publication at a
time, and a published mesh is `accept`ed by the store: its traffic rules become
the last good ones (reading the store never moves them).

With a CA (`--ca-dir`), each proxy's snapshot also holds its SDS secrets from
a `SecretSource` (legation/security/workload_secrets.py): the certificate of its
workload's identity, shared by every proxy of that identity, and the trust
bundle. A rotated certificate republishes only its proxies (`refresh`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import structlog

from legation.cache import (
    PUSH_ORDER,
    ProxyError,
    Resource,
    Snapshot,
    SnapshotCache,
    short_name,
)
from legation.mesh.memo import Memo, build_snapshot
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import (
    Diagnostic,
    MeshSnapshot,
    ObjectKey,
    Severity,
    SourceRef,
    Workload,
)
from legation.translators import (
    resolve_proxy,
)

_log = structlog.get_logger("legation.mesh.pipeline")


class SecretSource(Protocol):
    """Where a proxy's SDS resources come from (legation.security.workload_secrets)."""

    def resources_for(self, node_id: str, workload: Workload) -> list[Resource]: ...


# How long a connected proxy whose workload vanished keeps its config and stream (a pod
# recreated under its name is back within seconds; kubelet restarts it, not us)
VANISH_GRACE_S = 30.0
# A proxy whose configuration is larger than this gets a warning (issue 13: large inputs)
WARN_CONFIG_BYTES = 16 * 1024 * 1024

# (mesh version, first seen (monotonic), changed objects, per proxy {type: new version})
ChangeHook = Callable[[int, float, tuple[ObjectKey, ...], dict[str, dict[str, str]]], None]


def _moved(old: Snapshot | ProxyError | None, new: Snapshot | ProxyError
           ) -> dict[str, str]:
    """The types whose version a rebuild changed: {short type name: new version}."""
    if not isinstance(new, Snapshot):
        return {}
    return {short_name(t): new.version(t) for t in PUSH_ORDER
            if not isinstance(old, Snapshot) or old.version(t) != new.version(t)}


class Pipeline:
    def __init__(
        self,
        store: MeshStore,
        cache: SnapshotCache,
        metrics: Metrics,
        *,
        quiet: float = 0.1,
        max_delay: float = 1.0,
        secrets: SecretSource | None = None,
        on_change: ChangeHook | None = None,
        vanish_grace_s: float = VANISH_GRACE_S,
        warn_config_bytes: int = WARN_CONFIG_BYTES,
    ) -> None:
        self._store = store
        self._warn_config_bytes = warn_config_bytes
        self._large: dict[str, Diagnostic] = {}  # node -> its config is over the limit
        self._vanish_grace_s = vanish_grace_s
        self._vanished: dict[str, float] = {}  # node -> when its workload went (monotonic)
        self._on_change = on_change
        self._published = 0  # the mesh version of the last change published
        self._secrets = secrets
        self._cache = cache
        self._metrics = metrics
        self._quiet = quiet
        self._max_delay = max_delay
        self._memo: Memo | None = None
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._changed_at = 0.0
        self._seen_diagnostics: set[Diagnostic] = set()
        # One publication at a time: an older build must never land after a newer one.
        self._publishing = asyncio.Lock()
        # The memo (build state) is used by the worker thread that publishes and by
        # `snapshot_of` callers: one at a time, whatever thread they run on.
        self._building = threading.Lock()
        cache.on_connect = self._on_connect

    # -- public ------------------------------------------------------------

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Every current finding: the sources' and the translators'."""
        memo = self._memo
        connected = set(self._cache.connected())
        large = [d for n, d in self._large.items() if n in connected]
        if memo is None:
            return [*self._store.snapshot().diagnostics, *large]
        return [*memo.mesh.diagnostics, *memo.diagnostics, *large]

    def snapshot_for(self, node_id: str) -> Snapshot | ProxyError:
        """Build (without publishing) what `node_id` would receive now (no certificate:
        nothing is issued for a proxy that is not connected). Call on the loop thread."""
        return self.snapshot_of(self._store.snapshot(), node_id)

    def snapshot_of(self, mesh: MeshSnapshot, node_id: str) -> Snapshot | ProxyError:
        """`snapshot_for` a given mesh; any thread (build state is taken under its lock)."""
        with self._building:
            memo = self._memo
            if memo is not None and memo.mesh is not mesh and mesh.version < memo.mesh.version:
                memo = Memo.of(mesh, prior=memo)  # an older mesh: the current memo stays
            else:
                memo = self._memo_for(mesh)
            return build_snapshot(memo, node_id, changed_at=0.0,
                                  vhds=self._cache.vhds(node_id))

    async def run(self) -> None:
        """Publish snapshots forever: on connect, and after each debounced change."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._connect_loop())
            tg.create_task(self._change_loop())

    # -- internals ---------------------------------------------------------

    def refresh(self, node_ids: Iterable[str]) -> None:
        """Rebuild and publish these proxies' snapshots soon (e.g. a certificate rotated);
        the others are not touched. Call on the event loop."""
        self._pending.update(node_ids)
        self._wake.set()

    def _on_connect(self, node_id: str) -> None:
        self._pending.add(node_id)
        self._wake.set()

    async def _connect_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._store.ready:
                await self._store.wait_changed(self._store.version)
                self._wake.set()
                continue
            nodes, self._pending = self._pending, set()
            await self._publish(nodes, changed_at=time.monotonic())

    async def _change_loop(self) -> None:
        seen = self._store.version
        while True:
            seen = await self._store.wait_changed(seen)
            self._changed_at = first = time.monotonic()
            seen = await self._debounce(seen, first)
            if not self._store.ready:
                continue
            self._metrics.mesh_version.set(seen)
            await self._publish(self._cache.connected(), changed_at=first, change=True)

    async def _debounce(self, seen: int, first: float) -> int:
        while True:
            remaining = self._max_delay - (time.monotonic() - first)
            if remaining <= 0:
                return seen
            try:
                async with asyncio.timeout(min(self._quiet, remaining)):
                    seen = await self._store.wait_changed(seen)
            except TimeoutError:
                return seen

    def _memo_for(self, mesh: MeshSnapshot) -> Memo:
        memo = self._memo
        if memo is None or memo.mesh is not mesh:
            memo = self._memo = Memo.of(mesh, prior=memo)
        return memo

    async def _publish(self, nodes: Iterable[str], *, changed_at: float,
                       change: bool = False) -> None:
        async with self._publishing:
            await self._publish_locked(sorted(nodes), changed_at, change)

    async def _publish_locked(self, nodes: list[str], changed_at: float, change: bool) -> None:
        mesh = self._store.snapshot()
        started = time.monotonic()
        vhds = {n for n in nodes if self._cache.vhds(n)}
        memo, built = await asyncio.to_thread(self._build_all, mesh, nodes, vhds, changed_at)
        self._metrics.translation_seconds.observe(time.monotonic() - started)
        self._metrics.translations.inc(len(built))
        self._hold_vanished(built)
        self._check_sizes(built)
        moved = {n: _moved(self._cache.get(n), entry) for n, entry in built.items()}
        for node_id, entry in built.items():
            self._cache.set(node_id, entry)
        if change and self._on_change is not None and mesh.version > self._published:
            keys = tuple(self._store.changed_since(self._published, mesh.version))
            self._on_change(mesh.version, changed_at, keys, moved)
            self._published = mesh.version
        self._store.accept(mesh)  # in force now: the last good traffic rules move on
        self._report(memo)

    def _check_sizes(self, built: dict[str, Snapshot | ProxyError]) -> None:
        """A warning (and a log line, once) for each proxy whose configuration exceeds
        `warn_config_bytes`; it goes when the proxy's configuration shrinks or it leaves."""
        connected = set(self._cache.connected())
        for node in [n for n in self._large if n not in connected]:
            del self._large[node]
        for node_id, entry in built.items():
            size = entry.size() if isinstance(entry, Snapshot) else 0
            if size <= self._warn_config_bytes:
                self._large.pop(node_id, None)
                continue
            mib, limit = size / 2**20, self._warn_config_bytes / 2**20
            if node_id not in self._large:
                _log.warning("pipeline.config-large", node=node_id, bytes=size,
                             limit=self._warn_config_bytes)
            self._large[node_id] = Diagnostic(
                ref=SourceRef(kind="Proxy", namespace="", name=node_id), field="",
                code="proxy.config-large", severity=Severity.WARNING,
                message=(f"the configuration of {node_id} is {mib:.1f} MiB, over the "
                         f"{limit:.1f} MiB of --warn-proxy-config-size: a Sidecar limiting "
                         "the hosts it sees (egress) or exportTo on services and rules "
                         "keeps each proxy's configuration proportional to what it uses."))

    def _hold_vanished(self, built: dict[str, Snapshot | ProxyError]) -> None:
        """A connected proxy whose workload went away (a pod deleted and recreated under
        its name, a WorkloadEntry rewritten) keeps its last snapshot and its stream for
        `vanish_grace_s`; if the workload is back by then nothing happened, otherwise
        the stream ends NOT_FOUND as for an unknown node. Held entries leave `built`."""
        now = time.monotonic()
        for node_id, entry in list(built.items()):
            if not (isinstance(entry, ProxyError) and entry.code == "NOT_FOUND"):
                if self._vanished.pop(node_id, None) is not None:
                    _log.info("pipeline.workload-back", node=node_id)
                continue
            if not isinstance(self._cache.get(node_id), Snapshot):
                continue  # never served: refused at once
            since = self._vanished.setdefault(node_id, now)
            if now - since >= self._vanish_grace_s:
                del self._vanished[node_id]
                _log.warning("pipeline.workload-gone", node=node_id,
                             grace_s=self._vanish_grace_s)
                continue
            del built[node_id]
            if since == now:
                _log.info("pipeline.workload-vanished", node=node_id,
                          grace_s=self._vanish_grace_s)
                asyncio.get_running_loop().call_later(
                    self._vanish_grace_s, self._recheck, node_id)

    def _recheck(self, node_id: str) -> None:
        """The grace of a vanished workload's proxy is over: rebuild it (if connected)."""
        if node_id in self._vanished and node_id in self._cache.connected():
            self.refresh((node_id,))
        elif node_id not in self._cache.connected():
            self._vanished.pop(node_id, None)

    def _build_all(
        self, mesh: MeshSnapshot, nodes: list[str], vhds: set[str], changed_at: float
    ) -> tuple[Memo, dict[str, Snapshot | ProxyError]]:
        """In the worker thread, the only place build state changes (under `_building`):
        first the certificates the proxies need are issued, then their snapshots are
        built from the mesh and those certificates alone."""
        issued = self._issue(mesh, nodes)
        with self._building:
            memo = self._memo_for(mesh)
            return memo, {n: self._build_one(memo, n, changed_at, issued.get(n, ()), n in vhds)
                          for n in nodes}

    @staticmethod
    def _build_one(memo: Memo, node: str, changed_at: float, secrets: Sequence[Resource],
                   vhds: bool) -> Snapshot | ProxyError:
        """One proxy's snapshot; a bug in building it fails that proxy's stream with
        INTERNAL (logged with its traceback), never the control plane or other proxies."""
        try:
            return build_snapshot(memo, node, changed_at=changed_at, secrets=secrets,
                                  vhds=vhds)
        except Exception as exc:
            _log.error("pipeline.build-failed", node=node, error=repr(exc), exc_info=exc)
            return ProxyError("INTERNAL", f"building the configuration of {node} failed "
                              f"({type(exc).__name__}); the control plane's log has the "
                              "details")

    def _issue(self, mesh: MeshSnapshot, nodes: list[str]) -> dict[str, list[Resource]]:
        """Each proxy's SDS resources (its certificate issued on first use): the inputs a
        build takes, obtained before it."""
        if self._secrets is None:
            return {}
        out = {}
        for n in nodes:
            proxy = resolve_proxy(mesh, n)
            if proxy is not None:
                out[n] = self._secrets.resources_for(n, proxy.workload)
        return out

    def _report(self, memo: Memo) -> None:
        """Log new findings once, and keep the diagnostics gauge current."""
        current = set(memo.mesh.diagnostics) | set(memo.diagnostics)
        for d in sorted(current - self._seen_diagnostics, key=lambda d: d.format()):
            log = _log.error if d.severity == "error" else _log.warning
            log("config.diagnostic", code=d.code, where=d.location, object=d.subject,
                field=d.field, detail=d.message)
        self._seen_diagnostics = current
        counts: dict[tuple[str, str], int] = {}
        for d in current:
            key = (str(d.severity), d.code)
            counts[key] = counts.get(key, 0) + 1
        self._metrics.config_diagnostics.clear()
        for (sev, code), n in counts.items():
            self._metrics.config_diagnostics.labels(severity=sev, code=code).set(n)
