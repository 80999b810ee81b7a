"""Composition for `--in-cluster`: the CA from the cluster's Secret, and xDS streams
authenticated with the pods' own service-account tokens (TokenReview).

Wiring only, like `app/security.py`; the behaviour lives in `legation.kube.secretstore`
(the CA Secret), `legation.kube.tokenreview` (TokenReview) and
`legation.xds.auth` (Legation's own tokens).

- `materialize_ca` runs before the CA is loaded: it settles the Secret
  `legation-ca` (or Istio's `cacerts`) of the control plane's namespace and
  copies it into `--ca-dir`, which `CertificateAuthority.load_or_create` then
  reads as usual.
- `TokenReviewAuthenticator` wraps the authenticator of an xDS listener: a
  stream whose bearer token was not issued by Legation (a projected
  service-account token, issuer: the cluster) is checked with TokenReview and
  bound to the pod its node id names; every other stream (a Legation token, or
  none) goes to the wrapped authenticator unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import jwt
import structlog
from grpc import aio

from legation.kube.secretstore import CASecretStore, Materialized
from legation.kube.tokenreview import TokenReviewer, TokenReviewUnavailable
from legation.model import MeshSnapshot
from legation.security import AUTHORIZATION_METADATA_KEY, CredentialError, bearer_token
from legation.security.tokens import TOKEN_ISSUER
from legation.translators import names
from legation.xds.protocol import StreamRejected
from legation.xds.stream import Authenticator

_log = structlog.get_logger("legation.app.incluster")


def materialize_ca(api: Any, *, namespace: str, ca_dir: Path) -> Materialized:
    """Copy the cluster's CA Secret into `ca_dir` (creating it once; see secretstore.py)."""
    return CASecretStore(api, namespace=namespace).materialize(ca_dir)


def is_legation_token(token: str) -> bool:
    """True for a token Legation minted (issuer `legation`), False for any other JWT.
    Only routes the token: whichever path it takes verifies it in full."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # not a JWT: let Legation's own check refuse it with its reason
        return True
    return not isinstance(claims, dict) or claims.get("iss") == TOKEN_ISSUER


class TokenReviewAuthenticator:
    """An xDS listener's authenticator that also accepts pods' service-account tokens."""

    def __init__(
        self,
        inner: Authenticator | None,
        reviewer: TokenReviewer,
        mesh: Callable[[], MeshSnapshot | None],  # None: not loaded yet
        *,
        listener: str,
    ) -> None:
        self._inner = inner
        self._reviewer = reviewer
        self._mesh = mesh
        self._listener = listener

    async def __call__(self, context: aio.ServicerContext, node: Any) -> None:
        metadata = tuple(context.invocation_metadata() or ())
        present = any(k.lower() == AUTHORIZATION_METADATA_KEY for k, _ in metadata)
        token = _token(metadata) if present else ""
        if not token or is_legation_token(token):
            if self._inner is not None:
                await self._inner(context, node)
            return
        try:
            await self._review(token, str(node.id))
        except CredentialError as e:
            self._refuse(node.id, grpc.StatusCode[e.code.value], e.reason)
        except TokenReviewUnavailable as e:
            self._refuse(node.id, grpc.StatusCode.UNAVAILABLE, f"{e}; retry")

    async def _review(self, token: str, node_id: str) -> None:
        mesh = self._mesh()
        if mesh is None:
            raise TokenReviewUnavailable("the control plane is still loading the mesh")
        parsed = names.parse_node_id(node_id)
        if parsed is None:
            await self._reviewer.review(token)  # a genuine token first, then the node id
            raise StreamRejected(grpc.StatusCode.PERMISSION_DENIED,
                                 f"node id {node_id[:128]!r} names no pod: expected "
                                 "'<pod>.<namespace>' or Istio's sidecar~<ip>~<pod>.<ns>~...")
        name, namespace = parsed
        workload = mesh.workload(namespace, name)
        who = await self._reviewer.verify(
            token, node_namespace=namespace, node_workload=name,
            workload_service_account=workload.service_account if workload else None,
            workload_uid=workload.uid if workload else "")
        _log.debug("xds.tokenreview_accepted", node=node_id[:256], listener=self._listener,
                   service_account=f"{who.namespace}/{who.service_account}")

    def _refuse(self, node_id: Any, code: grpc.StatusCode, reason: str) -> None:
        # stream.py logs a refusal once per node and reason, and counts it
        _log.debug("xds.auth_refused", node=str(node_id)[:256], listener=self._listener,
                   code=code.name, reason=reason, via="tokenreview")
        raise StreamRejected(code, reason)


def _token(metadata: tuple[tuple[str, str | bytes], ...]) -> str:
    try:
        return bearer_token(metadata)
    except CredentialError:
        return ""  # malformed: the wrapped authenticator refuses it with its reason
