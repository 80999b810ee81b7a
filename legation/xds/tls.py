"""The TLS xDS listener's server certificate, renewed without a restart.

`ServerCertificate` holds the certificate the control plane presents on the
authenticated xDS port (issued by the CA, `CertificateAuthority.issue_server`,
with the DNS and IP names proxies dial: see `legation bootstrap --xds-tls`).
gRPC asks for the current certificate at every TLS handshake
(`grpc.dynamic_ssl_server_credentials`); past half its lifetime a new one is
issued and used from the next handshake on, so open streams are untouched.
The fetcher runs on gRPC's own threads: it is short and locked.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import grpc
import structlog

from legation.model import WorkloadCertificate
from legation.security.clock import Clock

_log = structlog.get_logger("legation.xds")


class ServerCertificate:
    """`kept`: a certificate kept from the last run, reused until its half-life
    (security/servercert.py); `keep` is told of every certificate issued."""

    def __init__(self, issue: Callable[[], WorkloadCertificate], *, clock: Clock,
                 kept: WorkloadCertificate | None = None,
                 keep: Callable[[WorkloadCertificate], None] | None = None) -> None:
        self._issue = issue
        self._clock = clock
        self._keep = keep
        self._lock = threading.Lock()
        if kept is not None:
            self._cert = kept
            self._renew_at = kept.not_before + kept.lifetime / 2
        else:
            self._cert = self._issued()
            self._renew_at = self._half_life(self._cert)

    @property
    def current(self) -> WorkloadCertificate:
        with self._lock:
            return self._cert

    def credentials(self) -> grpc.ServerCredentials:
        """Server-side TLS (no client certificate: proxies prove who they are with a token)."""
        return grpc.dynamic_ssl_server_credentials(
            self._configuration(self._cert), self._fetch, require_client_authentication=False
        )

    def _fetch(self) -> grpc.ServerCertificateConfiguration | None:
        """gRPC's per-handshake question: None keeps the current certificate."""
        with self._lock:
            if self._clock() < self._renew_at:
                return None
            try:
                cert = self._issued()
            except Exception as e:  # never fail a handshake over a renewal; retry next time
                _log.error("xds.server-certificate-renewal-failed", error=str(e))
                return None
            self._cert, self._renew_at = cert, self._half_life(cert)
        _log.info("xds.server-certificate-renewed", not_after=cert.not_after.isoformat())
        return self._configuration(cert)

    def _issued(self) -> WorkloadCertificate:
        cert = self._issue()
        if self._keep is not None:
            try:
                self._keep(cert)
            except Exception as e:  # serving matters more than keeping
                _log.warning("xds.server-certificate-not-kept", error=str(e))
        return cert

    def _half_life(self, cert: WorkloadCertificate) -> datetime:
        now = self._clock()
        return now + (cert.not_after - now) / 2

    @staticmethod
    def _configuration(cert: WorkloadCertificate) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration(
            [(cert.key_pem.encode("ascii"), cert.chain_pem.encode("ascii"))]
        )
