"""A pod's projected service-account token as an xDS credential, checked by TokenReview.

With `--in-cluster`, a sidecar may authenticate its xDS stream with the token
kubelet projects into its pod for audience `legation` (a `serviceAccountToken`
projected volume with `audience: legation`), sent as `authorization: Bearer
<token>`. `TokenReviewer.verify` asks the API server (authentication.k8s.io/v1
TokenReview, `spec.audiences: ["legation"]`) who the token belongs to, then
binds it to what the node claims:

- UNAUTHENTICATED: the API server does not authenticate the token, or does not
  confirm our audience in `status.audiences` (an empty list means the token is
  only good for the API server itself; Kubernetes asks audience-aware clients
  to check this), or the user is not `system:serviceaccount:<ns>:<sa>`;
- PERMISSION_DENIED: the token's namespace is not the node's; the mesh has no
  pod by the node's name (the caller passes None) or that pod runs as another
  service account; or the token is bound to another pod
  (`authentication.kubernetes.io/pod-name` in `status.user.extra`).

A positive review is cached (bounded LRU, `cache_ttl_s`, never past the token's
own `exp`) so a fleet reconnecting at once costs one review per token;
concurrent reviews of the same token share one request. Failures are not
cached. An API server that cannot answer raises `TokenReviewUnavailable`: the
stream should fail UNAVAILABLE, so the proxy retries, rather than be refused.
See https://kubernetes.io/docs/reference/kubernetes-api/authentication-resources/token-review-v1/
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
import structlog
import urllib3
from kubernetes import client as k8s

from legation.security.tokens import CredentialCode, CredentialError

_log = structlog.get_logger("legation.kube.tokenreview")

AUDIENCE = "legation"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
_MAX_TOKEN_LENGTH = 16384


class TokenReviewUnavailable(Exception):
    """The API server could not review the token (down, timed out, or refused us)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReviewedToken:
    """Who the API server says a token belongs to."""

    namespace: str
    service_account: str
    pod: str = ""  # the pod the token is bound to ("" : not pod-bound)
    pod_uid: str = ""


class TokenReviewer:
    """Reviews tokens with the API server; `verify` binds them to a node (module doc)."""

    def __init__(
        self,
        api: Any,  # kubernetes.client.ApiClient
        *,
        audience: str = AUDIENCE,
        cache_ttl_s: float = 60.0,
        cache_size: int = 4096,
        max_parallel: int = 4,
        request_timeout_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._api = k8s.AuthenticationV1Api(api)
        self.audience = audience
        self._ttl = cache_ttl_s
        self._size = cache_size
        self._timeout = request_timeout_s
        self._monotonic, self._wall = monotonic, wall
        self._cache: OrderedDict[bytes, tuple[ReviewedToken, float]] = OrderedDict()
        self._inflight: dict[bytes, asyncio.Future[ReviewedToken]] = {}
        self._parallel = asyncio.Semaphore(max_parallel)  # the API client's pool is small
        self.reviews = 0  # TokenReviews sent (for tests and metrics)

    async def verify(
        self,
        token: str,
        *,
        node_namespace: str,
        node_workload: str,
        workload_service_account: str | None,
        workload_uid: str = "",
    ) -> ReviewedToken:
        """Review `token` and bind it to the node's pod; CredentialError otherwise.
        `workload_service_account` is the service account of the pod `node_workload` as the
        mesh knows it, or None when the mesh has no such pod; `workload_uid` its UID.

        A pod-bound token is bound to one pod *object*: a pod deleted and recreated under
        the same name has a new UID, and the old pod's token is refused, also while its
        review is still cached (the UID is compared on every call)."""
        who = await self.review(token)
        if who.namespace != node_namespace:
            raise _denied(f"the token belongs to namespace {who.namespace!r} but the node "
                          f"claims namespace {node_namespace!r}")
        if who.pod and who.pod != node_workload:
            raise _denied(f"the token is bound to pod {who.pod!r} but the node claims "
                          f"pod {node_workload!r}")
        if workload_service_account is None:
            raise _denied(f"no pod {node_namespace}/{node_workload} is known to the mesh")
        if who.pod_uid and workload_uid and who.pod_uid != workload_uid:
            raise _denied(f"the token is bound to pod {who.pod!r} with UID {who.pod_uid}, but "
                          f"pod {node_namespace}/{node_workload} is now UID {workload_uid} "
                          "(deleted and recreated): its token does not carry over")
        if who.service_account != workload_service_account:
            raise _denied(f"the token is for service account {who.service_account!r} but pod "
                          f"{node_namespace}/{node_workload} runs as "
                          f"{workload_service_account!r}")
        return who

    async def review(self, token: str) -> ReviewedToken:
        """Who `token` belongs to (cached); CredentialError UNAUTHENTICATED if nobody."""
        if not token or len(token) > _MAX_TOKEN_LENGTH:
            raise _unauthenticated("the token is empty or too long")
        key = hashlib.sha256(token.encode()).digest()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[1] > self._monotonic():
                self._cache.move_to_end(key)
                return hit[0]
            del self._cache[key]
        while (pending := self._inflight.get(key)) is not None:
            try:
                return await asyncio.shield(pending)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not pending.cancelled() or (task is not None and task.cancelling()):
                    raise  # we are being cancelled ourselves
                # the caller that was reviewing this token was cancelled: review it ourselves
        future: asyncio.Future[ReviewedToken] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            who = await self._review(token)
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning if nobody waits
            raise
        finally:
            del self._inflight[key]
        future.set_result(who)
        self._remember(key, who, token)
        return who

    # -- internals -----------------------------------------------------------------------

    async def _review(self, token: str) -> ReviewedToken:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [self.audience]}}
        async with self._parallel:
            self.reviews += 1
            try:
                resp = await asyncio.to_thread(
                    self._api.create_token_review, body, _preload_content=False,
                    _request_timeout=self._timeout)
                status = json.loads(resp.data).get("status") or {}
            except k8s.ApiException as exc:
                _log.warning("tokenreview.failed", status=exc.status, reason=exc.reason)
                raise TokenReviewUnavailable(
                    f"the API server answered the TokenReview with HTTP {exc.status} "
                    f"{exc.reason}") from None
            except (urllib3.exceptions.HTTPError, OSError, ValueError, AttributeError) as exc:
                _log.warning("tokenreview.failed", error=type(exc).__name__)
                raise TokenReviewUnavailable(
                    f"the TokenReview could not be sent: {type(exc).__name__}") from None
        return self._interpret(status)

    def _interpret(self, status: dict[str, Any]) -> ReviewedToken:
        if status.get("authenticated") is not True:
            error = str(status.get("error") or "not authenticated")[:200]
            raise _unauthenticated(f"the API server did not authenticate the token: {error}")
        if self.audience not in (status.get("audiences") or []):
            raise _unauthenticated(f"the token is not valid for audience {self.audience!r} "
                                   "(project it with `audience: legation`)")
        user = status.get("user") or {}
        username = str(user.get("username") or "")
        parts = username.removeprefix(SERVICE_ACCOUNT_PREFIX).split(":")
        if not username.startswith(SERVICE_ACCOUNT_PREFIX) or len(parts) != 2 or not all(parts):
            raise _unauthenticated(f"the token belongs to {username[:100]!r}, not to a "
                                   "service account (system:serviceaccount:<ns>:<name>)")
        extra = user.get("extra") or {}
        return ReviewedToken(namespace=parts[0], service_account=parts[1],
                             pod=_first(extra.get(POD_NAME_EXTRA)),
                             pod_uid=_first(extra.get(POD_UID_EXTRA)))

    def _remember(self, key: bytes, who: ReviewedToken, token: str) -> None:
        ttl = self._ttl
        exp = _unverified_exp(token)  # only shortens the cache lifetime; never trusted
        if exp is not None:
            ttl = min(ttl, exp - self._wall())
        if ttl <= 0:
            return
        self._cache[key] = (who, self._monotonic() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)


def _first(values: Any) -> str:
    return str(values[0]) if isinstance(values, list) and values else ""


def _unverified_exp(token: str) -> float | None:
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # not a JWT we can read: the cache TTL alone applies
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


def _unauthenticated(reason: str) -> CredentialError:
    return CredentialError(CredentialCode.UNAUTHENTICATED, reason)


def _denied(reason: str) -> CredentialError:
    return CredentialError(CredentialCode.PERMISSION_DENIED, reason)
