"""Composition root: sources, store, pipeline, xDS and admin servers, one TaskGroup.

`App` wires the components from `Settings` and owns their lifetimes; nothing
else constructs long-lived objects. Used by `legation serve` and by tests that
want a real control plane in-process. The wiring of security (`security.py`),
of in-cluster credentials (`incluster.py`) and of the leader-only CA duties
(`duties.py`) lives beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import socket
from types import TracebackType
from typing import Any

import structlog

from legation.admin import Admin, AdminServer
from legation.admin.server import ADMIN_TOKEN_FILE, load_or_create_token
from legation.app.duties import CADuties, replica_identity
from legation.app.incluster import TokenReviewAuthenticator, materialize_ca
from legation.app.security import Security, mesh_security
from legation.bootstrap import build_bootstrap
from legation.cache import ProxyError, Snapshot, SnapshotCache
from legation.kube.events import NackEvents
from legation.kube.gatewaystatus import GatewayStatusWriter
from legation.kube.istiostatus import IstioStatusWriter
from legation.kube.tokenreview import TokenReviewer
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import Diagnostic, MeshSnapshot, ObjectKey
from legation.model.telemetry import disabled_stats, fixed_tags
from legation.settings import HostPort, Settings, environ
from legation.sources.files import FileSource, MeshConfigFile
from legation.sources.jwks import JwksProbe
from legation.sources.kubernetes import SOURCE as KUBERNETES_SOURCE
from legation.sources.kubernetes import KubernetesSource, api_client
from legation.translators import resolve_proxy
from legation.xds.changes import ChangeLog
from legation.xds.keys import WithoutPrivateKeys
from legation.xds.server import XdsServer
from legation.xds.status import StatusBoard
from legation.xds.stream import Authenticator

GATEWAY_STATUS_INTERVAL_S = 0.2
# Kinds whose objects describe where workloads are, not configuration: never held back
NEVER_HELD = frozenset({"EndpointSlice", "Pod", "Node", "Namespace"})
BISECT_AFTER_S = 2.0  # a held change of several objects: retry half of them after this

_log = structlog.get_logger("legation.app")

# A control plane keeps a large heap that barely changes (the mesh, serialized
# resources, a thousand streams) and allocates many short-lived objects per push.
# With CPython's default thresholds (700, 10, 10) the oldest generation is
# scanned every few seconds: 86-190 ms pauses at 1,000 streams (benchmarks/README.md).
GC_THRESHOLDS = (50_000, 20, 50)


async def tune_gc(store: MeshStore, *, settle_s: float = 2.0) -> None:
    """Process-wide GC policy for `legation serve` (not for in-process tests): fewer
    collections, and once the first full picture has been translated, `gc.freeze()`
    what exists, so later collections never scan it again (Python docs, gc.freeze)."""
    gc.set_threshold(*GC_THRESHOLDS)
    while not store.ready:
        await store.wait_changed(store.version)
    await asyncio.sleep(settle_s)  # the first translation and the first connects
    compact_heap()
    _log.debug("gc.frozen", objects=gc.get_freeze_count())


def compact_heap() -> None:
    """Collect, freeze what survives (later collections skip it), and hand the memory a
    cold start's burst of responses used back to the system (glibc's malloc_trim; a
    no-op elsewhere)."""
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):  # not glibc
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class App:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store = MeshStore(
            domain=settings.domain,
            root_namespace=settings.root_namespace,
            security=mesh_security(settings),
            config_namespace=settings.namespace,
        )
        self.metrics = Metrics()
        # the streams' status, and each change's convergence (xds/changes.py)
        self.status = StatusBoard(ChangeLog(observe=self.metrics.change_convergence.observe))
        self.cache = SnapshotCache()
        self._kube_api: Any = None
        if settings.kubernetes:
            self._kube_api = api_client(
                kubeconfig=settings.kubeconfig,
                in_cluster=settings.in_cluster,
                context=settings.kube_context,
                environ=environ() if settings.in_cluster else None,
                namespaces=settings.watch_namespaces,
            )
        materialized = None
        try:
            if settings.ca_secret and settings.ca_dir is not None:
                # the cluster's CA Secret, copied into --ca-dir before the CA loads it
                materialized = materialize_ca(
                    self._kube_api, namespace=settings.namespace, ca_dir=settings.ca_dir
                )
            # --ca-dir: CA, certificates, tokens (legation/app/security.py)
            self.security = Security(settings, self.metrics) if settings.security else None
        except BaseException:
            if self._kube_api is not None:
                self._kube_api.close()
            raise
        # with Kubernetes, pods may present their service-account tokens (incluster.py)
        self._token_reviewer = (
            TokenReviewer(self._kube_api)
            if self._kube_api is not None and self.security is not None
            else None
        )
        self.pipeline = Pipeline(
            self.store,
            self.cache,
            self.metrics,
            quiet=settings.debounce_quiet_s,
            max_delay=settings.debounce_max_s,
            secrets=self.security.secrets if self.security else None,
            warn_config_bytes=settings.warn_proxy_config_bytes,
            on_change=self.status.record_change,
        )
        # NACK containment: what a proxy rejects is held back, the rest keeps flowing
        self.status.changes.on_rejected = self._contain
        if self.security is not None:
            self.security.on_rotated = self.pipeline.refresh
            self.cache.on_disconnect = self.security.secrets.release
        # root rotation, the pruning timer, the CA shared through the Secret (caduties.py)
        self.ca_duties = (
            CADuties(
                settings,
                self.security,
                status=self.status,
                cache=self.cache,
                refresh_all=self._refresh_all,
                registry=self.metrics.registry,
                kube_api=self._kube_api if materialized is not None else None,
                materialized=materialized,
            )
            if self.security is not None
            else None
        )
        # every RequestAuthentication jwksUri, fetched to report unusable ones (jwks.py)
        self.jwks_probe = JwksProbe(self.store, interval_s=settings.jwks_refresh_s)
        # Gateway API status conditions, written back to the objects (Kubernetes only)
        self.gateway_status = (GatewayStatusWriter(self._kube_api)
                               if self._kube_api is not None else None)
        # whether each Istio object is in force, written to its status (Kubernetes only)
        self.istio_status = (IstioStatusWriter(self._kube_api)
                             if self._kube_api is not None else None)
        # an Event on each object NACK containment holds back (Kubernetes only)
        self.nack_events = (NackEvents(self._kube_api, instance=socket.gethostname())
                            if self._kube_api is not None else None)
        self._background: set[asyncio.Task[Any]] = set()
        self.sources: list[FileSource | MeshConfigFile | KubernetesSource] = []
        if settings.config_dirs:
            self.sources.append(FileSource(list(settings.config_dirs), self.store,
                                           warn_objects=settings.warn_file_objects))
        if settings.mesh_config is not None:
            self.sources.append(MeshConfigFile(settings.mesh_config, self.store))
        if self._kube_api is not None:
            self.sources.append(
                KubernetesSource(self.store, self._kube_api, namespaces=settings.watch_namespaces,
                                 config_namespace=settings.namespace or settings.root_namespace)
            )
        self.xds = XdsServer(
            self._plaintext_cache(),
            self.status,
            self.metrics,
            address=str(settings.xds_address),
            keepalive_time_s=settings.keepalive_time_s,
            max_connection_age_s=settings.max_connection_age_s,
            authenticate=self._authenticator(
                required=settings.require_xds_credentials, listener="plaintext"
            ),
        )
        self.xds_tls: XdsServer | None = None
        if self.security is not None and settings.xds_tls_address is not None:
            self.xds_tls = XdsServer(
                self.cache,
                self.status,
                self.metrics,
                address=str(settings.xds_tls_address),
                keepalive_time_s=settings.keepalive_time_s,
                max_connection_age_s=settings.max_connection_age_s,
                server_credentials=self.security.server_certificate(
                    settings.xds_tls_address
                ).credentials(),
                authenticate=self._authenticator(required=True, listener="tls"),
            )
        self.admin = AdminServer(
            Admin(
                self,
                self.status,
                self.metrics,
                ca=self.ca_duties.rotation if self.ca_duties is not None else None,
                replica=replica_identity(settings),
            ),
            host=settings.admin_address.host,
            port=settings.admin_address.port,
            # operator actions need the token kept beside the CA (admin/server.py)
            token=(load_or_create_token(settings.ca_dir / ADMIN_TOKEN_FILE)
                   if settings.ca_dir is not None else None),
        )
        self._serving = False
        self._task: asyncio.Task[None] | None = None

    # -- AdminView -----------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        if not self._serving:
            return False, "xds server not started"
        if not self.store.ready:
            return False, "waiting for the initial config of every source"
        return True, "ready"

    def diagnostics(self) -> list[Diagnostic]:
        return self.pipeline.diagnostics

    async def snapshot_for(self, node_id: str) -> Snapshot | ProxyError:
        """What a proxy holds (connected) or would get: built in a thread, never on the
        loop (the build state's lock may be held by a publication in progress)."""
        held = self.cache.get(node_id)
        if held is not None:
            return held
        return await asyncio.to_thread(self.pipeline.snapshot_of, self.store.snapshot(),
                                       node_id)

    def bootstrap_for(self, node_id: str) -> dict[str, Any] | None:
        """The bootstrap `legation bootstrap` writes for this proxy (no credential: the
        control plane never sees a proxy's own), or None if it names no workload."""
        mesh = self.store.snapshot()
        proxy = resolve_proxy(mesh, node_id)
        if proxy is None:
            return None
        w = proxy.workload
        tls = self.xds_tls is not None and self.settings.xds_tls_address is not None
        xds = self.settings.xds_tls_address if tls else self.settings.xds_address
        assert xds is not None
        return build_bootstrap(
            node_id=node_id, node_cluster=w.namespace, xds_host=xds.host,
            xds_port=(self.xds_tls.port if tls and self.xds_tls else self.xds.port),
            admin_host=w.address, admin_port=15000, workload=w.name, namespace=w.namespace,
            stats_exclusions=disabled_stats(mesh.telemetries, namespace=w.namespace,
                                            labels=w.labels,
                                            root_namespace=mesh.root_namespace),
            fixed_tags=fixed_tags(mesh.telemetries, namespace=w.namespace, labels=w.labels,
                                  root_namespace=mesh.root_namespace))

    def _authenticator(self, *, required: bool, listener: str) -> Authenticator | None:
        """An xDS listener's credential check (security.py); with Kubernetes, a pod's
        service-account token is accepted too, checked by TokenReview (incluster.py)."""
        if self.security is None:
            return None
        inner = self.security.authenticator(self.store, required=required, listener=listener)
        if self._token_reviewer is None:
            return inner
        return TokenReviewAuthenticator(
            inner, self._token_reviewer, self._loaded_mesh, listener=listener
        )

    def _refresh_all(self) -> None:
        """Republish every connected proxy (the trust bundle changed)."""
        self.pipeline.refresh(self.cache.connected())

    def _loaded_mesh(self) -> MeshSnapshot | None:
        return self.store.snapshot() if self.store.ready else None

    def _plaintext_cache(self) -> SnapshotCache:
        """No private key on the plaintext listener unless --insecure-plaintext-secrets."""
        if self.security is None or self.settings.insecure_plaintext_secrets:
            return self.cache
        return WithoutPrivateKeys(self.cache)

    # -- lifecycle -------------------------------------------------------------

    async def run(self) -> None:
        """Serve until cancelled."""
        await self.xds.start()
        try:
            if self.xds_tls is not None:
                await self.xds_tls.start()
            await self.admin.start()
            self._serving = True
            _log.info(
                "legation.started",
                xds=f"{self.settings.xds_address.host}:{self.xds.port}",
                xds_tls=self._tls_address(),
                admin=f"{self.settings.admin_address.host}:{self.admin.port}",
                config_dirs=[str(d) for d in self.settings.config_dirs],
                ca_dir=str(self.settings.ca_dir) if self.settings.ca_dir else None,
            )
            if self.security is None:
                _log.warning(
                    "security.mtls-off",
                    reason="no --ca-dir: no workload certificates, so traffic between "
                    "sidecars is plaintext and PeerAuthentication STRICT is not enforced "
                    "(every port accepts plaintext)",
                    fix="start with --ca-dir DIR (a directory for the CA; created if empty)",
                )
            async with asyncio.TaskGroup() as tg:
                for source in self.sources:
                    tg.create_task(source.run())
                tg.create_task(self.pipeline.run())
                tg.create_task(self.jwks_probe.run())
                if self.security is not None:
                    tg.create_task(self.security.issuer.run())
                if self.ca_duties is not None:
                    tg.create_task(self.ca_duties.run())
                if self.gateway_status is not None:
                    tg.create_task(self._write_gateway_status(self.gateway_status))
        finally:
            self._serving = False
            await self.admin.stop()
            if self.xds_tls is not None:
                await self.xds_tls.stop(grace=1.0)
            await self.xds.stop(grace=1.0)
            if self._kube_api is not None:
                self._kube_api.close()
            _log.info("legation.stopped")

    async def _write_gateway_status(self, writer: GatewayStatusWriter) -> None:
        """Each new mesh snapshot's Gateway API conditions and Istio objects' state,
        written back (at most every GATEWAY_STATUS_INTERVAL_S: a burst of changes is one
        write per object)."""
        version = 0
        while True:
            version = await self.store.wait_changed(version)
            await asyncio.to_thread(writer.sync, self.store.snapshot().gateway_status)
            if self.istio_status is not None:
                await asyncio.sleep(0.2)  # the pipeline's findings of this version first
                refs = [o.ref for o in self.store.objects(KUBERNETES_SOURCE).values()]
                await asyncio.to_thread(self.istio_status.sync, refs, self.diagnostics())
            await asyncio.sleep(GATEWAY_STATUS_INTERVAL_S)

    def _contain(self, keys: tuple[ObjectKey, ...], node: str, type_name: str,
                 message: str) -> None:
        """A proxy NACKed the configuration a change produced: hold back the objects that
        change wrote (their previous versions serve; MeshStore.reject), never endpoints,
        which are not configuration anyone wrote."""
        suspects = [k for k in keys if k[0] not in NEVER_HELD]
        held = self.store.reject(suspects, node=node, type_name=type_name, message=message)
        if held:
            _log.warning("xds.nack-contained", node=node, type=type_name,
                         held=[f"{k} {ns}/{n}" for k, ns, n in held])
        if held and self.nack_events is not None:  # Kubernetes: an Event on each object
            objects = self.store.objects(KUBERNETES_SOURCE)
            refs = [objects[k].ref for k in held if k in objects]
            events = self.nack_events
            for ref in refs:
                task = asyncio.create_task(asyncio.to_thread(
                    events.rejected, ref, node=node, type_name=type_name, message=message))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
        if len(held) > 1:
            # Bisect: retry half after a while; a NACK of that change holds the half again
            # (and bisects it), an ACK keeps it, and then the other half is retried too.
            asyncio.get_running_loop().call_later(BISECT_AFTER_S, self._retry, held)

    def _retry(self, held: list[ObjectKey]) -> None:
        half, rest = held[: len(held) // 2], held[len(held) // 2:]
        released = self.store.release(half)
        if released:
            _log.info("xds.nack-bisect", retried=[f"{k} {ns}/{n}" for k, ns, n in released])
        if rest:
            asyncio.get_running_loop().call_later(BISECT_AFTER_S, self._retry_rest, rest)

    def _retry_rest(self, rest: list[ObjectKey]) -> None:
        if len(rest) > 1:
            self._retry(rest)
        else:
            self.store.release(rest)

    def _tls_address(self) -> str | None:
        address = self.settings.xds_tls_address
        if self.xds_tls is None or address is None:
            return None
        return str(HostPort(host=address.host, port=self.xds_tls.port))

    async def __aenter__(self) -> App:
        self._task = asyncio.create_task(self.run())
        while not self._serving:
            if self._task.done():
                await self._task  # raises what made it fail
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
