"""Pipeline: MeshStore -> (debounce) -> translators -> Snapshots -> SnapshotCache.

Translation work is split by how widely it is shared (see
`legation.translators`): proxy-independent resources once per mesh version,
route configurations once per (version, namespace), listeners and inbound
clusters per proxy. Each piece is serialized once into `Resource`s and the
same objects are placed in every snapshot that needs them.

Changes are debounced: a burst of store changes is coalesced until the store
has been quiet for `quiet` seconds, or `max_delay` has passed since the first
change of the burst. Only connected proxies are translated; a proxy that
connects gets its snapshot at once (from the memo when the mesh is unchanged).
Translation runs in a worker thread, off the event loop; snapshots are
published on the loop.

With a CA (`--ca-dir`), each proxy's snapshot also holds its SDS secrets from
a `SecretSource` (legation/workload_secrets.py): the certificate of its
workload's identity, shared by every proxy of that identity, and the trust
bundle. A rotated certificate republishes only its proxies (`refresh`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from legation.cache import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    ProxyError,
    Resource,
    Snapshot,
    SnapshotCache,
)
from legation.metrics import Metrics
from legation.model import Diagnostic, MeshSnapshot, Proxy, Workload
from legation.store import MeshStore
from legation.translators import (
    Translated,
    resolve_proxy,
    route_key,
    translate_mesh,
    translate_namespace,
    translate_proxy,
)

_log = structlog.get_logger("legation.pipeline")


def to_resources(t: Translated) -> list[Resource]:
    """Serialize every message of a translation once."""
    out = [Resource.of(CLUSTER, c.name, c) for c in t.clusters]
    out += [Resource.of(ENDPOINT, e.cluster_name, e) for e in t.endpoints]
    out += [Resource.of(LISTENER, x.name, x) for x in t.listeners]
    out += [Resource.of(ROUTE, r.name, r) for r in t.routes]
    out += [Resource.of(SECRET, s.name, s) for s in t.secrets]
    return out


@dataclass(slots=True)
class _Memo:
    """Translations of one mesh version, shared by every proxy built from it."""

    mesh: MeshSnapshot
    shared: list[Resource]
    diagnostics: list[Diagnostic]
    # (namespace, route key) -> resources; the key is empty unless sourceLabels matter
    namespaces: dict[tuple[str, frozenset[tuple[str, str, int, int]]], list[Resource]] = field(
        default_factory=dict
    )

    @classmethod
    def of(cls, mesh: MeshSnapshot) -> _Memo:
        t = translate_mesh(mesh)
        return cls(mesh, to_resources(t), list(t.diagnostics))

    def namespace(
        self, ns: str, key: frozenset[tuple[str, str, int, int]] = frozenset()
    ) -> list[Resource]:
        res = self.namespaces.get((ns, key))
        if res is None:
            t = translate_namespace(self.mesh, ns, key)
            seen = set(self.diagnostics)  # route configs per key repeat the same findings
            self.diagnostics.extend(d for d in t.diagnostics if d not in seen)
            res = self.namespaces[(ns, key)] = to_resources(t)
        return res


def analyze(mesh: MeshSnapshot) -> list[Diagnostic]:
    """Every finding for a mesh: the sources' and every translator's, sorted, once each."""
    memo = _Memo.of(mesh)
    for ns in sorted({w.namespace for w in mesh.workloads}):
        memo.namespace(ns)
    for w in mesh.workloads:  # route configurations that depend on sourceLabels
        memo.namespace(w.namespace, route_key(mesh, Proxy(node_id=w.name, workload=w)))
    found = {*mesh.diagnostics, *memo.diagnostics}
    return sorted(found, key=lambda d: (d.ref.file, d.line or d.ref.line, d.code, d.message))


class SecretSource(Protocol):
    """Where a proxy's SDS resources come from (legation.workload_secrets)."""

    def resources_for(self, node_id: str, workload: Workload) -> list[Resource]: ...


def build_snapshot(
    memo: _Memo, node_id: str, *, changed_at: float, secrets: SecretSource | None = None
) -> Snapshot | ProxyError:
    """One proxy's snapshot from a memo (pure apart from the memo's cache and `secrets`,
    which issues the proxy's certificate on first use)."""
    proxy: Proxy | None = resolve_proxy(memo.mesh, node_id)
    if proxy is None:
        return ProxyError(
            "NOT_FOUND",
            f"node id {node_id!r} names no workload: expected '<workload>.<namespace>' of a "
            "WorkloadEntry or Pod in the mesh "
            "(or Istio's sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>)",
        )
    own = to_resources(translate_proxy(memo.mesh, proxy))
    if secrets is not None:
        own += secrets.resources_for(node_id, proxy.workload)
    routes = memo.namespace(proxy.namespace, route_key(memo.mesh, proxy))
    return Snapshot.build([*memo.shared, *routes, *own], changed_at=changed_at)


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
    ) -> None:
        self._store = store
        self._secrets = secrets
        self._cache = cache
        self._metrics = metrics
        self._quiet = quiet
        self._max_delay = max_delay
        self._memo: _Memo | None = None
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._changed_at = 0.0
        self._seen_diagnostics: set[Diagnostic] = set()
        # One publication at a time: an older build must never land after a newer one.
        self._publishing = asyncio.Lock()
        cache.on_connect = self._on_connect

    # -- public ------------------------------------------------------------

    @property
    def diagnostics(self) -> list[Diagnostic]:
        """Every current finding: the sources' and the translators'."""
        memo = self._memo
        if memo is None:
            return list(self._store.snapshot().diagnostics)
        return [*memo.mesh.diagnostics, *memo.diagnostics]

    def snapshot_for(self, node_id: str) -> Snapshot | ProxyError:
        """Build (without publishing) what `node_id` would receive now."""
        return build_snapshot(self._memo_for(self._store.snapshot()), node_id, changed_at=0.0)

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
            await self._publish(self._cache.connected(), changed_at=first)

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

    def _memo_for(self, mesh: MeshSnapshot) -> _Memo:
        memo = self._memo
        if memo is None or memo.mesh.version != mesh.version:
            memo = self._memo = _Memo.of(mesh)
        return memo

    async def _publish(self, nodes: Iterable[str], *, changed_at: float) -> None:
        async with self._publishing:
            await self._publish_locked(sorted(nodes), changed_at)

    async def _publish_locked(self, nodes: list[str], changed_at: float) -> None:
        mesh = self._store.snapshot()
        started = time.monotonic()
        memo, built = await asyncio.to_thread(self._build_all, mesh, nodes, changed_at)
        self._metrics.translation_seconds.observe(time.monotonic() - started)
        self._metrics.translations.inc(len(built))
        for node_id, entry in built.items():
            self._cache.set(node_id, entry)
        self._report(memo)

    def _build_all(
        self, mesh: MeshSnapshot, nodes: list[str], changed_at: float
    ) -> tuple[_Memo, dict[str, Snapshot | ProxyError]]:
        memo = self._memo_for(mesh)
        return memo, {
            n: build_snapshot(memo, n, changed_at=changed_at, secrets=self._secrets)
            for n in nodes
        }

    def _report(self, memo: _Memo) -> None:
        """Log new findings once, and keep the diagnostics gauge current."""
        current = set(memo.mesh.diagnostics) | set(memo.diagnostics)
        for d in sorted(current - self._seen_diagnostics, key=lambda d: d.format()):
            log = _log.error if d.severity == "error" else _log.warning
            log("config.diagnostic", code=d.code, where=str(d.ref), field=d.field, detail=d.message)
        self._seen_diagnostics = current
        counts: dict[tuple[str, str], int] = {}
        for d in current:
            key = (str(d.severity), d.code)
            counts[key] = counts.get(key, 0) + 1
        self._metrics.config_diagnostics.clear()
        for (sev, code), n in counts.items():
            self._metrics.config_diagnostics.labels(severity=sev, code=code).set(n)
