"""Replicas sharing one CA through the Secret legation-ca: each root-rotation step the
Lease holder takes is published, and every other replica picks it up.

At start-up every replica copies the Secret into its `--ca-dir` and loads the
CA from there (legation/app/incluster.py, legation/kube/secretstore.py). After
that, `SharedCA`:

- `change(fn)` (the leader, legation/security/rotation.py): under one lock, re-read
  the Secret (reloading first if it moved), apply `fn` to the local CA, then
  publish the CA directory with the resourceVersion last seen as
  precondition. On a 409 (`SecretConflict`) the Secret wins: the directory is
  re-materialized from it and the local change is gone. A publish that fails
  otherwise (API server unreachable) leaves the replica "dirty": the next
  `sync()` or `change()` reverts to the Secret first, so a step that was not
  published is never built on.
- `run()` (every replica): every `poll_s` (+-10%) read the Secret; when its
  resourceVersion (or that of Istio's cacerts) moved, re-materialize the
  directory and swap the reloaded CA in atomically
  (`CertificateAuthority.reload`, under the CA's lock), then call
  `on_reloaded(signer_changed)`; the app re-issues the workload certificates
  when the signer changed and republishes every proxy (new ROOTCA/default).

A replica thus serves a rotation step at most about one poll period after
the leader took it; the leader allows three (`follower_sync`). Reads and
writes go through the official client in a worker thread.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import structlog

from legation.kube.secretstore import CASecretStore, Fetched, SecretConflict, write_ca_dir
from legation.security import CAError, CertificateAuthority

_log = structlog.get_logger("legation.kube.casecret")

T = TypeVar("T")
Sleep = Callable[[float], Coroutine[Any, Any, object]]


class SharedCA:
    def __init__(
        self,
        store: CASecretStore,
        ca: CertificateAuthority,
        *,
        resource_version: str,
        istio_resource_version: str = "",
        on_reloaded: Callable[[bool], None],
        poll_s: float = 15.0,
        rng: random.Random | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._ca = ca
        self._known = (resource_version, istio_resource_version)
        self._on_reloaded = on_reloaded
        self.poll_s = poll_s
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._dirty = False  # the local CA holds a change the Secret does not
        self._last_error = ""
        self.reloads = 0

    @property
    def resource_version(self) -> str:
        """legation-ca's resourceVersion as last read or written."""
        return self._known[0]

    async def sync(self) -> None:
        """Bring the local CA up to the Secret (reverting an unpublished change)."""
        async with self._lock:
            await self._pull()

    async def change(self, fn: Callable[[], T]) -> T:
        """Apply `fn` to the up-to-date local CA and publish the result (see module doc)."""
        async with self._lock:
            await self._pull()
            result = fn()
            self._dirty = True
            try:
                rv = await asyncio.to_thread(
                    self._store.publish, self._ca.ca_dir, resource_version=self._known[0]
                )
            except SecretConflict:
                _log.warning("sds.ca-secret-conflict", resource_version=self._known[0])
                await self._pull()
                raise
            self._known, self._dirty = (rv, self._known[1]), False
            _log.info("sds.ca-secret-published", resource_version=rv)
            return result

    async def run(self) -> None:
        """Poll the Secret and reload on change, forever."""
        while True:
            await self._sleep(self.poll_s * (0.9 + 0.2 * self._rng.random()))
            try:
                async with self._lock:
                    await self._pull()
            except Exception as e:  # CAError mostly; never let a poll take the server down
                if str(e) != self._last_error:  # once per distinct failure
                    log = _log.warning if isinstance(e, CAError) else _log.exception
                    log("sds.ca-secret-poll-failed", error=str(e))
                self._last_error = str(e)
            else:
                self._last_error = ""

    async def _pull(self) -> bool:
        """Reload from the Secret when it moved (or the local CA is dirty). Holds the lock."""
        fetched = await asyncio.to_thread(self._store.fetch)
        seen = (fetched.resource_version, fetched.istio_resource_version)
        if seen == self._known and not self._dirty:
            return False
        signer = self._signer()
        await asyncio.to_thread(self._reload, fetched)
        self._known, self._dirty = seen, False
        self.reloads += 1
        changed = self._signer() != signer
        _log.info("sds.ca-secret-reloaded", resource_version=seen[0], source=fetched.source,
                  signer_changed=changed)  # fmt: skip
        self._on_reloaded(changed)
        return True

    def _reload(self, fetched: Fetched) -> None:
        self._ca.reload(lambda ca_dir: write_ca_dir(ca_dir, fetched.content))

    def _signer(self) -> str:
        return self._ca.signer_fingerprint()
