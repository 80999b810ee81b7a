"""In-cluster xDS authentication: pods' service-account tokens through TokenReview,
Legation's own tokens (and none) through the wrapped authenticator."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import jwt
import pytest
from k8s import ApiServer, objects

from legation.app.incluster import TokenReviewAuthenticator, is_legation_token
from legation.kube.tokenreview import TokenReviewer
from legation.mesh.store import MeshStore
from legation.model import MeshSnapshot
from legation.security import TokenAuthority
from legation.sources.convert import convert_object
from legation.translators.names import istio_node_id
from legation.xds.protocol import StreamRejected

NS = "shop"
# What kubelet projects for `audience: legation`: a JWT the cluster's issuer signed.
SA_TOKEN = jwt.encode({"iss": "https://kubernetes.default.svc.cluster.local",
                       "sub": "system:serviceaccount:shop:catalog", "aud": ["legation"],
                       "exp": 4_000_000_000}, "cluster-signing-key-" * 2, algorithm="HS256")


@dataclass
class Node:
    id: str


class Context:
    def __init__(self, token: str | None) -> None:
        self._md = () if token is None else (("authorization", f"Bearer {token}"),)

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._md

    def peer(self) -> str:
        return "ipv4:127.0.0.1:1234"


class Inner:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, context: Any, node: Any) -> None:
        self.calls.append(node.id)


def _mesh(apiserver: ApiServer) -> MeshSnapshot:
    store = MeshStore()
    pods = [convert_object(o)[0] for o in apiserver.objects() if o["kind"] == "Pod"]
    store.replace_source("k8s", [p for p in pods if p is not None])
    return store.snapshot()


@pytest.fixture
def cluster(apiserver: ApiServer) -> ApiServer:
    apiserver.apply(objects.pod("catalog-1", NS, "10.1.0.11", service_account="catalog"))
    apiserver.apply(objects.pod("frontend-1", NS, "10.1.0.20", service_account="frontend"))
    apiserver.add_token(SA_TOKEN, namespace=NS, service_account="catalog", pod="catalog-1")
    return apiserver


def _auth(api: Any, cluster: ApiServer, inner: Inner | None) -> TokenReviewAuthenticator:
    mesh = _mesh(cluster)
    return TokenReviewAuthenticator(inner, TokenReviewer(api), lambda: mesh, listener="tls")


async def test_a_pods_token_opens_its_own_pods_stream(cluster: ApiServer, api: Any) -> None:
    inner = Inner()
    auth = _auth(api, cluster, inner)

    await auth(Context(SA_TOKEN), Node(istio_node_id("catalog-1", NS, ip="10.1.0.11")))
    await auth(Context(SA_TOKEN), Node("catalog-1.shop"))

    assert inner.calls == []  # TokenReview decided, not Legation's token check
    assert len(cluster.writes("tokenreviews")) == 1  # the second was cached


@pytest.mark.parametrize(
    ("node", "code", "reason"),
    [
        ("frontend-1.shop", grpc.StatusCode.PERMISSION_DENIED, "bound to pod 'catalog-1'"),
        ("catalog-1.other", grpc.StatusCode.PERMISSION_DENIED, "namespace 'shop'"),
        ("ghost.shop", grpc.StatusCode.PERMISSION_DENIED, "bound to pod"),
        ("no-namespace", grpc.StatusCode.PERMISSION_DENIED, "names no pod"),
    ],
    ids=["another-pod", "another-namespace", "unknown-pod", "bad-node-id"],
)
async def test_a_pods_token_opens_no_other_stream(cluster: ApiServer, api: Any, node: str,
                                                  code: grpc.StatusCode, reason: str) -> None:
    auth = _auth(api, cluster, Inner())

    with pytest.raises(StreamRejected) as err:
        await auth(Context(SA_TOKEN), Node(node))

    assert err.value.code == code
    assert reason in err.value.message


async def test_a_recreated_pod_does_not_inherit_the_old_pods_token(
    cluster: ApiServer, api: Any,
) -> None:
    """Issue 14: deleted and recreated under its name, catalog-1 is a new pod (a new UID);
    the old pod's token, still cached as reviewed, no longer opens its stream."""
    reviewer = TokenReviewer(api)
    mesh = _mesh(cluster)
    auth = TokenReviewAuthenticator(None, reviewer, lambda: mesh, listener="tls")
    await auth(Context(SA_TOKEN), Node("catalog-1.shop"))
    cluster.delete("v1", "Pod", "catalog-1", NS)
    cluster.apply(objects.pod("catalog-1", NS, "10.1.0.12", service_account="catalog"))
    mesh = _mesh(cluster)

    with pytest.raises(StreamRejected) as err:
        await auth(Context(SA_TOKEN), Node("catalog-1.shop"))
    assert err.value.code is grpc.StatusCode.PERMISSION_DENIED
    assert "deleted and recreated" in err.value.message
    assert len(cluster.writes("tokenreviews")) == 1  # decided on the cached review


async def test_an_unknown_token_is_unauthenticated(cluster: ApiServer, api: Any) -> None:
    forged = jwt.encode({"iss": "https://kubernetes.default.svc.cluster.local"}, "x" * 32)
    with pytest.raises(StreamRejected) as err:
        await _auth(api, cluster, Inner())(Context(forged), Node("catalog-1.shop"))

    assert err.value.code == grpc.StatusCode.UNAUTHENTICATED


async def test_an_unreachable_api_server_asks_the_proxy_to_retry(cluster: ApiServer,
                                                                 api: Any) -> None:
    auth = _auth(api, cluster, Inner())
    cluster.stop()

    with pytest.raises(StreamRejected) as err:
        await auth(Context(SA_TOKEN), Node("catalog-1.shop"))

    assert err.value.code == grpc.StatusCode.UNAVAILABLE


async def test_before_the_mesh_is_loaded_the_proxy_retries(cluster: ApiServer, api: Any) -> None:
    auth = TokenReviewAuthenticator(Inner(), TokenReviewer(api), lambda: None, listener="tls")

    with pytest.raises(StreamRejected) as err:
        await auth(Context(SA_TOKEN), Node("catalog-1.shop"))

    assert err.value.code == grpc.StatusCode.UNAVAILABLE
    assert cluster.writes("tokenreviews") == []


async def test_legation_tokens_and_no_token_go_to_the_wrapped_check(
    cluster: ApiServer, api: Any, tmp_path: Any
) -> None:
    inner = Inner()
    auth = _auth(api, cluster, inner)
    minted = TokenAuthority.load_or_create(tmp_path, "cluster.local").mint(NS, "catalog",
                                                                           "catalog-1")

    await auth(Context(minted), Node("catalog-1.shop"))
    await auth(Context(None), Node("frontend-1.shop"))
    await auth(Context("not-a-jwt"), Node("frontend-1.shop"))
    assert not is_legation_token(SA_TOKEN)

    assert inner.calls == ["catalog-1.shop", "frontend-1.shop", "frontend-1.shop"]
    assert cluster.writes("tokenreviews") == []
    assert is_legation_token(minted) and is_legation_token("not-a-jwt")
