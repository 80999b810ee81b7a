"""`legation grpc-agent`: the certificate files of a proxyless gRPC workload, kept current.

gRPC's xDS client reads no SDS (gRFC A29): it takes its certificate, key and
roots from a certificate provider its bootstrap declares, here `file_watcher`
instance ``default`` over three files in a directory (Istio's names:
``cert-chain.pem``, ``key.pem``, ``root-cert.pem``). The agent fills that
directory: it opens an ADS stream to Legation's TLS xDS listener with the
workload's credential, as the workload's proxyless node, subscribes to the
``default`` and ``ROOTCA`` secrets, writes each update (atomically, the key
0600) and ACKs it. A renewed certificate or a root rotation reaches the files
as one more response, and gRPC re-reads them every `GRPC_CERT_REFRESH`. The
stream also keeps the identity's certificate renewed (the issuer renews the
identities of connected nodes). A response it cannot use is NACKed with the
reason, and the files keep what they had.

The stream reconnects with jittered backoff; `run` returns only when cancelled.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import structlog
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2
from grpc import aio

from legation.bootstrap import GRPC_CERT_FILE as CERT_FILE
from legation.bootstrap import GRPC_KEY_FILE as KEY_FILE
from legation.bootstrap import GRPC_ROOTS_FILE as ROOTS_FILE
from legation.cache import SECRET
from legation.security import AUTHORIZATION_METADATA_KEY
from legation.translators import names

_log = structlog.get_logger("legation.grpc_agent")

_ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
_BACKOFF_S = (0.5, 30.0)


class SecretRejected(ValueError):
    """A secrets response the agent cannot write (NACKed with this message)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    chain_pem: str
    key_pem: str
    roots_pem: str


def unpack_secrets(resources: Iterable[Any]) -> dict[str, secret_pb2.Secret]:
    """name -> Secret of a response's resources (`Any`)."""
    found: dict[str, secret_pb2.Secret] = {}
    for packed in resources:
        secret = secret_pb2.Secret()
        if not packed.Unpack(secret):
            raise SecretRejected(f"a resource of type {packed.type_url}, expected a Secret")
        found[secret.name] = secret
    return found


def credentials_from(found: Mapping[str, secret_pb2.Secret]) -> Credentials:
    """The files' contents from ``default`` and ``ROOTCA``."""
    workload, roots = found.get(names.WORKLOAD_SECRET), found.get(names.ROOT_SECRET)
    if workload is None or roots is None:
        raise SecretRejected(
            "expected both secrets 'default' and 'ROOTCA', got "
            + (", ".join(sorted(found)) or "none"))
    chain = _text(workload.tls_certificate.certificate_chain)
    key = _text(workload.tls_certificate.private_key)
    ca = _text(roots.validation_context.trusted_ca)
    for what, pem, marker in (("default certificate_chain", chain, "CERTIFICATE"),
                              ("default private_key", key, "PRIVATE KEY"),
                              ("ROOTCA trusted_ca", ca, "CERTIFICATE")):
        if f"-----BEGIN {marker}" not in pem and f"-----BEGIN EC {marker}" not in pem:
            raise SecretRejected(f"{what} holds no inline PEM {marker}")
    return Credentials(chain_pem=chain, key_pem=key, roots_pem=ca)


def _text(source: base_pb2.DataSource) -> str:
    if source.HasField("inline_string"):
        return str(source.inline_string)
    if source.HasField("inline_bytes"):
        return bytes(source.inline_bytes).decode("utf-8", "replace")
    return ""


def write_credentials(cert_dir: Path, creds: Credentials) -> bool:
    """Write what changed, each file replaced atomically (roots first, so a new chain is
    never read against old roots; the key 0600). True when anything changed."""
    cert_dir.mkdir(parents=True, exist_ok=True)
    changed = False
    for name, text, mode in ((ROOTS_FILE, creds.roots_pem, 0o644),
                             (KEY_FILE, creds.key_pem, 0o600),
                             (CERT_FILE, creds.chain_pem, 0o644)):
        path = cert_dir / name
        try:
            if path.read_text() == text:
                continue
        except OSError:
            pass
        tmp = cert_dir / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        tmp.replace(path)
        changed = True
    return changed


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentTarget:
    """Where and as whom the agent fetches its secrets."""

    address: str  # host:port of the TLS xDS listener
    node_id: str
    node_cluster: str
    token: Callable[[], str | None]  # the credential, asked for at each (re)connection
    ca_pem: str  # the xDS server's CA
    server_name: str = ""  # the name to check in the server certificate (default: host)


class CertAgent:
    def __init__(self, target: AgentTarget, cert_dir: Path, *,
                 on_written: Callable[[Credentials], None] | None = None) -> None:
        self._target = target
        self._dir = cert_dir
        self._on_written = on_written

    async def run(self) -> None:
        delay = _BACKOFF_S[0]
        while True:
            try:
                if await self._stream():
                    delay = _BACKOFF_S[0]  # it delivered: the next failure starts afresh
            except grpc.RpcError as e:
                code = e.code() if isinstance(e, aio.AioRpcError) else None
                _log.warning("grpc_agent.stream-failed", address=self._target.address,
                             code=code.name if code else "", details=_details(e))
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, _BACKOFF_S[1])

    async def _stream(self) -> bool:
        """One ADS stream until it ends; True when it delivered a usable response."""
        t = self._target
        options = [("grpc.ssl_target_name_override", t.server_name)] if t.server_name else []
        creds = grpc.ssl_channel_credentials(root_certificates=t.ca_pem.encode())
        delivered = False
        async with aio.secure_channel(t.address, creds, options=options) as channel:
            call = channel.stream_stream(
                _ADS, request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
            )(metadata=((AUTHORIZATION_METADATA_KEY, f"Bearer {t.token() or ''}"),))
            names_ = [names.WORKLOAD_SECRET, names.ROOT_SECRET]
            await call.write(discovery_pb2.DiscoveryRequest(
                node={"id": t.node_id, "cluster": t.node_cluster}, type_url=SECRET,
                resource_names=names_))
            version = ""
            held: dict[str, secret_pb2.Secret] = {}  # what this stream was sent so far
            async for resp in call:
                request = discovery_pb2.DiscoveryRequest(
                    type_url=SECRET, resource_names=names_, response_nonce=resp.nonce)
                try:
                    # Secrets are not a whole-set type: a response carries what changed
                    # (a renewed `default` alone) and the rest stays as held
                    merged = {**held, **unpack_secrets(resp.resources)}
                    creds_ = credentials_from(merged)
                    if write_credentials(self._dir, creds_):
                        _log.info("grpc_agent.written", dir=str(self._dir),
                                  version=resp.version_info)
                        if self._on_written is not None:
                            self._on_written(creds_)
                    held, version, delivered = merged, resp.version_info, True
                except (SecretRejected, OSError) as e:
                    _log.error("grpc_agent.rejected", version=resp.version_info, error=str(e))
                    request.error_detail.CopyFrom(status_pb2.Status(code=3, message=str(e)))
                request.version_info = version
                await call.write(request)
        return delivered


def _details(e: grpc.RpcError) -> str:
    return str(e.details() if isinstance(e, aio.AioRpcError) else e)[:300]
