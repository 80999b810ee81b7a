"""Builders for the root-rotation tests: manual time, a CA world with proxies that ACK
what they are sent (or not), and observations of what each proxy was given."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from prometheus_client import CollectorRegistry

from legation.cache import SECRET, Snapshot, SnapshotCache
from legation.model import SourceRef, Workload, WorkloadKind
from legation.security import CertificateAuthority, CertificateIssuer, RootState
from legation.security.certs import fingerprint
from legation.security.rotation import RootRotation, RotationPolicy, Share
from legation.security.workload_secrets import WorkloadSecrets
from legation.xds.bundleacks import BundleAcks
from legation.xds.status import ProxyStatus, StatusBoard

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TD = "cluster.local"
TTL = timedelta(hours=1)


class ManualTime:
    """A clock that moves only when the test says; `sleep` waits for it (like looptime)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        when = self.now + timedelta(seconds=seconds)
        heapq.heappush(self._sleepers, (when, next(self._seq), fut))
        await fut

    async def advance(self, delta: timedelta | float) -> None:
        """Move time forward, waking each sleeper at its own instant, in order."""
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        target = self.now + step
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, fut = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not fut.done():
                fut.set_result(None)
                await settle()
        self.now = target
        await settle()


async def settle(rounds: int = 30) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


def workload(name: str, sa: str) -> Workload:
    return Workload(
        ref=SourceRef(kind="WorkloadEntry", namespace="shop", name=name),
        kind=WorkloadKind.WORKLOAD_ENTRY, name=name, namespace="shop",
        address="10.0.0.1", service_account=sa,
    )  # fmt: skip


@dataclass(slots=True, kw_only=True)
class Given:
    """What a proxy was sent once: when, the roots of its ROOTCA, its leaf's issuer."""

    at: datetime
    roots: tuple[str, ...]  # fingerprints
    leaf_root: str  # fingerprint of the root that signed its `default`
    version: str


@dataclass(slots=True, kw_only=True)
class Proxy:
    node: str
    workload: Workload
    status: ProxyStatus
    auto_ack: bool = True
    given: list[Given] = field(default_factory=list)
    watch: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)


class World:
    """A CA, its issuer, proxies (cache watch + SDS stream status) and the duty."""

    def __init__(
        self, ca_dir: Path, time: ManualTime, *, policy: RotationPolicy, share: Share | None = None
    ) -> None:
        self.time = time
        self.ca = CertificateAuthority.load_or_create(ca_dir, trust_domain=TD, clock=time)
        self.issuer = CertificateIssuer(
            self.ca, ttl=TTL, clock=time, rng=random.Random(7), sleep=time.sleep,
            on_rotate=lambda identity: self.refresh_all(),
        )  # fmt: skip
        self.secrets = WorkloadSecrets(self.issuer, self.ca)
        self.cache = SnapshotCache()
        self.status = StatusBoard()
        self.proxies: dict[str, Proxy] = {}
        self.refreshes: list[datetime] = []
        self.registry = CollectorRegistry()
        self.rotation = RootRotation(
            self.ca, self.issuer, acks=BundleAcks(self.status, self.cache),
            refresh_all=self.refresh_all, policy=policy, clock=time, sleep=time.sleep,
            registry=self.registry, share=share,
        )  # fmt: skip

    # -- proxies ---------------------------------------------------------------------

    def connect(self, name: str, sa: str, *, auto_ack: bool = True) -> Proxy:
        node = f"{name}.shop"
        _, st = self.status.open(node, "ads")
        st.type("sds")
        p = Proxy(node=node, workload=workload(name, sa), status=st, auto_ack=auto_ack)
        p.watch.enter_context(self.cache.watch(node))
        self.proxies[node] = p
        self._publish(p)
        return p

    def refresh_all(self) -> None:
        """The pipeline's refresh of every connected proxy (done at once here)."""
        self.refreshes.append(self.time())
        for p in self.proxies.values():
            self._publish(p)

    def _publish(self, p: Proxy) -> None:
        snap = Snapshot.build(self.secrets.resources_for(p.node, p.workload))
        self.cache.set(p.node, snap)
        version = snap.version(SECRET)
        p.status.type("sds").sent_version = version
        secrets = snap.of_type(SECRET)
        bundle = secret_pb2.Secret.FromString(secrets["ROOTCA"].body)
        chain = secret_pb2.Secret.FromString(secrets["default"].body)
        roots = x509.load_pem_x509_certificates(
            bundle.validation_context.trusted_ca.inline_string.encode()
        )
        leaf = x509.load_pem_x509_certificates(
            chain.tls_certificate.certificate_chain.inline_string.encode()
        )[0]
        p.given.append(Given(at=self.time(), roots=tuple(fingerprint(r) for r in roots),
                             leaf_root=_signer_of(leaf, roots), version=version))  # fmt: skip
        if p.auto_ack:
            self.ack(p)

    def ack(self, p: Proxy) -> None:
        """The proxy ACKs the last SDS version it was sent."""
        st = p.status.type("sds")
        st.acked_version = st.sent_version

    # -- roots -----------------------------------------------------------------------

    def root(self, state: RootState) -> str:
        return next(r.fingerprint for r in self.ca.roots() if r.state is state)

    def bundle(self) -> tuple[str, ...]:
        return tuple(
            fingerprint(x509.load_pem_x509_certificate(p.encode()))
            for p in self.ca.trust_bundle().roots_pem
        )

    @contextlib.asynccontextmanager
    async def running(self, *, lead: bool = True) -> AsyncIterator[None]:
        """The issuer's rotation loop, the pruning timer and (`lead`) the duty, as tasks."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self.issuer.run()),
                 loop.create_task(self.rotation.watch_retirements())]
        if lead:
            tasks.append(loop.create_task(self.rotation.lead()))
        await settle()
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _signer_of(leaf: x509.Certificate, roots: list[x509.Certificate]) -> str:
    for root in roots:
        with contextlib.suppress(Exception):
            leaf.verify_directly_issued_by(root)
            return fingerprint(root)
    return "untrusted"
