"""Who may open an xDS stream: the node's workload must match the stream's credential.

`NodeAuthenticator` is the `Authenticator` of `XdsServer` (stream.py calls it
with the first request's node, before anything is served). A stream carries
`authorization: Bearer <token>` gRPC metadata (`legation bootstrap` embeds
it); the token (`legation.security.tokens`) is bound to a namespace, workload and
service account. The stream is served only when the token is genuine and
current, its namespace and workload are the ones the node id names, and its
service account is the one the mesh gives that workload; so a proxy only
ever receives the configuration and certificate of the workload it proved
it is.

Refusals raise `StreamRejected`: UNAUTHENTICATED (no, malformed, forged,
expired token), PERMISSION_DENIED (a genuine token for another workload,
namespace or service account, or a node id naming no workload), or
UNAVAILABLE (the mesh is not loaded yet: the proxy retries). stream.py
aborts the call with it and counts it (`legation_xds_rejected_streams`);
here it is logged as `xds.auth_refused` (once per node and reason at
warning level, repeats at debug: Envoy retries every few seconds). The
refused stream never gets a response.

Policy per listener (`required`): the TLS listener requires a credential.
The plaintext listener accepts streams without one (development), but a
credential that is present is still checked; `--require-xds-credentials`
makes it required there too. Private keys on a plaintext listener are a
separate matter: see `keys.py`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
import structlog
from grpc import aio

from legation.security import (
    AUTHORIZATION_METADATA_KEY,
    CredentialError,
    TokenAuthority,
    bearer_token,
)
from legation.security.tokens import CredentialCode
from legation.xds.protocol import StreamRejected

_log = structlog.get_logger("legation.xds")

_MAX_REMEMBERED = 4096
_NO_SERVICE_ACCOUNT = "\x00"  # never a service account: checks a token without one


class MeshNotReady(Exception):
    """The control plane has not loaded the mesh yet (raised by a `NodeLookup`)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeClaim:
    """What a node id claims, and what the mesh says about it."""

    namespace: str
    workload: str
    service_account: str | None  # None: the mesh has no such workload


# node id -> its claim; None when the id names no workload at all; MeshNotReady.
NodeLookup = Callable[[str], NodeClaim | None]


class NodeAuthenticator:
    """The credential check of one xDS listener (module docstring)."""

    def __init__(
        self, tokens: TokenAuthority, lookup: NodeLookup, *, required: bool, listener: str
    ) -> None:
        self._tokens = tokens
        self._lookup = lookup
        self._required = required
        self._listener = listener
        self._logged: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def __call__(self, context: aio.ServicerContext, node: Any) -> None:
        metadata = tuple(context.invocation_metadata() or ())
        present = any(k.lower() == AUTHORIZATION_METADATA_KEY for k, _ in metadata)
        if not present and not self._required:
            return  # plaintext development stream: config, but no private key (keys.py)
        try:
            self._check(node.id, metadata)
        except CredentialError as e:
            code = grpc.StatusCode[e.code.value]
            self._refused(node.id, code, e.reason, context)
            raise StreamRejected(code, e.reason) from None
        except MeshNotReady:
            reason = "the control plane is still loading the mesh; retry"
            self._refused(node.id, grpc.StatusCode.UNAVAILABLE, reason, context)
            raise StreamRejected(grpc.StatusCode.UNAVAILABLE, reason) from None

    def _check(self, node_id: str, metadata: tuple[tuple[str, str | bytes], ...]) -> None:
        token = bearer_token(metadata)
        claim = self._lookup(node_id)
        if claim is None or claim.service_account is None:
            if claim is not None:  # a genuine token first; only then talk about the mesh
                self._verify(token, claim, _NO_SERVICE_ACCOUNT, only_authenticity=True)
            raise CredentialError(
                CredentialCode.PERMISSION_DENIED,
                f"node id {node_id[:128]!r} names no workload of the mesh: expected "
                "'<workload>.<namespace>' of a WorkloadEntry or Pod",
            )
        self._verify(token, claim, claim.service_account, only_authenticity=False)

    def _verify(
        self, token: str, claim: NodeClaim, service_account: str, *, only_authenticity: bool
    ) -> None:
        try:
            self._tokens.verify(
                token,
                node_namespace=claim.namespace,
                node_workload=claim.workload,
                workload_service_account=service_account,
            )
        except CredentialError as e:
            if not only_authenticity or e.code is CredentialCode.UNAUTHENTICATED:
                raise

    def _refused(
        self, node_id: str, code: grpc.StatusCode, reason: str, context: aio.ServicerContext
    ) -> None:
        key = (node_id, reason)
        first = key not in self._logged
        self._logged[key] = None
        self._logged.move_to_end(key)
        if len(self._logged) > _MAX_REMEMBERED:
            self._logged.popitem(last=False)
        log = _log.warning if first else _log.debug
        log(
            "xds.auth_refused",
            node=node_id[:256],
            listener=self._listener,
            code=code.name,
            reason=reason,
            peer=context.peer(),
        )
