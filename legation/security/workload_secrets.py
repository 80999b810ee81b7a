"""The SDS resources of each proxy: its identity's ``default`` secret and ``ROOTCA``.

Between the CA/issuer (`legation.security`) and the pipeline: for a connecting
proxy, the SPIFFE identity of its workload (namespace + service account,
never anything the proxy says about itself), that identity's current
certificate from the issuer (issued on first use, shared by every proxy of
the identity), and the trust bundle. Each becomes a `Resource` once per
certificate (per bundle), and the same object goes into every snapshot that
needs it, so a certificate is serialized once however many proxies share it.

It also remembers which connected node holds which identity, so that a
rotation republishes only the proxies of the rotated identity, and the
issuer stops renewing an identity when its last proxy disconnects.
Thread-safe: the pipeline builds snapshots in a worker thread.
"""

from __future__ import annotations

import threading

import structlog

from legation.cache import SECRET, Resource
from legation.model import SpiffeId, SpiffeIdError, Workload
from legation.security import CAError, CertificateAuthority, CertificateIssuer
from legation.translators.secrets import root_secret, workload_secret

_log = structlog.get_logger("legation.security")


class WorkloadSecrets:
    def __init__(self, issuer: CertificateIssuer, ca: CertificateAuthority) -> None:
        self._issuer = issuer
        self._ca = ca
        self._lock = threading.Lock()
        self._certs: dict[SpiffeId, tuple[int, Resource]] = {}  # identity -> (serial, default)
        self._root: tuple[str, Resource] | None = None  # (bundle PEM, ROOTCA)
        self._nodes: dict[str, SpiffeId] = {}  # node id -> identity it was given

    def resources_for(self, node_id: str, workload: Workload) -> list[Resource]:
        """``default`` (the workload's identity) and ``ROOTCA`` for `node_id`."""
        try:
            identity = SpiffeId.for_workload(workload, trust_domain=self._ca.trust_domain)
        except SpiffeIdError as e:
            _log.warning("sds.identity-invalid", node=node_id, error=str(e))
            return [self._root_resource()]
        try:
            cert = self._issuer.certificate(identity)
        except CAError as e:  # e.g. the signer expired: the proxy waits, the rest goes on
            _log.error("sds.issue-failed", node=node_id, identity=str(identity), error=str(e))
            return [self._root_resource()]
        with self._lock:
            self._nodes[node_id] = identity
            cached = self._certs.get(identity)
            if cached is None or cached[0] != cert.serial:
                secret = workload_secret(cert)
                cached = (cert.serial, Resource.of(SECRET, secret.name, secret))
                self._certs[identity] = cached
        return [cached[1], self._root_resource()]

    def nodes_of(self, identity: SpiffeId) -> list[str]:
        """The nodes last given `identity`'s certificate."""
        with self._lock:
            return sorted(n for n, i in self._nodes.items() if i == identity)

    def release(self, node_id: str) -> None:
        """`node_id` disconnected: forget it; stop renewing an identity nobody holds."""
        with self._lock:
            identity = self._nodes.pop(node_id, None)
            if identity is None or identity in self._nodes.values():
                return
            self._certs.pop(identity, None)
        self._issuer.forget(identity)

    def _root_resource(self) -> Resource:
        bundle = self._ca.trust_bundle()
        with self._lock:
            if self._root is None or self._root[0] != bundle.pem:
                secret = root_secret(bundle)
                self._root = (bundle.pem, Resource.of(SECRET, secret.name, secret))
            return self._root[1]
