"""KubernetesSource: the mesh read from a Kubernetes API server, kept exact by list + watch.

Sits where `files.py` sits in the flow: API objects -> `convert_object` ->
`MeshStore` (source name "k8s"). Each watched kind (see `kube/kinds.py`), per
namespace when `namespaces` is given, runs a `Reflector` in its own thread (the
official client blocks); reflectors hand `Change`s to the event loop with
`call_soon_threadsafe`, and only the loop touches the store.

- The first picture is delivered whole: changes are collected until EVERY
  reflector has finished its initial list (a kind whose CRD is missing counts,
  with a warning), then one `replace_source`; the store is not ready before
  (`expect_source` in the constructor). After that, changes are applied one by
  one with `upsert` / `delete`.
- An invalid object keeps its last good version in the store; its diagnostics
  are recorded. Diagnostics live in one store source per kind (`k8s:<Kind>`),
  rewritten only when a change touches an object of that kind that has (or had)
  diagnostics.
- An API server outage deletes nothing: the store keeps the last picture until
  the reflectors re-list and send the diff.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.config import incluster_config

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, MeshObject, ObjectKey, object_key
from legation.sources.kube.kinds import WATCHED_KINDS, WatchedKind
from legation.sources.kube.reflector import (
    Change,
    Ident,
    Listed,
    Message,
    Pulse,
    Reflector,
    Timing,
)

SOURCE = "k8s"
_JOIN_TIMEOUT_S = 5.0

_log = structlog.get_logger("legation.sources.kubernetes")


class KubeConfigError(ValueError):
    """The kubeconfig or in-cluster configuration cannot be loaded; one clear line."""


def scopes(namespaces: Sequence[str], config_namespace: str = "istio-system"
           ) -> list[tuple[WatchedKind, str | None]]:
    """(kind, namespace or None for all) for every list/watch the source runs; a kind
    with `in_config_namespace` (the MeshConfig's ConfigMap) in `config_namespace` alone."""
    wanted = tuple(dict.fromkeys(namespaces))
    return [(kind, ns) for kind in WATCHED_KINDS
            for ns in ((config_namespace,) if kind.in_config_namespace else
                       wanted if kind.namespaced and wanted else (None,))]


def api_client(
    *,
    kubeconfig: Path | None = None,
    in_cluster: bool = False,
    context: str | None = None,
    environ: Mapping[str, str] | None = None,
    namespaces: Sequence[str] = (),
) -> Any:
    """An official `kubernetes.client.ApiClient` from a kubeconfig file or the pod's
    service account (`in_cluster`, which reads KUBERNETES_SERVICE_HOST/PORT from
    `environ`). Its connection pool holds one connection per watch."""
    cfg = k8s.Configuration()
    try:
        if in_cluster:
            incluster_config.InClusterConfigLoader(
                token_filename=incluster_config.SERVICE_TOKEN_FILENAME,
                cert_filename=incluster_config.SERVICE_CERT_FILENAME,
                environ=dict(environ or {}),
            ).load_and_set(cfg)
        elif kubeconfig is not None:
            k8s_config.load_kube_config(config_file=str(kubeconfig), context=context,
                                        client_configuration=cfg, persist_config=False)
        else:
            raise KubeConfigError(
                "no Kubernetes configuration: pass --kubeconfig PATH or --in-cluster")
    except k8s_config.ConfigException as exc:
        where = "in-cluster configuration" if in_cluster else f"--kubeconfig {kubeconfig}"
        raise KubeConfigError(f"{where}: {exc}") from None
    except OSError as exc:
        raise KubeConfigError(f"--kubeconfig {kubeconfig}: {exc.strerror or exc}") from None
    cfg.connection_pool_maxsize = len(scopes(namespaces)) + 4
    return k8s.ApiClient(cfg)


@dataclass(frozen=True, slots=True, kw_only=True)
class ScopeStatus:
    """One list/watch of the source, for the admin API and tests."""

    kind: str
    namespace: str  # "" : all namespaces
    version: str  # the API version being watched ("" before the first list)
    resource_version: str  # where the watch resumes ("" : a (re-)list is due)
    listed: bool  # its initial list is done (or its CRD was found missing)
    objects: int


class KubernetesSource:
    """Lists and watches every kind of `WATCHED_KINDS` into `store` (see the module doc).

    `run()` is single-use: it runs until cancelled; construct a new source to start over.
    """

    def __init__(
        self,
        store: MeshStore,
        api: Any,  # kubernetes.client.ApiClient
        *,
        namespaces: Sequence[str] = (),
        config_namespace: str = "istio-system",
        crd_retry_s: float = 30.0,
        rng: random.Random | None = None,
        watch_timeout_s: float = 300.0,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
    ) -> None:
        store.expect_source(SOURCE)
        self._store = store
        self._api = api
        self._scopes = scopes(namespaces, config_namespace)
        self._timing = Timing(watch_timeout_s=watch_timeout_s, backoff_base_s=backoff_base_s,
                              backoff_cap_s=backoff_cap_s, crd_retry_s=crd_retry_s)
        self._rng = rng or random.Random()
        self._started = False
        self._stopped = False
        self._reflectors: list[Reflector] = []
        # loop-thread state
        self._listed: set[int] = set()
        self._pending: dict[ObjectKey, MeshObject] | None = {}  # None once the first picture is out
        self._diags: dict[str, dict[Ident, tuple[Diagnostic, ...]]] = {}
        self._missing: dict[int, Diagnostic] = {}  # scope index -> kind-not-served warning
        self._dirty: set[str] = set()

    @property
    def synced(self) -> bool:
        """Every kind's initial list is done and the first picture is in the store."""
        return self._pending is None

    def status(self) -> list[ScopeStatus]:
        return [
            ScopeStatus(kind=kind.kind, namespace=ns or "", version=r.served_version if r else "",
                        resource_version=r.resource_version if r else "",
                        listed=i in self._listed, objects=r.object_count if r else 0)
            for i, ((kind, ns), r) in enumerate(zip(self._scopes, self._reflectors_or_none(),
                                                    strict=True))
        ]

    def _reflectors_or_none(self) -> list[Reflector | None]:
        return list(self._reflectors) if self._reflectors else [None] * len(self._scopes)

    async def run(self) -> None:
        """List and watch until cancelled; raises if a reflector thread fails on a bug."""
        if self._started:
            raise RuntimeError("KubernetesSource.run() can only be called once")
        self._started = True
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()
        pulse = Pulse()  # one reflector's recovery wakes the others (reflector.py)
        reflectors = [
            Reflector(api=self._api, kind=kind, namespace=ns,
                      post=functools.partial(self._post, loop, i), timing=self._timing,
                      rng=random.Random(self._rng.getrandbits(64)), pulse=pulse)
            for i, (kind, ns) in enumerate(self._scopes)
        ]
        self._reflectors = reflectors
        threads = [
            threading.Thread(target=self._thread_main, args=(loop, r, failed), daemon=True,
                             name=f"k8s-{r.kind.plural}-{r.namespace or 'all'}")
            for r in reflectors
        ]
        _log.info("k8s.start", scopes=len(threads))
        try:
            for t in threads:
                t.start()
            await failed
        finally:
            for r in reflectors:
                r.stop()
            self._stopped = True  # what stopped threads still post is ignored
            await _join(threads)

    # -- reflector threads -> loop -------------------------------------------------------

    @staticmethod
    def _thread_main(loop: asyncio.AbstractEventLoop, reflector: Reflector,
                     failed: asyncio.Future[None]) -> None:
        try:
            reflector.run()
        except BaseException as exc:  # a bug: fail run() instead of silently losing a kind
            _log.exception("k8s.reflector_failed", kind=reflector.kind.kind)
            with contextlib.suppress(RuntimeError):  # the loop is closed
                loop.call_soon_threadsafe(_fail, failed, exc)

    def _post(self, loop: asyncio.AbstractEventLoop, index: int, message: Message) -> bool:
        try:
            loop.call_soon_threadsafe(self._on_message, index, message)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            return False
        return True

    # -- loop thread -----------------------------------------------------------------------

    def _on_message(self, index: int, message: Message) -> None:
        if self._stopped:
            return
        kind = self._scopes[index][0].resource  # Istio and the Gateway API both have a Gateway
        if isinstance(message, Listed):
            for change in message.changes:
                self._apply(kind, change)
            if self._missing.get(index) != message.missing:
                self._dirty.add(kind)
                if message.missing is None:
                    del self._missing[index]
                else:
                    self._missing[index] = message.missing
            self._listed.add(index)
        else:
            self._apply(kind, message)
        if self._pending is None:
            self._flush_diagnostics()
        elif len(self._listed) == len(self._scopes):
            self._deliver_first_picture(self._pending)

    def _apply(self, kind: str, change: Change) -> None:
        if self._pending is not None:
            if change.drop is not None:
                self._pending.pop(change.drop, None)
            if change.put is not None:
                self._pending[object_key(change.put)] = change.put
        else:
            if change.drop is not None:
                self._store.delete(SOURCE, change.drop)
            if change.put is not None:
                self._store.upsert(SOURCE, change.put)
        bucket = self._diags.setdefault(kind, {})
        old = bucket.get(change.ident, ())
        if change.diagnostics:
            bucket[change.ident] = change.diagnostics
        else:
            bucket.pop(change.ident, None)
        if old != change.diagnostics:
            self._dirty.add(kind)

    def _deliver_first_picture(self, objects: dict[ObjectKey, MeshObject]) -> None:
        self._pending = None
        self._flush_diagnostics()
        self._store.replace_source(SOURCE, objects.values())
        _log.info("k8s.synced", objects=len(objects), scopes=len(self._scopes))

    def _flush_diagnostics(self) -> None:
        for kind in sorted(self._dirty):
            self._store.set_diagnostics(f"{SOURCE}:{kind}", self._kind_diagnostics(kind))
        self._dirty.clear()

    def _kind_diagnostics(self, kind: str) -> list[Diagnostic]:
        missing = [d for i, d in sorted(self._missing.items())
                   if self._scopes[i][0].resource == kind]
        out = list(dict.fromkeys(missing))
        bucket = self._diags.get(kind, {})
        for ident in sorted(bucket):
            out.extend(bucket[ident])
        return out


def _fail(failed: asyncio.Future[None], exc: BaseException) -> None:
    if not failed.done():
        failed.set_exception(exc)


async def _join(threads: list[threading.Thread]) -> None:
    """Wait (bounded) for stopped reflector threads; they are daemons if one lingers."""
    deadline = asyncio.get_running_loop().time() + _JOIN_TIMEOUT_S
    while any(t.is_alive() for t in threads):
        if asyncio.get_running_loop().time() >= deadline:
            _log.warning("k8s.threads_lingering",
                         threads=",".join(t.name for t in threads if t.is_alive()))
            return
        await asyncio.sleep(0.01)
