"""MeshStore: the current objects of every source, versioned, with change notification.

Sources (files, Kubernetes) write here; the pipeline reads immutable
`MeshSnapshot`s and waits for changes. Each source owns a namespace of keys:
`replace_source` swaps everything a source contributes at once (the file
source re-reads a file), `upsert`/`delete` apply one object (watch events).
When two sources define the same object, the first source (by name) wins and
the other gets a diagnostic.

VirtualServices and DestinationRules also pass cross-object checks when a
snapshot is built; one that fails keeps its last good version (or is left
out) — that history lives in `LastGood` (legation/mesh/lastgood.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

from legation.mesh import gatewayapi
from legation.mesh.lastgood import LastGood, Verdict
from legation.model import (
    DEFAULT_DOMAIN,
    AuthorizationPolicy,
    DestinationRule,
    Diagnostic,
    EndpointSlice,
    Gateway,
    MeshConfig,
    MeshObject,
    MeshSecurity,
    MeshSnapshot,
    Namespace,
    Node,
    ObjectKey,
    PeerAuthentication,
    PolicyObject,
    RequestAuthentication,
    Service,
    ServiceEntry,
    Severity,
    Sidecar,
    SourceRef,
    TlsCredential,
    VirtualService,
    Workload,
    duplicate_definition,
    object_key,
)
from legation.model.envoyfilter import EnvoyFilter
from legation.model.gatewayapi import ApiGateway, ApiRoute, GatewayClass, ReferenceGrant
from legation.model.telemetry import Telemetry

_VERDICTS_KEPT = 16
_JOURNAL_KEPT = 1024  # writes remembered for changed_since


class MeshStore:
    def __init__(
        self,
        *,
        domain: str = DEFAULT_DOMAIN,
        root_namespace: str = "istio-system",
        security: MeshSecurity | None = None,
        config_namespace: str = "",
    ) -> None:
        self._domain = domain
        self._root_namespace = root_namespace
        # where the ConfigMap `istio` (MeshConfig) is read: the control plane's namespace
        self._config_namespace = config_namespace or root_namespace
        self._security = security or MeshSecurity()  # default: no CA, no mTLS
        self._objects: dict[str, dict[ObjectKey, MeshObject]] = {}
        self._diagnostics: dict[str, tuple[Diagnostic, ...]] = {}
        self._pending_sources: set[str] = set()
        self._version = 0
        self._snapshot: MeshSnapshot | None = None
        self._changed = asyncio.Event()
        self._last_good = LastGood()
        # The objects of the last snapshot built, and the keys written since: so a new
        # snapshot can keep what the change did not touch (MeshSnapshot.carry_endpoints).
        self._merged: dict[ObjectKey, MeshObject] = {}
        self._touched: set[ObjectKey] = set()
        self._verdicts: dict[int, Verdict] = {}  # version -> its verdict, until accepted
        self._journal: list[tuple[int, tuple[ObjectKey, ...]]] = []  # version -> keys written
        # NACK containment (`reject`): each object's version before its last write, and the
        # versions Envoy rejected: held back while they are what the sources hold
        self._previous: dict[ObjectKey, MeshObject | None] = {}
        self._rejected: dict[ObjectKey, _Rejected] = {}
        self._sourced: dict[ObjectKey, MeshObject] = {}  # as the sources hold them

    # -- writers (sources) ----------------------------------------------

    def expect_source(self, source: str) -> None:
        """Declare a source whose first full picture must arrive before `ready`."""
        self._pending_sources.add(source)

    def replace_source(
        self,
        source: str,
        objects: Iterable[MeshObject],
        diagnostics: Iterable[Diagnostic] = (),
    ) -> None:
        new = {object_key(o): o for o in objects}
        diags = tuple(diagnostics)
        self._pending_sources.discard(source)
        old = self._objects.get(source, {})
        if new == old and diags == self._diagnostics.get(source, ()):
            return
        changed = [k for k in old.keys() | new.keys() if old.get(k) != new.get(k)]
        self._touched.update(changed)
        self._objects[source] = new
        self._diagnostics[source] = diags
        self._bump(changed)

    def upsert(self, source: str, obj: MeshObject) -> None:
        objs = self._objects.setdefault(source, {})
        key = object_key(obj)
        if objs.get(key) == obj:
            return
        objs[key] = obj
        self._touched.add(key)
        self._bump([key])

    def delete(self, source: str, key: ObjectKey) -> None:
        if self._objects.get(source, {}).pop(key, None) is not None:
            self._touched.add(key)
            self._bump([key])

    def reject(self, keys: Iterable[ObjectKey], *, node: str, type_name: str,
               message: str) -> list[ObjectKey]:
        """Envoy (`node`) rejected `type_name` built from the current versions of `keys`:
        hold each back (its previous version serves, or none if it is new) until a source
        writes another version of it. Returns the keys newly held."""
        current = self._sourced  # what the sources hold (containment aside)
        keys = [k for k in keys if k in current or k in self._previous]
        held = [k for k in keys if k not in self._rejected
                or self._rejected[k].version != current.get(k)]
        if not held:
            return []
        for key in held:
            fallback = self._previous.get(key)
            self._rejected[key] = _Rejected(
                version=current.get(key), fallback=fallback, node=node, type_name=type_name,
                message=message, together=tuple(k for k in keys if k != key))
        self._bump(held)
        return held

    def release(self, keys: Iterable[ObjectKey]) -> list[ObjectKey]:
        """Try the held-back versions of `keys` again (NACK bisection): their change goes
        out once more and is held again, alone, if a proxy rejects it. Returns the keys
        released."""
        released = [k for k in keys if self._rejected.pop(k, None) is not None]
        if released:
            self._bump(released)
        return released

    def set_diagnostics(self, source: str, diagnostics: Iterable[Diagnostic]) -> None:
        diags = tuple(diagnostics)
        if diags != self._diagnostics.get(source, ()):
            self._diagnostics[source] = diags
            self._bump()

    def objects(self, source: str) -> Mapping[ObjectKey, MeshObject]:
        return dict(self._objects.get(source, {}))

    # -- readers -----------------------------------------------------------

    @property
    def version(self) -> int:
        return self._version

    @property
    def ready(self) -> bool:
        """True once every expected source delivered its first full picture."""
        return not self._pending_sources

    def snapshot(self) -> MeshSnapshot:
        """The current mesh (built once per version). A read: it never changes which
        traffic rules count as last good; `accept` does."""
        if self._snapshot is None or self._snapshot.version != self._version:
            self._snapshot = self._build()
        return self._snapshot

    def accept(self, mesh: MeshSnapshot) -> None:
        """`mesh` (a snapshot of this store) is in force: the proxies were given it. Its
        traffic rules become the last good ones, which a later invalid edit falls back to
        (mesh/lastgood.py). A newer snapshot already built is settled again against them."""
        verdict = self._verdicts.get(mesh.version)
        if verdict is None:
            return
        self._last_good.accept(verdict)
        self._verdicts = {v: k for v, k in self._verdicts.items() if v > mesh.version}
        if self._snapshot is not None and self._snapshot.version > mesh.version:
            self._snapshot = None

    async def wait_changed(self, after: int) -> int:
        """Return the current version once it differs from `after`."""
        while self._version == after:
            self._changed.clear()
            await self._changed.wait()
        return self._version

    # -- internals ---------------------------------------------------------

    def _bump(self, keys: Iterable[ObjectKey] = ()) -> None:
        self._version += 1
        self._journal.append((self._version, tuple(keys)))
        if len(self._journal) > _JOURNAL_KEPT:
            del self._journal[: len(self._journal) - _JOURNAL_KEPT]
        self._changed.set()

    def changed_since(self, version: int, upto: int) -> list[ObjectKey]:
        """The keys of the objects written after `version`, up to `upto` (what a change
        published at `upto` carries), in key order."""
        return sorted({k for v, keys in self._journal if version < v <= upto for k in keys})

    def _build(self) -> MeshSnapshot:
        merged: dict[ObjectKey, MeshObject] = {}
        diagnostics: list[Diagnostic] = []
        for source in sorted(self._objects):
            for key, obj in self._objects[source].items():
                if key in merged:
                    diagnostics.append(
                        duplicate_definition(obj, merged[key], elsewhere="another source"))
                    continue
                merged[key] = obj
        for source in sorted(self._diagnostics):
            diagnostics.extend(self._diagnostics[source])
        sourced = dict(merged)  # what the sources hold, before NACK containment
        self._contain(merged, diagnostics)
        ordered = [merged[k] for k in sorted(merged)]
        traffic = {k: o for k, o in merged.items()
                   if isinstance(o, VirtualService | DestinationRule)}
        base = MeshSnapshot(
            version=self._version,
            domain=self._domain,
            root_namespace=self._root_namespace,
            namespaces=tuple(o for o in ordered if isinstance(o, Namespace)),
            services=_services(ordered),
            workloads=_sorted(ordered, Workload),
            endpoint_slices=_sorted(ordered, EndpointSlice),
            nodes=tuple(o for o in ordered if isinstance(o, Node)),
            policies=tuple(
                sorted(
                    (o for o in ordered if isinstance(o, PolicyObject)),
                    key=lambda p: (p.kind, p.namespace, p.name),
                )
            ),
            peer_authentications=_sorted(ordered, PeerAuthentication),
            authorization_policies=_sorted(ordered, AuthorizationPolicy),
            request_authentications=_sorted(ordered, RequestAuthentication),
            sidecars=_sorted(ordered, Sidecar),
            envoy_filters=_sorted(ordered, EnvoyFilter),
            telemetries=_sorted(ordered, Telemetry),
            gateways=_sorted(ordered, Gateway),
            credentials=_sorted(ordered, TlsCredential),
            security=self._security,
            config=self._mesh_config(ordered, diagnostics),
            diagnostics=tuple(diagnostics),
        )
        if self._snapshot is not None:
            before = self._merged
            base.carry_endpoints(self._snapshot, [
                (before.get(k), merged.get(k)) for k in self._touched
                if before.get(k) is not merged.get(k)
            ])
        for key in self._touched:
            if self._sourced.get(key) != sourced.get(key):
                self._previous[key] = self._sourced.get(key)
        self._merged, self._sourced, self._touched = merged, sourced, set()
        mesh, verdict = self._last_good.settle(base, traffic)
        mesh = _with_gateway_api(mesh, ordered)
        self._verdicts[self._version] = verdict
        if len(self._verdicts) > _VERDICTS_KEPT:  # never accepted: a reader without a pipeline
            del self._verdicts[min(self._verdicts)]
        return mesh


    def _contain(self, merged: dict[ObjectKey, MeshObject], diagnostics: list[Diagnostic]
                 ) -> None:
        """Hold back the versions Envoy rejected (`reject`); forget a rejection once the
        sources hold another version."""
        for key, r in list(self._rejected.items()):
            if merged.get(key) != r.version:
                del self._rejected[key]  # fixed (or deleted): the new version is tried
                continue
            if r.fallback is None:
                merged.pop(key, None)
            else:
                merged[key] = r.fallback
            diagnostics.append(r.diagnostic(key))

    def _mesh_config(self, objects: list[MeshObject], diagnostics: list[Diagnostic]
                     ) -> MeshConfig:
        """The MeshConfig in force: `--mesh-config`'s (namespace ""), else the ConfigMap
        ``istio`` of the control plane's namespace (by default the root namespace); any
        other is reported as not used."""
        found = [o for o in objects if isinstance(o, MeshConfig)]
        ranked = sorted((c for c in found if c.namespace in ("", self._config_namespace)),
                        key=lambda c: c.namespace != "")
        chosen = ranked[0] if ranked else MeshConfig()
        for c in found:
            if c is not chosen:
                why = (f"the mesh config of {chosen.ref.location or chosen.ref} is used"
                       if ranked else f"only namespace {self._config_namespace}'s is read")
                diagnostics.append(Diagnostic(
                    ref=c.ref, field="data.mesh", code="meshconfig.not-used",
                    message=f"this MeshConfig is not applied: {why} (Istio reads one, from "
                    "istiod's own namespace).", severity=Severity.WARNING, line=c.ref.line))
        return chosen


class _Named(Protocol):
    @property
    def namespace(self) -> str: ...

    @property
    def name(self) -> str: ...


_T = TypeVar("_T", bound=_Named)


def _with_gateway_api(mesh: MeshSnapshot, objects: list[MeshObject]) -> MeshSnapshot:
    """`mesh` with its Gateway API objects resolved (mesh/gatewayapi.py), after the
    cross-object checks of Istio's kinds: a route's backend problems are its status."""
    api = [o for o in objects if isinstance(o, GatewayClass | ApiGateway | ApiRoute
                                            | ReferenceGrant)]
    if not api:
        return mesh
    resolved = gatewayapi.resolve(
        classes=[o for o in api if isinstance(o, GatewayClass)],
        gateways=[o for o in api if isinstance(o, ApiGateway)],
        routes=[o for o in api if isinstance(o, ApiRoute)],
        grants=[o for o in api if isinstance(o, ReferenceGrant)],
        namespaces=mesh.namespaces, services=mesh.services,
        credentials={(c.namespace, c.name) for c in mesh.credentials if c.cert_chain},
        workloads=[(w.namespace, w.labels) for w in mesh.workloads], domain=mesh.domain)
    return mesh.with_gateway_api(resolved.gateways, resolved.virtual_services,
                                 resolved.statuses, resolved.diagnostics)


def _services(objects: list[MeshObject]) -> tuple[Service, ...]:
    """Kubernetes Services and the hosts of ServiceEntries, by (namespace, name)."""
    hosts = [s for o in objects if isinstance(o, ServiceEntry) for s in o.services()]
    return _sorted([*objects, *hosts], Service)


def _sorted(objects: Iterable[MeshObject], kind: type[_T]) -> tuple[_T, ...]:
    """The objects of one kind, by (namespace, name)."""
    return tuple(sorted((o for o in objects if isinstance(o, kind)),
                        key=lambda o: (o.namespace, o.name)))


@dataclass(frozen=True, slots=True)
class _Rejected:
    version: MeshObject | None  # the version Envoy rejected
    fallback: MeshObject | None  # what serves instead: the version before it, or nothing
    node: str
    type_name: str  # the xDS type rejected (cds, lds, rds, ...)
    message: str  # Envoy's error_detail (clipped by the xDS server)
    together: tuple[ObjectKey, ...]  # other objects of the same change, held back too

    def diagnostic(self, key: ObjectKey) -> Diagnostic:
        kind, namespace, name = key
        ref = self.version.ref if self.version is not None else SourceRef(
            kind=kind, namespace=namespace, name=name)
        kept = ("its previous version stays in force" if self.fallback is not None
                else "it is left out (it has no earlier version)")
        others = ""
        if self.together:
            names = ", ".join(f"{k} {ns + '/' if ns else ''}{n}" for k, ns, n in
                              self.together[:5])
            others = (f" It changed together with {names}"
                      f"{' and more' if len(self.together) > 5 else ''}; Envoy's message "
                      "may concern any of them: each is held back.")
        return Diagnostic(
            ref=ref, field="", code="envoy.rejected", severity=Severity.ERROR,
            message=(f"Envoy rejected the {self.type_name.upper()} configuration built from "
                     f"this version (proxy {self.node}): {self.message.strip()} — {kept}, "
                     f"so every other change keeps reaching the proxies, until this object "
                     f"changes.{others}"))
