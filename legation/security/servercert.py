"""The TLS xDS listener's certificate, kept in `--ca-dir` across restarts.

`xds/tls.py` renews the listener's certificate at half its lifetime. Issued
afresh at every start, it would come from whichever root signs *now*: after
a root rotation, a restart switched the listener to the new root at once,
and Envoys whose bootstrap trusted only the old root could no longer connect
(issue 13), although the documented schedule is "at its half-life". So the
certificate is kept (`xds-server.pem`, and its key `xds-server-key.pem`,
mode 0600) and reused at start while it is still before its half-life, is
issued by a root of the current trust bundle, names exactly the DNS names
and IP addresses wanted now, and matches its key. Anything else gets a
fresh certificate, which is then kept.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature

from legation.model import SpiffeId, SpiffeIdError, TrustBundle, WorkloadCertificate
from legation.security import files
from legation.security.certs import load_certs, load_key, matches_key
from legation.security.errors import CAError

_log = structlog.get_logger("legation.security.servercert")

CERT_FILE = "xds-server.pem"
KEY_FILE = "xds-server-key.pem"


class KeptServerCertificate:
    def __init__(self, directory: Path, *, dns: Sequence[str], ips: Sequence[str]) -> None:
        self._cert, self._key = directory / CERT_FILE, directory / KEY_FILE
        self._dns = frozenset(dns)
        self._ips = frozenset(ipaddress.ip_address(i) for i in ips)

    def load(self, bundle: TrustBundle, now: datetime) -> WorkloadCertificate | None:
        """The kept certificate when it may still serve (module docstring), else None."""
        if not self._cert.exists() or not self._key.exists():
            return None
        try:
            chain_pem = files.read_bytes(self._cert)
            key_pem = files.read_key_bytes(self._key)
            chain = load_certs(chain_pem, self._cert)
            key = load_key(key_pem, self._key)
        except CAError as e:
            _log.warning("xds.server-certificate-unreadable", error=str(e))
            return None
        leaf = chain[0]
        why = self._unusable(leaf, bundle, now) or (
            None if matches_key(leaf, key) else "its key does not match")
        if why is not None:
            _log.info("xds.server-certificate-reissued", reason=why)
            return None
        try:
            uri = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
                .get_values_for_type(x509.UniformResourceIdentifier)
            identity = SpiffeId.parse(uri[0])
        except (x509.ExtensionNotFound, IndexError, SpiffeIdError):
            return None
        return WorkloadCertificate(
            identity=identity, chain_pem=chain_pem.decode(), key_pem=key_pem.decode(),
            not_before=leaf.not_valid_before_utc, not_after=leaf.not_valid_after_utc,
            serial=leaf.serial_number)

    def save(self, cert: WorkloadCertificate) -> None:
        files.replace(self._key, cert.key_pem.encode(), mode=0o600)
        files.replace(self._cert, cert.chain_pem.encode(), mode=0o644)

    def _unusable(self, leaf: x509.Certificate, bundle: TrustBundle, now: datetime
                  ) -> str | None:
        lifetime = leaf.not_valid_after_utc - leaf.not_valid_before_utc
        if now >= leaf.not_valid_before_utc + lifetime / 2:
            return "past its half-life"
        try:
            san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return "it has no subject alternative names"
        if (frozenset(san.get_values_for_type(x509.DNSName)) != self._dns
                or frozenset(san.get_values_for_type(x509.IPAddress)) != self._ips):
            return "the names it must carry changed"
        for pem in bundle.roots_pem:
            root = x509.load_pem_x509_certificate(pem.encode())
            try:
                leaf.verify_directly_issued_by(root)
                return None
            except (ValueError, TypeError, InvalidSignature):
                continue
        return "no root of the trust bundle issued it"
