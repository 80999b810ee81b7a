"""Composition of the CA's running duties for `App` (only with `--ca-dir`).

Wiring only, like legation/app/security.py: the behaviour lives in
legation/security/rotation.py (root rotation and the pruning timer),
legation/kube/casecret.py (the CA shared by replicas through a Secret) and
legation/kube/lease.py (leader election).

- One replica (no CA Secret): `RootRotation.lead` and `watch_retirements`
  simply run.
- Replicas sharing the CA Secret (`Settings.ca_secret`): every replica polls
  the Secret and reloads (`SharedCA.run`) and runs the pruning timer; only the
  holder of the Lease `legation-leader` runs `lead`, and publishes each step.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from legation.app.security import Security
from legation.cache import SnapshotCache
from legation.kube.casecret import SharedCA
from legation.kube.lease import LeaderElector, LeaseLock
from legation.kube.secretstore import CASecretStore, Materialized
from legation.security.clock import Clock, utc_now
from legation.security.rotation import RootRotation, RotationPolicy
from legation.settings import Settings
from legation.xds.bundleacks import BundleAcks
from legation.xds.status import StatusBoard

_log = structlog.get_logger("legation.app.duties")

# Replicas sharing the Secret serve a step within about one poll period (+-10%) and a
# push; the leader waits this many poll periods before it builds on the step.
FOLLOWER_SYNC_POLLS = 3


def rotation_policy(settings: Settings, *, shared: bool) -> RotationPolicy:
    before = settings.root_rotate_before_s
    return RotationPolicy(
        rotate_before=None if before is None else timedelta(seconds=before),
        grace=timedelta(seconds=settings.root_rotation_grace_s),
        follower_sync=FOLLOWER_SYNC_POLLS * timedelta(seconds=settings.ca_secret_poll_s)
        if shared
        else timedelta(0),
        workload_ttl=timedelta(seconds=settings.workload_cert_ttl_s),
    )


def replica_identity(settings: Settings) -> str:
    """The Lease holder name: the pod name (the hostname in a pod) and a random suffix,
    as client-go does, so two processes on one host never share it."""
    return settings.replica_id or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"


class CADuties:
    def __init__(
        self,
        settings: Settings,
        security: Security,
        *,
        status: StatusBoard,
        cache: SnapshotCache,
        refresh_all: Callable[[], None],
        registry: CollectorRegistry,
        kube_api: Any = None,
        materialized: Materialized | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._security = security
        self._refresh_all = refresh_all
        self.share: SharedCA | None = None
        self.elector: LeaderElector | None = None
        lock: LeaseLock | None = None
        if kube_api is not None and materialized is not None:
            self.share = SharedCA(
                CASecretStore(kube_api, namespace=settings.namespace),
                security.ca,
                resource_version=materialized.resource_version,
                istio_resource_version=materialized.istio_resource_version,
                on_reloaded=self._reloaded,
                poll_s=settings.ca_secret_poll_s,
            )
            lock = LeaseLock(
                kube_api, namespace=settings.namespace, identity=replica_identity(settings)
            )
            self.elector = LeaderElector(lock)
        self.rotation = RootRotation(
            security.ca,
            security.issuer,
            acks=BundleAcks(status, cache),
            refresh_all=refresh_all,
            policy=rotation_policy(settings, shared=self.share is not None),
            clock=clock,
            registry=registry,
            share=self.share,
            leader=(lambda: lock.observed.holder if lock and lock.observed else ""),
        )

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.rotation.watch_retirements())
            if self.share is None or self.elector is None:
                tg.create_task(self.rotation.lead())
                return
            tg.create_task(self.share.run())
            tg.create_task(self.elector.run(self.rotation.lead))

    def _reloaded(self, signer_changed: bool) -> None:
        """Another replica changed the CA: new certificates if the signer changed, and
        every proxy gets the current ROOTCA (and default)."""
        if signer_changed:
            self._security.issuer.rotate_all()
        self._refresh_all()
        self.rotation.notify_changed()
