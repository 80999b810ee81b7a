"""The xDS authenticator over a real gRPC channel: who is served, who is refused, and how.

A real `XdsServer` (plaintext, and once TLS) with `NodeAuthenticator`; the
cache answers every connecting node with a snapshot holding a private key,
so "never answered" is checked against something that would be sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from cryptography.hazmat.primitives.asymmetric import ec
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from grpc import aio

from legation.cache import SECRET, Resource, Snapshot, SnapshotCache
from legation.metrics import Metrics
from legation.security import CertificateAuthority, TokenAuthority
from legation.xds import XdsServer
from legation.xds.auth import MeshNotReady, NodeAuthenticator, NodeClaim
from legation.xds.status import StatusBoard
from legation.xds.tls import ServerCertificate

TD = "cluster.local"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
MESH = {("shop", "payment-v1"): "payment-sa", ("shop", "catalog-v1"): "catalog-sa"}
HANG_GUARD_S = 5.0


def _key_secret() -> Resource:
    msg = secret_pb2.Secret(
        name="default",
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_string="CHAIN"),
            private_key=base_pb2.DataSource(inline_string="PRIVATE KEY"),
        ),
    )
    return Resource.of(SECRET, "default", msg)


def lookup(node_id: str) -> NodeClaim | None:
    if node_id == "not-ready.shop":
        raise MeshNotReady
    name, _, namespace = node_id.rpartition(".")
    if not name:
        return None
    return NodeClaim(
        namespace=namespace, workload=name, service_account=MESH.get((namespace, name))
    )


@dataclass
class Outcome:
    responses: list[Any]
    code: grpc.StatusCode
    details: str


@dataclass
class Server:
    server: XdsServer
    metrics: Metrics
    tokens: TokenAuthority
    channel: Callable[[], aio.Channel]


async def _serve(tmp_path: Path, *, required: bool, tls: bool = False) -> AsyncIterator[Server]:
    cache, metrics = SnapshotCache(), Metrics()
    snapshot = Snapshot.build([_key_secret()])
    cache.on_connect = lambda node: asyncio.get_running_loop().call_soon(cache.set, node, snapshot)
    tokens = TokenAuthority.load_or_create(tmp_path, TD, clock=lambda: NOW)
    auth = NodeAuthenticator(tokens, lookup, required=required, listener="test")
    creds, channel_creds = None, None
    if tls:
        ca = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain=TD)
        cert = ServerCertificate(
            lambda: ca.issue_server([], ["127.0.0.1"], ttl=timedelta(hours=1)),
            clock=lambda: datetime.now(UTC),
        )
        creds = cert.credentials()
        channel_creds = grpc.ssl_channel_credentials(ca.trust_bundle().pem.encode())
    server = XdsServer(
        cache,
        StatusBoard(),
        metrics,
        address="127.0.0.1:0",
        server_credentials=creds,
        authenticate=auth,
    )
    await server.start()

    def channel() -> aio.Channel:
        target = f"127.0.0.1:{server.port}"
        if channel_creds is None:
            return aio.insecure_channel(target)
        return aio.secure_channel(target, channel_creds)

    try:
        yield Server(server, metrics, tokens, channel)
    finally:
        await server.stop(grace=0.1)


@pytest.fixture
async def plaintext(tmp_path: Path) -> AsyncIterator[Server]:
    async for s in _serve(tmp_path, required=False):
        yield s


@pytest.fixture
async def required(tmp_path: Path) -> AsyncIterator[Server]:
    async for s in _serve(tmp_path, required=True):
        yield s


async def _ads(
    server: Server, node_id: str, token: str | None, *, scheme: str = "Bearer "
) -> Outcome:
    """One ADS stream: a request for `default`, then everything the server says."""
    metadata = (("authorization", scheme + token),) if token is not None else None
    async with server.channel() as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(metadata=metadata)
        request = discovery_pb2.DiscoveryRequest(type_url=SECRET, resource_names=["default"])
        request.node.id = node_id
        responses: list[Any] = []
        async with asyncio.timeout(HANG_GUARD_S):
            await call.write(request)
            try:
                while (msg := await call.read()) is not aio.EOF:
                    responses.append(msg)
                    if responses:
                        call.cancel()
                        break
            except aio.AioRpcError:
                pass
            code = await call.code()
            details = await call.details()
    return Outcome(responses, code, details or "")


def _forged(node: str, sa: str) -> str:
    other = TokenAuthority(
        key=ec.generate_private_key(ec.SECP256R1()), trust_domain=TD, clock=lambda: NOW
    )
    return other.mint("shop", sa, node)


REFUSED = [
    # (id, node, token factory, code, words of the reason)
    ("no-credential", "payment-v1.shop", None, "UNAUTHENTICATED", "no credential"),
    ("garbage", "payment-v1.shop", lambda t: "not-a-jwt", "UNAUTHENTICATED", "malformed token"),
    (
        "forged",
        "payment-v1.shop",
        lambda t: _forged("payment-v1", "payment-sa"),
        "UNAUTHENTICATED",
        "not signed with this control plane's token key",
    ),
    (
        "expired",
        "payment-v1.shop",
        lambda t: TokenAuthority(
            key=t._key, trust_domain=TD, clock=lambda: NOW - timedelta(days=2)
        ).mint("shop", "payment-sa", "payment-v1", ttl=timedelta(days=1)),
        "UNAUTHENTICATED",
        "expired",
    ),
    (
        "token-for-another-workload",
        "payment-v1.shop",
        lambda t: t.mint("shop", "catalog-sa", "catalog-v1"),
        "PERMISSION_DENIED",
        "bound to workload 'catalog-v1'",
    ),
    (
        "another-namespace",
        "payment-v1.shop",
        lambda t: t.mint("staging", "payment-sa", "payment-v1"),
        "PERMISSION_DENIED",
        "bound to namespace 'staging'",
    ),
    (
        "service-account-not-the-mesh-one",
        "payment-v1.shop",
        lambda t: t.mint("shop", "admin-sa", "payment-v1"),
        "PERMISSION_DENIED",
        "runs as service account 'payment-sa'",
    ),
    (
        "unknown-workload",
        "ghost.shop",
        lambda t: t.mint("shop", "x", "ghost"),
        "PERMISSION_DENIED",
        "names no workload",
    ),
    (
        "unknown-workload-forged-token",
        "ghost.shop",
        lambda t: _forged("ghost", "x"),
        "UNAUTHENTICATED",
        "not signed",
    ),
    (
        "mesh-not-loaded",
        "not-ready.shop",
        lambda t: t.mint("shop", "x", "not-ready"),
        "UNAVAILABLE",
        "still loading",
    ),
]


@pytest.mark.parametrize(
    ("node", "make", "code", "reason"), [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED]
)
async def test_refused_streams_get_a_status_and_nothing_else(
    required: Server, node: str, make: Any, code: str, reason: str
) -> None:
    token = make(required.tokens) if make is not None else None
    with structlog.testing.capture_logs() as logs:
        out = await _ads(required, node, token)
    assert out.responses == []
    assert out.code.name == code
    assert reason in out.details
    refused = [e for e in logs if e["event"] == "xds.auth_refused"]
    assert [(e["node"], e["code"]) for e in refused] == [(node, code)]
    metric = required.metrics.xds_rejected_streams.labels(code=code)._value.get()
    assert metric == 1


async def test_a_genuine_credential_is_served(required: Server) -> None:
    out = await _ads(
        required, "payment-v1.shop", required.tokens.mint("shop", "payment-sa", "payment-v1")
    )
    assert [r.type_url for r in out.responses] == [SECRET]


async def test_a_credential_that_is_not_bearer_is_refused(required: Server) -> None:
    token = required.tokens.mint("shop", "payment-sa", "payment-v1")
    out = await _ads(required, "payment-v1.shop", token, scheme="Basic ")
    assert (out.responses, out.code.name) == ([], "UNAUTHENTICATED")


async def test_plaintext_listener_serves_without_a_credential_but_checks_a_present_one(
    plaintext: Server,
) -> None:
    served = await _ads(plaintext, "payment-v1.shop", None)
    assert len(served.responses) == 1
    forged = await _ads(plaintext, "payment-v1.shop", _forged("payment-v1", "payment-sa"))
    assert (forged.responses, forged.code.name) == ([], "UNAUTHENTICATED")


async def test_repeated_refusals_log_one_warning(required: Server) -> None:
    with structlog.testing.capture_logs() as logs:
        for _ in range(3):
            await _ads(required, "payment-v1.shop", None)
    levels = [e["log_level"] for e in logs if e["event"] == "xds.auth_refused"]
    assert levels == ["warning", "debug", "debug"]


async def test_tls_listener_with_a_credential(tmp_path: Path) -> None:
    async for server in _serve(tmp_path, required=True, tls=True):
        good = await _ads(
            server, "catalog-v1.shop", server.tokens.mint("shop", "catalog-sa", "catalog-v1")
        )
        assert len(good.responses) == 1
        bad = await _ads(server, "catalog-v1.shop", None)
        assert (bad.responses, bad.code.name) == ([], "UNAUTHENTICATED")
