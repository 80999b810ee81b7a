"""Build state of the pipeline: what one mesh version translates to, shared and reused.

Translation work is split by how widely it is shared (see
`legation.translators`): each service's outbound clusters and assignments
(kept while the service's inputs are equal, `translate_outbound`), route
configurations once per (namespace, route key, mode, scope), listeners and
inbound clusters per proxy. Each piece is serialized once into `Resource`s
and the same objects are placed in every snapshot that needs them;
byte-identical per-proxy resources (``inbound|9080||``) are interned.

`Memo` holds one mesh version's translations and takes from the previous
one what an unchanged view says cannot have changed (`route_view`,
`proxy_view`); one `SnapshotBase` per scope (everything, or a Sidecar's)
indexes the shared resources once and remembers what changed since its
parent, so streams diff only that. `build_snapshot` assembles one proxy's
snapshot from a memo and the proxy's already issued certificates: no CA
call, no I/O. A memo is used by one thread at a time (`Pipeline`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from google.protobuf.message import Message

from legation.cache import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SECRET,
    VIRTUAL_HOST,
    ProxyError,
    Resource,
    Snapshot,
    SnapshotBase,
)
from legation.model import (
    Diagnostic,
    InterceptionMode,
    Labels,
    MeshSnapshot,
    Proxy,
    Scope,
    Service,
)
from legation.translators import (
    Client,
    LocalityTarget,
    Translated,
    assignments_for,
    client_of,
    envoyfilter,
    gateway_resources,
    locality_targets,
    outbound_services,
    proxy_view,
    resolve_proxy,
    route_key,
    route_view,
    service_inputs,
    service_outbound,
    split_virtual_hosts,
    translate_namespace,
    translate_workload,
)
from legation.translators.proxyless import (
    proxyless_resources,
    server_resources,
)


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
    diagnostics: tuple[Diagnostic, ...] = ()  # what translating them found


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
class Memo:
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
    # VHDS (delta ADS proxies): a route configuration (name, version) -> it without its
    # virtual hosts, and them; per route key, those configurations and the scope's base
    # with the virtual hosts added (one lineage per key)
    splits: dict[tuple[str, str], tuple[Resource, list[Resource]]] = field(
        default_factory=dict)
    gateways: dict[str, tuple[Proxy, list[Resource]]] = field(default_factory=dict)
    # namespace -> what its proxyless gRPC clients get (translators/proxyless.py)
    proxyless: dict[str, list[Resource]] = field(default_factory=dict)
    prior_splits: dict[tuple[str, str], tuple[Resource, list[Resource]]] = field(
        default_factory=dict)
    vhds_bases: dict[RouteKey, tuple[list[Resource], SnapshotBase]] = field(
        default_factory=dict)
    prior_vhds_bases: dict[RouteKey, tuple[list[Resource], SnapshotBase]] = field(
        default_factory=dict)

    @classmethod
    def of(cls, mesh: MeshSnapshot, prior: Memo | None = None) -> Memo:
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
            memo.prior_splits, memo.prior_vhds_bases = prior.splits, prior.vhds_bases
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
                virtual_services=rules, destination_rules=mesh.destination_rules,
                config=mesh.config if scope.outbound is None else replace(
                    mesh.config, outbound_policy=scope.outbound),
                telemetries=mesh.telemetries)
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

    def vhds(self, key: RouteKey, routes: list[Resource], base: SnapshotBase
             ) -> tuple[list[Resource], SnapshotBase]:
        """For a delta ADS proxy: its route configurations without virtual hosts, and
        `base` with those virtual hosts added as VHDS resources (translators/vhds.py).
        Once per route key and memo; the base continues the key's lineage, so streams
        diff only what changed."""
        found = self.vhds_bases.get(key)
        if found is None:
            configs, hosts = [], []
            for r in routes:
                bare, its_hosts = self._split(r) if r.type_url == ROUTE else (r, [])
                configs.append(bare)
                hosts.extend(its_hosts)
            shared = [r for index in base.types.values() for r in index.resources.values()]
            before = self.prior_vhds_bases.get(key)
            found = self.vhds_bases[key] = (configs, SnapshotBase.of(
                [*shared, *hosts], parent=before[1] if before is not None else None))
        return found

    def _split(self, r: Resource) -> tuple[Resource, list[Resource]]:
        key = (r.name, r.version)
        found = self.splits.get(key) or self.prior_splits.get(key)
        if found is None:
            bare, hosts = split_virtual_hosts(route_pb2.RouteConfiguration.FromString(r.body))
            found = (Resource.of(ROUTE, bare.name, bare),
                     [Resource.of(VIRTUAL_HOST, vh.name, vh) for vh in hosts])
        self.splits[key] = found
        return found

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
            t = translate_workload(view, proxy)
            entry = _Own(view, proxy, [self._intern(r) for r in to_resources(t)],
                         tuple(t.diagnostics))
        self.own[node_id] = entry
        seen = set(self.diagnostics)  # its findings join the memo's (e.g. a rate limit's)
        self.diagnostics.extend(d for d in entry.diagnostics if d not in seen)
        return entry.resources

    def gateway(self, node_id: str, proxy: Proxy) -> list[Resource]:
        """A gateway proxy's listeners and route configurations (translators/gateway.py),
        once per memo; its findings join the memo's."""
        entry = self.gateways.get(node_id)
        if entry is None or entry[0] != proxy:
            t = gateway_resources(self.mesh, proxy)
            seen = set(self.diagnostics)
            self.diagnostics.extend(d for d in t.diagnostics if d not in seen)
            entry = self.gateways[node_id] = (proxy, to_resources(t))
        return entry[1]

    def grpc(self, namespace: str) -> list[Resource]:
        """Listeners, routes, clusters and assignments of proxyless gRPC clients of
        `namespace`, once per memo; its findings join the memo's."""
        found = self.proxyless.get(namespace)
        if found is None:
            t = proxyless_resources(self.mesh, namespace)
            seen = set(self.diagnostics)
            self.diagnostics.extend(d for d in t.diagnostics if d not in seen)
            found = self.proxyless[namespace] = [self._intern(r) for r in to_resources(t)]
        return found

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


# What an on-demand proxy (sidecar.legation.io/on-demand, delta ADS, explicit mode) gets
# only by asking: the outbound clusters (on-demand CDS) and virtual hosts (VHDS aliases).
ON_DEMAND_TYPES: frozenset[str] = frozenset({CLUSTER, VIRTUAL_HOST})


def build_snapshot(
    memo: Memo,
    node_id: str,
    *,
    changed_at: float,
    secrets: Sequence[Resource] = (),
    vhds: bool = False,
) -> Snapshot | ProxyError:
    """One proxy's snapshot from a memo and its already issued `secrets`: no CA call, no
    I/O (the memo's caches are the only state it touches). `vhds`: the proxy is on delta
    ADS and gets its virtual hosts as VHDS resources; then a workload that asks for
    on-demand config (explicit mode only) gets outbound clusters and virtual hosts only
    by naming them (`ON_DEMAND_TYPES`)."""
    proxy: Proxy | None = resolve_proxy(memo.mesh, node_id)
    if proxy is None:
        return ProxyError(
            "NOT_FOUND",
            f"node id {node_id!r} names no workload: expected '<workload>.<namespace>' of a "
            "WorkloadEntry or Pod in the mesh "
            "(or Istio's sidecar~<ip>~<pod>.<ns>~<ns>.svc.<domain>)",
        )
    if proxy.proxyless:  # a gRPC client: what gRPC asks for, by name (proxyless.py)
        server = server_resources(memo.mesh, proxy.workload)  # its own xDS servers
        seen = set(memo.diagnostics)
        memo.diagnostics.extend(d for d in server.diagnostics if d not in seen)
        # its own resources only, no shared base: the mesh's sidecar clusters and listeners
        # are not for gRPC (it validates every resource of a response and NACKs the lot
        # over one it cannot use, e.g. a LEAST_REQUEST cluster it never asked for)
        own = [*memo.grpc(proxy.namespace), *to_resources(server), *secrets]
        snapshot = Snapshot.build(own, changed_at=changed_at,
                                  prior=memo.prior_built.get(node_id))
        memo.built[node_id] = snapshot
        return snapshot
    if proxy.gateways:  # a gateway: its servers' listeners and routes, no sidecar config
        own = [*memo.gateway(node_id, proxy), *memo.client_resources(proxy), *secrets]
        snapshot = Snapshot.build(own, changed_at=changed_at, base=memo.base_for(None),
                                  prior=memo.prior_built.get(node_id))
        snapshot = memo.built[node_id] = _patched(memo, proxy, snapshot, gateway=True)
        return snapshot
    on_demand = vhds and proxy.workload.on_demand and proxy.mode is InterceptionMode.EXPLICIT
    if on_demand:
        proxy = replace(proxy, on_demand=True)
    scope = memo.scope(proxy)
    base = memo.base_for(scope)
    key: RouteKey = (proxy.namespace, memo.route_key(proxy), proxy.mode, scope)
    routes = memo.namespace(*key)
    if vhds:
        routes, base = memo.vhds(key, routes, base)
    client = memo.client_resources(proxy)
    if scope is not None:  # locality variants of assignments the proxy is sent at all
        assignments = base.types[ENDPOINT].resources
        client = [r for r in client if r.name in assignments]
    own = [*routes, *memo.own_resources(node_id, proxy), *client, *secrets]
    snapshot = Snapshot.build(own, changed_at=changed_at, base=base,
                              prior=memo.prior_built.get(node_id),
                              by_name=ON_DEMAND_TYPES if on_demand else frozenset())
    snapshot = memo.built[node_id] = _patched(memo, proxy, snapshot, gateway=False)
    return snapshot


_PATCHED = (LISTENER, CLUSTER, ROUTE, VIRTUAL_HOST)
_M = TypeVar("_M", bound=Message)


def _decoded(snapshot: Snapshot, type_url: str, cls: type[_M]) -> dict[str, _M]:
    out: dict[str, _M] = {}
    for name, r in snapshot.of_type(type_url).items():
        out[name] = cls()
        out[name].ParseFromString(r.body)
    return out


def _patched(memo: Memo, proxy: Proxy, snapshot: Snapshot, *, gateway: bool) -> Snapshot:
    """`snapshot` with the EnvoyFilters that select the proxy applied (translators/
    envoyfilter.py); the same snapshot when none does. A patched proxy shares no base:
    its listeners, clusters and routes are its own."""
    filters = envoyfilter.filters_for(memo.mesh.envoy_filters, proxy.workload,
                                      memo.mesh.root_namespace)
    if not filters:
        return snapshot

    config = envoyfilter.ProxyConfig(
        listeners=_decoded(snapshot, LISTENER, listener_pb2.Listener),
        clusters=_decoded(snapshot, CLUSTER, cluster_pb2.Cluster),
        routes=_decoded(snapshot, ROUTE, route_pb2.RouteConfiguration),
        vhosts=_decoded(snapshot, VIRTUAL_HOST, route_components_pb2.VirtualHost))
    envoyfilter.apply(config, filters, gateway=gateway)
    kept = [r for t, rs in snapshot.resources.items() if t not in _PATCHED for r in rs.values()]
    patched = [Resource.of(t, n, m) for t, ms in ((LISTENER, config.listeners),
                                                   (CLUSTER, config.clusters),
                                                   (ROUTE, config.routes),
                                                   (VIRTUAL_HOST, config.vhosts))
               for n, m in ms.items()]
    return Snapshot.build([*kept, *patched], changed_at=snapshot.changed_at,
                          by_name=snapshot.by_name)


