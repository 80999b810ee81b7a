"""Pipeline: MeshStore -> (debounce) -> translators -> Snapshots -> SnapshotCache.

Translation work is split by how widely it is shared (see
`legation.translators`): proxy-independent resources once per mesh version,
route configurations once per (version, namespace), listeners and inbound
clusters per proxy. Each piece is serialized once into `Resource`s and the
same objects are placed in every snapshot that needs them; byte-identical
per-proxy resources (``inbound|9080||``) are interned into one object.

A change costs what it touches (`_Memo`): the mesh-wide resources are
translated once per mesh version and indexed once (`SnapshotBase`), so each
proxy's snapshot costs only its own few resources; route configurations and
each proxy's inbound clusters and listeners are kept from the previous
version while the part of the mesh they are translated from (the
translators' `route_view`, `proxy_view`) is unchanged, so an endpoint-only
change retranslates no proxy; locality load balancing is computed once per
distinct client. Versions stay content hashes of what each proxy is served.

Changes are debounced: a burst of store changes is coalesced until the store
has been quiet for `quiet` seconds, or `max_delay` has passed since the first
change of the burst. Only connected proxies are translated; a proxy that
connects gets its snapshot at once (from the memo when the mesh is unchanged).
Translation runs in a worker thread, off the event loop; snapshots are
published on the loop.

With a CA (`--ca-dir`), each proxy's snapshot also holds its SDS secrets from
a `SecretSource` (legation/security/workload_secrets.py): the certificate of its
workload's identity, shared by every proxy of that identity, and the trust
bundle. A rotated certificate republishes only its proxies (`refresh`).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable, Sequence
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
    SnapshotBase,
    SnapshotCache,
)
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import (
    Diagnostic,
    InterceptionMode,
    Labels,
    MeshSnapshot,
    Proxy,
    Scope,
    Service,
    Workload,
)
from legation.translators import (
    Client,
    LocalityTarget,
    Translated,
    assignments_for,
    client_of,
    locality_targets,
    outbound_services,
    proxy_view,
    resolve_proxy,
    route_key,
    route_view,
    service_inputs,
    service_outbound,
    translate_namespace,
    translate_workload,
)

_log = structlog.get_logger("legation.mesh.pipeline")


def to_resources(t: Translated) -> list[Resource]:
    """Serialize every message of a translation once."""
    out = [Resource.of(CLUSTER, c.name, c) for c in t.clusters]
    out += [Resource.of(ENDPOINT, e.cluster_name, e) for e in t.endpoints]
    out += [Resource.of(LISTENER, x.name, x) for x in t.listeners]
    out += [Resource.of(ROUTE, r.name, r) for r in t.routes]
    out += [Resource.of(SECRET, s.name, s) for s in t.secrets]
    return out


# (namespace, route key, interception mode: what transparent proxies share differs,
#  scope: what the proxy may see, None for everything)
RouteKey = tuple[str, frozenset[tuple[str, str, int, int]], InterceptionMode, Scope | None]


@dataclass(slots=True)
class _Own:
    """A proxy's inbound clusters and listeners, and what they were translated from."""

    view: MeshSnapshot  # proxy_view of its namespace
    proxy: Proxy
    resources: list[Resource]


@dataclass(frozen=True, slots=True)
class _ServicePart:
    """One service's outbound clusters and assignments, and what they were translated from."""

    service: Service
    inputs: tuple[object, ...]  # translators.service_inputs
    resources: list[Resource]
    diagnostics: list[Diagnostic]


def translate_outbound(
    mesh: MeshSnapshot, prior: dict[tuple[str, str], _ServicePart]
) -> tuple[list[Resource], list[Diagnostic], dict[tuple[str, str], _ServicePart]]:
    """`translate_mesh`, serialized, translating only the services whose inputs changed:
    the others keep their `Resource` objects from `prior`. Equal to
    `to_resources(translate_mesh(mesh))` (tests/unit/test_pipeline_reuse.py)."""
    owned, diagnostics = outbound_services(mesh)
    parts: dict[tuple[str, str], _ServicePart] = {}
    resources: list[Resource] = []
    for svc, ports in owned:
        key = (svc.namespace, svc.name)
        inputs = service_inputs(mesh, svc, ports)
        part = prior.get(key)
        if part is None or part.inputs != inputs:
            t = service_outbound(mesh, svc, ports)
            part = _ServicePart(svc, inputs, to_resources(t), t.diagnostics)
        parts[key] = part
        resources.extend(part.resources)
        diagnostics.extend(part.diagnostics)
    return resources, list(dict.fromkeys(diagnostics)), parts


@dataclass(slots=True)
class _Memo:
    """Translations of one mesh version, shared by every proxy built from it.

    What an unchanged view says cannot have changed is taken from the previous
    version's memo (`of`): route configurations when the `route_view` is
    equal, a proxy's own resources when its `proxy_view` and `Proxy` are.
    Views are compared once per namespace; an equal one is replaced by the
    previous object, so a proxy's entry is reused when its view is the same
    object. Only the previous version's entries are kept: a proxy not built
    from it is translated afresh.
    """

    mesh: MeshSnapshot
    shared: list[Resource]
    base: SnapshotBase  # `shared`, indexed once for every snapshot built on it
    diagnostics: list[Diagnostic]
    routes_view: MeshSnapshot
    targets: tuple[LocalityTarget, ...]  # clusters locality load balancing may vary
    # (namespace, route key) -> (resources, findings); the key is empty unless
    # sourceLabels matter
    namespaces: dict[RouteKey, tuple[list[Resource], list[Diagnostic]]] = field(
        default_factory=dict
    )
    views: dict[str, MeshSnapshot] = field(default_factory=dict)  # namespace -> proxy_view
    own: dict[str, _Own] = field(default_factory=dict)  # node id -> its own resources
    clients: dict[Client, list[Resource]] = field(default_factory=dict)
    # own resources by content, so byte-identical ones (inbound|9080||) are one object
    interned: dict[tuple[str, str, str], Resource] = field(default_factory=dict)
    prior_views: dict[str, MeshSnapshot] = field(default_factory=dict)
    prior_own: dict[str, _Own] = field(default_factory=dict)
    services: dict[tuple[str, str], _ServicePart] = field(default_factory=dict)
    # (namespace, labels) -> route_key: what sourceLabels matches a client satisfies
    route_keys: dict[tuple[str, Labels], frozenset[tuple[str, str, int, int]]] = field(
        default_factory=dict)
    built: dict[str, Snapshot] = field(default_factory=dict)  # node id -> its snapshot
    prior_built: dict[str, Snapshot] = field(default_factory=dict)
    # Sidecar scopes: (namespace, labels) -> scope; scope -> its base and route view
    scopes: dict[tuple[str, Labels], Scope | None] = field(default_factory=dict)
    scoped: dict[Scope, SnapshotBase] = field(default_factory=dict)
    prior_scoped: dict[Scope, SnapshotBase] = field(default_factory=dict)
    scoped_views: dict[Scope, MeshSnapshot] = field(default_factory=dict)

    @classmethod
    def of(cls, mesh: MeshSnapshot, prior: _Memo | None = None) -> _Memo:
        shared, found, parts = translate_outbound(mesh, prior.services if prior else {})
        base = SnapshotBase.of(shared, parent=prior.base if prior else None)
        memo = cls(mesh, shared, base, found, route_view(mesh), locality_targets(mesh))
        memo.services = parts
        if prior is not None:
            if prior.routes_view == memo.routes_view:
                for key, (resources, found) in list(prior.namespaces.items()):
                    memo._keep_namespace(key, resources, found)
                memo.route_keys = dict(prior.route_keys)
            memo.prior_views, memo.prior_own = prior.views, prior.own
            memo.prior_built, memo.prior_scoped = prior.built, prior.scoped
        return memo

    def scope(self, proxy: Proxy) -> Scope | None:
        """What the proxy may see (its Sidecar, exportTo); None: the whole mesh."""
        key = (proxy.namespace, proxy.workload.labels)
        if key not in self.scopes:
            self.scopes[key] = self.mesh.scope_of(proxy.workload)
        return self.scopes[key]

    def base_for(self, scope: Scope | None) -> SnapshotBase:
        """The shared resources of a scope: the clusters and assignments of the services it
        sees, one base (and lineage) per scope, shared by every proxy with that scope."""
        if scope is None:
            return self.base
        found = self.scoped.get(scope)
        if found is None:
            seen = [r for part in self.services.values()
                    if self.mesh.visible(scope, part.service) for r in part.resources]
            found = self.scoped[scope] = SnapshotBase.of(
                seen, parent=self.prior_scoped.get(scope))
        return found

    def _routes_for(self, scope: Scope | None) -> MeshSnapshot:
        """`route_view`, cut to what `scope` sees."""
        if scope is None:
            return self.routes_view
        view = self.scoped_views.get(scope)
        if view is None:
            mesh = self.routes_view
            services = tuple(s for s in mesh.services if self.mesh.visible(scope, s))
            seen = {s.fqdn(mesh.domain) for s in services}
            known = {s.fqdn(mesh.domain) for s in mesh.services}
            rules = tuple(
                vs for vs in mesh.virtual_services
                if any((fqdn in seen) if fqdn in known else
                       scope.sees(vs.namespace, "", fqdn)
                       for fqdn in (mesh.qualify_host(h, vs.namespace).fqdn for h in vs.hosts))
            )
            view = self.scoped_views[scope] = MeshSnapshot(
                domain=mesh.domain, root_namespace=mesh.root_namespace, services=services,
                virtual_services=rules, destination_rules=mesh.destination_rules)
        return view

    def route_key(self, proxy: Proxy) -> frozenset[tuple[str, str, int, int]]:
        """`translators.route_key`, once per (namespace, labels) while routes are unchanged."""
        key = (proxy.namespace, proxy.workload.labels)
        found = self.route_keys.get(key)
        if found is None:
            found = self.route_keys[key] = route_key(self.mesh, proxy)
        return found

    def namespace(
        self,
        ns: str,
        key: frozenset[tuple[str, str, int, int]] = frozenset(),
        mode: InterceptionMode = InterceptionMode.EXPLICIT,
        scope: Scope | None = None,
    ) -> list[Resource]:
        found = self.namespaces.get((ns, key, mode, scope))
        if found is None:
            t = translate_namespace(self._routes_for(scope), ns, key, mode)
            return self._keep_namespace((ns, key, mode, scope), to_resources(t), t.diagnostics)
        return found[0]

    def _keep_namespace(
        self, key: RouteKey, resources: list[Resource], found: list[Diagnostic]
    ) -> list[Resource]:
        seen = set(self.diagnostics)  # route configs per key repeat the same findings
        self.diagnostics.extend(d for d in found if d not in seen)
        self.namespaces[key] = (resources, found)
        return resources

    def view(self, namespace: str) -> MeshSnapshot:
        view = self.views.get(namespace)
        if view is None:
            view = proxy_view(self.mesh, namespace)
            before = self.prior_views.get(namespace)
            if before is not None and before == view:
                view = before
            self.views[namespace] = view
        return view

    def own_resources(self, node_id: str, proxy: Proxy) -> list[Resource]:
        """The proxy's inbound clusters and listeners: kept from the previous version
        when its view and `Proxy` are unchanged, else translated and serialized."""
        entry = self.own.get(node_id)
        if entry is not None and entry.proxy == proxy:
            return entry.resources
        view = self.view(proxy.namespace)
        entry = self.prior_own.get(node_id)
        if entry is not None and entry.view is view and entry.proxy == proxy:
            for r in entry.resources:
                self.interned.setdefault((r.type_url, r.name, r.version), r)
        else:
            fresh = to_resources(translate_workload(view, proxy))
            entry = _Own(view, proxy, [self._intern(r) for r in fresh])
        self.own[node_id] = entry
        return entry.resources

    def _intern(self, r: Resource) -> Resource:
        known = self.interned.setdefault((r.type_url, r.name, r.version), r)
        return known if known.body == r.body else r

    def client_resources(self, proxy: Proxy) -> list[Resource]:
        """The assignments locality load balancing makes different for this proxy;
        one list per distinct `Client`."""
        if not self.targets:
            return []
        client = client_of(self.mesh, proxy, self.targets)
        found = self.clients.get(client)
        if found is None:
            found = self.clients[client] = [
                Resource.of(ENDPOINT, a.cluster_name, a)
                for a in assignments_for(self.mesh, client, self.targets)
            ]
        return found


def analyze(mesh: MeshSnapshot) -> list[Diagnostic]:
    """Every finding for a mesh: the sources' and every translator's, sorted, once each."""
    memo = _Memo.of(mesh)
    for ns in sorted({w.namespace for w in mesh.workloads}):
        memo.namespace(ns)
    for w in mesh.workloads:  # route configurations that depend on sourceLabels
        memo.namespace(w.namespace, route_key(mesh, Proxy(node_id=w.name, workload=w)),
                       w.interception)
    found = {*mesh.diagnostics, *memo.diagnostics}
    return sorted(found, key=lambda d: (d.ref.file, d.at_line, d.code, d.message))


class SecretSource(Protocol):
    """Where a proxy's SDS resources come from (legation.security.workload_secrets)."""

    def resources_for(self, node_id: str, workload: Workload) -> list[Resource]: ...


def build_snapshot(
    memo: _Memo, node_id: str, *, changed_at: float, secrets: Sequence[Resource] = ()
) -> Snapshot | ProxyError:
    """One proxy's snapshot from a memo and its already issued `secrets`: no CA call, no
    I/O (the memo's caches are the only state it touches)."""
    proxy: Proxy | None = resolve_proxy(memo.mesh, node_id)
    if proxy is None:
        return ProxyError(
            "NOT_FOUND",
            f"node id {node_id!r} names no workload: expected '<workload>.<namespace>' of a "
            "WorkloadEntry or Pod in the mesh "
            "(or Istio's sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>)",
        )
    scope = memo.scope(proxy)
    base = memo.base_for(scope)
    routes = memo.namespace(proxy.namespace, memo.route_key(proxy), proxy.mode, scope)
    client = memo.client_resources(proxy)
    if scope is not None:  # locality variants of assignments the proxy is sent at all
        assignments = base.types[ENDPOINT].resources
        client = [r for r in client if r.name in assignments]
    own = [*routes, *memo.own_resources(node_id, proxy), *client, *secrets]
    snapshot = Snapshot.build(own, changed_at=changed_at, base=base,
                              prior=memo.prior_built.get(node_id))
    memo.built[node_id] = snapshot
    return snapshot


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
        # The memo (build state) is used by the worker thread that publishes and by
        # `snapshot_of` callers: one at a time, whatever thread they run on.
        self._building = threading.Lock()
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
        """Build (without publishing) what `node_id` would receive now (no certificate:
        nothing is issued for a proxy that is not connected). Call on the loop thread."""
        return self.snapshot_of(self._store.snapshot(), node_id)

    def snapshot_of(self, mesh: MeshSnapshot, node_id: str) -> Snapshot | ProxyError:
        """`snapshot_for` a given mesh; any thread (build state is taken under its lock)."""
        with self._building:
            memo = self._memo
            if memo is not None and memo.mesh is not mesh and mesh.version < memo.mesh.version:
                memo = _Memo.of(mesh, prior=memo)  # an older mesh: the current memo stays
            else:
                memo = self._memo_for(mesh)
            return build_snapshot(memo, node_id, changed_at=0.0)

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
        if memo is None or memo.mesh is not mesh:
            memo = self._memo = _Memo.of(mesh, prior=memo)
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
        self._store.accept(mesh)  # in force now: the last good traffic rules move on
        self._report(memo)

    def _build_all(
        self, mesh: MeshSnapshot, nodes: list[str], changed_at: float
    ) -> tuple[_Memo, dict[str, Snapshot | ProxyError]]:
        """In the worker thread, the only place build state changes (under `_building`):
        first the certificates the proxies need are issued, then their snapshots are
        built from the mesh and those certificates alone."""
        issued = self._issue(mesh, nodes)
        with self._building:
            memo = self._memo_for(mesh)
            return memo, {
                n: build_snapshot(memo, n, changed_at=changed_at, secrets=issued.get(n, ()))
                for n in nodes
            }

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

    def _report(self, memo: _Memo) -> None:
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
