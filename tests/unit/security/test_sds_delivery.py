"""Certificates through the pipeline to real xDS streams: per identity, shared, rotated.

A real CA and issuer (with an injected clock), the real pipeline and an
`XdsServer` on a real gRPC channel: the standalone SDS service (SotW and
delta) delivers `default` and `ROOTCA`; proxies of one service account share
one certificate; a rotation republishes only that identity's proxies.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from envoy.service.secret.v3 import sds_pb2_grpc
from grpc import aio

from legation.cache import SECRET, Snapshot, SnapshotCache
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import MeshSecurity
from legation.security import CertificateAuthority, CertificateIssuer, SdsMetrics
from legation.security.workload_secrets import WorkloadSecrets
from legation.sources.convert import convert_text
from legation.xds import XdsServer
from legation.xds.keys import WithoutPrivateKeys
from legation.xds.status import StatusBoard

MESH = "\n---\n".join(
    f"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
    f"metadata: {{name: {name}, namespace: shop}}\n"
    f"spec: {{address: 10.0.0.{i}, labels: {{app: {name}}}, serviceAccount: {sa}}}\n"
    for i, (name, sa) in enumerate([("a1", "a-sa"), ("a2", "a-sa"), ("b", "b-sa")], start=1)
)
HANG_GUARD_S = 5.0


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2030, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Rig:
    cache: SnapshotCache
    issuer: CertificateIssuer
    clock: Clock
    sds_metrics: SdsMetrics
    port: int


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock, metrics = Clock(), Metrics()
    sds_metrics = SdsMetrics(metrics.registry, clock=clock)
    ca = CertificateAuthority.load_or_create(
        tmp_path, trust_domain="cluster.local", clock=clock, metrics=sds_metrics
    )
    store = MeshStore(security=MeshSecurity(mtls=True))
    result = convert_text(MESH, file="mesh.yaml")
    store.replace_source("test", result.objects, result.diagnostics)
    cache = SnapshotCache()
    pipeline_box: list[Pipeline] = []
    issuer = CertificateIssuer(
        ca,
        ttl=timedelta(hours=1),
        clock=clock,
        rng=random.Random(7),
        metrics=sds_metrics,
        on_rotate=lambda identity: pipeline_box[0].refresh(secrets.nodes_of(identity)),
    )
    secrets = WorkloadSecrets(issuer, ca)
    pipeline = Pipeline(store, cache, metrics, quiet=0.0, max_delay=0.0, secrets=secrets)
    pipeline_box.append(pipeline)
    cache.on_disconnect = secrets.release
    server = XdsServer(cache, StatusBoard(), metrics, address="127.0.0.1:0")
    await server.start()
    task = asyncio.create_task(pipeline.run())
    try:
        yield Rig(cache, issuer, clock, sds_metrics, server.port)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0.1)


def uri_of(secret: secret_pb2.Secret) -> str:
    pem = secret.tls_certificate.certificate_chain.inline_string.encode()
    leaf = x509.load_pem_x509_certificates(pem)[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return san.get_values_for_type(x509.UniformResourceIdentifier)[0]


async def _sotw_secrets(port: int, node: str) -> dict[str, secret_pb2.Secret]:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(ch).StreamSecrets()
        req = discovery_pb2.DiscoveryRequest(resource_names=["default", "ROOTCA"])
        req.node.id = node
        async with asyncio.timeout(HANG_GUARD_S):
            await call.write(req)
            resp = await call.read()
        call.cancel()
    return {s.name: s for s in map(_unpack, resp.resources)}


async def _delta_secrets(port: int, node: str) -> dict[str, secret_pb2.Secret]:
    async with aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        call = sds_pb2_grpc.SecretDiscoveryServiceStub(ch).DeltaSecrets()
        req = discovery_pb2.DeltaDiscoveryRequest(resource_names_subscribe=["default", "ROOTCA"])
        req.node.id = node
        async with asyncio.timeout(HANG_GUARD_S):
            await call.write(req)
            resp = await call.read()
        call.cancel()
    return {r.name: _unpack(r.resource) for r in resp.resources}


def _unpack(any_msg: Any) -> secret_pb2.Secret:
    msg = secret_pb2.Secret()
    any_msg.Unpack(msg)
    return msg


@pytest.mark.parametrize("fetch", [_sotw_secrets, _delta_secrets], ids=["sotw", "delta"])
async def test_standalone_sds_delivers_the_workloads_own_identity(rig: Rig, fetch: Any) -> None:
    got = await fetch(rig.port, "b.shop")
    assert set(got) == {"default", "ROOTCA"}
    assert uri_of(got["default"]) == "spiffe://cluster.local/ns/shop/sa/b-sa"
    assert "BEGIN CERTIFICATE" in got["ROOTCA"].validation_context.trusted_ca.inline_string


async def _snapshots(rig: Rig, nodes: list[str]) -> dict[str, Snapshot]:
    async with asyncio.timeout(HANG_GUARD_S):
        while True:
            found = {n: rig.cache.get(n) for n in nodes}
            if all(isinstance(s, Snapshot) for s in found.values()):
                return found  # type: ignore[return-value]
            await asyncio.sleep(0.005)


async def test_one_certificate_per_identity_and_rotation_touches_only_its_proxies(
    rig: Rig,
) -> None:
    nodes = ["a1.shop", "a2.shop", "b.shop"]
    with rig.cache.watch(nodes[0]), rig.cache.watch(nodes[1]), rig.cache.watch(nodes[2]):
        before = await _snapshots(rig, nodes)
        default = {n: s.of_type(SECRET)["default"] for n, s in before.items()}
        assert default["a1.shop"] is default["a2.shop"]  # one Resource, serialized once
        assert default["a1.shop"] is not default["b.shop"]
        issued = rig.sds_metrics.issued.labels(kind="workload")._value.get()
        assert issued == 2

        # The issuer's schedules differ by their jitter: advance to the first one only.
        first = min(rig.issuer.identities(), key=rig.issuer.next_rotation)
        rig.clock.now = rig.issuer.next_rotation(first)
        assert rig.issuer.rotate_due() == (first,)
        rotated = [n for n in nodes if n[0] == first.service_account[0]]
        untouched = [n for n in nodes if n not in rotated]

        async with asyncio.timeout(HANG_GUARD_S):
            while any(rig.cache.get(n) is before[n] for n in rotated):
                await asyncio.sleep(0.005)
        await asyncio.sleep(0.05)  # a wrongly republished proxy would show up by now
        assert all(rig.cache.get(n) is before[n] for n in untouched)
        for n in rotated:
            new_snapshot = rig.cache.get(n)
            assert isinstance(new_snapshot, Snapshot)
            old = _unpack(default[n].any)
            new = _unpack(new_snapshot.of_type(SECRET)["default"].any)
            assert new != old and uri_of(new) == uri_of(old)
    # every proxy gone: nothing left to renew
    assert rig.issuer.identities() == ()


def test_plaintext_view_withholds_only_private_keys(tmp_path: Path) -> None:
    from legation.cache import Resource
    from legation.translators.secrets import root_secret, workload_secret

    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain="cluster.local")
    cert = ca.issue(next(iter([_identity()])), ttl=timedelta(hours=1))
    key = Resource.of(SECRET, "default", workload_secret(cert))
    root = Resource.of(SECRET, "ROOTCA", root_secret(ca.trust_bundle()))
    inner = SnapshotCache()
    view = WithoutPrivateKeys(inner)
    with view.watch("b.shop"):
        published = Snapshot.build([key, root])
        inner.set("b.shop", published)
        seen = view.get("b.shop")
        assert isinstance(seen, Snapshot)
        assert list(seen.of_type(SECRET)) == ["ROOTCA"]
        assert view.get("b.shop") is seen  # filtered once per published snapshot
        assert inner.get("b.shop") is published  # the TLS listener still sees everything
    assert view.get("b.shop") is None


def _identity() -> Any:
    from legation.model import SpiffeId

    return SpiffeId(trust_domain="cluster.local", namespace="shop", service_account="b-sa")


def test_a_ca_failure_costs_the_proxy_its_certificate_not_the_pipeline(tmp_path: Path) -> None:
    from legation.model import SourceRef, Workload, WorkloadKind
    from legation.security import CAError

    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain="cluster.local")

    class Failing(CertificateIssuer):
        def certificate(self, identity: Any) -> Any:
            raise CAError("the signing certificate expired")

    secrets = WorkloadSecrets(Failing(ca, clock=Clock(), rng=random.Random(1)), ca)
    w = Workload(
        ref=SourceRef(kind="WorkloadEntry", namespace="shop", name="b"),
        kind=WorkloadKind.WORKLOAD_ENTRY,
        name="b",
        namespace="shop",
        address="10.0.0.1",
        service_account="b-sa",
    )
    assert [r.name for r in secrets.resources_for("b.shop", w)] == ["ROOTCA"]
