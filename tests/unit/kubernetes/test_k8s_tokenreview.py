"""Projected service-account tokens checked with TokenReview, against the emulated API server."""

from __future__ import annotations

import asyncio
from typing import Any

import jwt
import pytest
from k8s import ApiServer, objects

from legation.kube.tokenreview import ReviewedToken, TokenReviewer, TokenReviewUnavailable
from legation.security import CredentialCode, CredentialError

NS = "shop"


class Clocks:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = 1_700_000_000.0

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


@pytest.fixture
def clocks() -> Clocks:
    return Clocks()


def _reviewer(api: Any, clocks: Clocks, **kw: Any) -> TokenReviewer:
    return TokenReviewer(api, monotonic=lambda: clocks.mono, wall=lambda: clocks.wall, **kw)


def _pod(apiserver: ApiServer, name: str = "catalog-1", sa: str = "catalog") -> None:
    apiserver.apply(objects.pod(name, NS, "10.1.0.11", service_account=sa))


async def _verify(r: TokenReviewer, token: str, *, pod: str = "catalog-1",
                  sa: str | None = "catalog", ns: str = NS) -> ReviewedToken:
    return await r.verify(token, node_namespace=ns, node_workload=pod,
                          workload_service_account=sa)


async def test_a_projected_token_identifies_its_pod(apiserver: ApiServer, api: Any,
                                                    clocks: Clocks) -> None:
    _pod(apiserver)
    info = apiserver.add_token("tok-1", namespace=NS, service_account="catalog", pod="catalog-1")
    r = _reviewer(api, clocks)

    who = await _verify(r, "tok-1")

    assert who == ReviewedToken(namespace=NS, service_account="catalog", pod="catalog-1",
                                pod_uid=info.pod_uid)
    assert who.pod_uid  # the emulator bound it to the pod's uid
    assert apiserver.state.token_reviews == [{"token": "tok-1", "audiences": ["legation"]}]


async def test_a_recreated_pods_name_does_not_revive_the_old_pods_token(
    apiserver: ApiServer, api: Any, clocks: Clocks,
) -> None:
    """Issue 14: force-deleted and recreated under the same name, a pod has a new UID; the
    old pod's token is refused at once, though its positive review is still cached."""
    _pod(apiserver)
    info = apiserver.add_token("tok-1", namespace=NS, service_account="catalog", pod="catalog-1")
    r = _reviewer(api, clocks, cache_ttl_s=60)
    who = await r.verify("tok-1", node_namespace=NS, node_workload="catalog-1",
                         workload_service_account="catalog", workload_uid=info.pod_uid)
    assert who.pod_uid == info.pod_uid

    with pytest.raises(CredentialError) as refused:
        await r.verify("tok-1", node_namespace=NS, node_workload="catalog-1",
                       workload_service_account="catalog", workload_uid="a-new-uid")
    assert refused.value.code is CredentialCode.PERMISSION_DENIED
    assert "deleted and recreated" in refused.value.reason
    assert r.reviews == 1  # refused from the cached review, with no second round trip


async def test_positive_reviews_are_cached_briefly(apiserver: ApiServer, api: Any,
                                                   clocks: Clocks) -> None:
    _pod(apiserver)
    apiserver.add_token("tok-1", namespace=NS, service_account="catalog")
    r = _reviewer(api, clocks, cache_ttl_s=60)

    await _verify(r, "tok-1")
    await _verify(r, "tok-1")
    clocks.advance(59)
    await _verify(r, "tok-1")
    assert r.reviews == 1
    clocks.advance(2)
    await _verify(r, "tok-1")
    assert r.reviews == 2
    assert len(apiserver.writes("tokenreviews")) == 2


async def test_the_cache_is_bounded(apiserver: ApiServer, api: Any, clocks: Clocks) -> None:
    _pod(apiserver)
    for t in ("a", "b", "c"):
        apiserver.add_token(t, namespace=NS, service_account="catalog")
    r = _reviewer(api, clocks, cache_size=2)

    for t in ("a", "b", "c", "c", "b", "a"):
        await _verify(r, t)

    assert r.reviews == 4  # a was evicted by c; b and c stayed


async def test_a_cached_review_never_outlives_the_token(apiserver: ApiServer, api: Any,
                                                        clocks: Clocks) -> None:
    _pod(apiserver)
    token = jwt.encode({"exp": int(clocks.wall) + 10, "sub": "x"}, "k" * 32, algorithm="HS256")
    apiserver.add_token(token, namespace=NS, service_account="catalog")
    r = _reviewer(api, clocks, cache_ttl_s=60)

    await _verify(r, token)
    clocks.advance(9)
    await _verify(r, token)
    assert r.reviews == 1
    clocks.advance(2)
    await _verify(r, token)  # the emulated server still accepts it; we asked again
    assert r.reviews == 2


async def test_concurrent_streams_with_one_token_share_one_review(
    apiserver: ApiServer, api: Any, clocks: Clocks
) -> None:
    _pod(apiserver)
    apiserver.add_token("tok-1", namespace=NS, service_account="catalog")
    r = _reviewer(api, clocks)

    results = await asyncio.gather(*(_verify(r, "tok-1") for _ in range(20)))

    assert len(set(results)) == 1
    assert r.reviews == 1


@pytest.mark.parametrize(
    ("setup", "call", "code", "reason"),
    [
        ("none", {}, CredentialCode.UNAUTHENTICATED, "did not authenticate"),
        ("api-audience", {}, CredentialCode.UNAUTHENTICATED, "audiences is invalid"),
        ("plain", {"ns": "other"}, CredentialCode.PERMISSION_DENIED, "namespace 'shop'"),
        ("plain", {"sa": "frontend"}, CredentialCode.PERMISSION_DENIED, "runs as 'frontend'"),
        ("plain", {"sa": None}, CredentialCode.PERMISSION_DENIED, "no pod shop/catalog-1"),
        ("bound", {"pod": "catalog-2"}, CredentialCode.PERMISSION_DENIED,
         "bound to pod 'catalog-1'"),
    ],
    ids=["unknown-token", "wrong-audience", "other-namespace", "other-service-account",
         "pod-not-in-mesh", "other-pod"],
)
async def test_refusals(apiserver: ApiServer, api: Any, clocks: Clocks, setup: str,
                        call: dict[str, Any], code: CredentialCode, reason: str) -> None:
    _pod(apiserver)
    if setup == "api-audience":
        apiserver.add_token("tok", namespace=NS, service_account="catalog",
                            audiences=("https://kubernetes.default.svc.cluster.local",))
    elif setup != "none":
        apiserver.add_token("tok", namespace=NS, service_account="catalog",
                            pod="catalog-1" if setup == "bound" else "")
    r = _reviewer(api, clocks)

    with pytest.raises(CredentialError) as err:
        await _verify(r, "tok", **call)

    assert err.value.code is code
    assert reason in err.value.reason


async def test_failed_reviews_are_not_cached(apiserver: ApiServer, api: Any,
                                             clocks: Clocks) -> None:
    _pod(apiserver)
    r = _reviewer(api, clocks)
    with pytest.raises(CredentialError):
        await _verify(r, "late")
    apiserver.add_token("late", namespace=NS, service_account="catalog")

    assert (await _verify(r, "late")).service_account == "catalog"
    assert r.reviews == 2


async def test_a_token_dies_with_its_pod(apiserver: ApiServer, api: Any, clocks: Clocks) -> None:
    _pod(apiserver)
    apiserver.add_token("tok", namespace=NS, service_account="catalog", pod="catalog-1")
    r = _reviewer(api, clocks, cache_ttl_s=5)
    await _verify(r, "tok")

    apiserver.delete("v1", "Pod", "catalog-1", NS)
    _pod(apiserver)  # a new pod of the same name has a new uid
    clocks.advance(6)

    with pytest.raises(CredentialError, match="did not authenticate"):
        await _verify(r, "tok")


async def test_an_unreachable_api_server_is_unavailable_not_a_refusal(
    apiserver: ApiServer, api: Any, clocks: Clocks
) -> None:
    r = _reviewer(api, clocks, request_timeout_s=2)
    apiserver.stop()

    with pytest.raises(TokenReviewUnavailable):
        await _verify(r, "tok")


def test_only_service_account_users_are_accepted(api: Any, clocks: Clocks) -> None:
    r = _reviewer(api, clocks)
    status = {"authenticated": True, "audiences": ["legation"],
              "user": {"username": "kubernetes-admin", "groups": ["system:masters"]}}

    with pytest.raises(CredentialError, match="not to a service account") as err:
        r._interpret(status)

    assert err.value.code is CredentialCode.UNAUTHENTICATED


def test_an_answer_without_our_audience_is_refused(api: Any, clocks: Clocks) -> None:
    """An authenticator that is not audience-aware answers with no status.audiences: the
    token is then only good for the API server itself."""
    r = _reviewer(api, clocks)
    status = {"authenticated": True,
              "user": {"username": "system:serviceaccount:shop:catalog"}}

    with pytest.raises(CredentialError, match="not valid for audience 'legation'"):
        r._interpret(status)
