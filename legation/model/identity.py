"""Workload identity: SPIFFE IDs, workload certificates and the trust bundle.

Plain values. `legation.security` produces them (the CA issues, the issuer caches
and rotates); translators turn them into the Envoy Secrets `default` (the
workload's chain and key) and `ROOTCA` (the trust bundle). Nothing here does
cryptography: PEM text is carried as text.

A Legation identity is always `spiffe://<trust-domain>/ns/<namespace>/sa/<sa>`
(Istio's convention). Validation follows the SPIFFE ID specification,
https://github.com/spiffe/spiffe/blob/main/standards/SPIFFE-ID.md:
- §2: the scheme is exactly `spiffe`; no query, fragment, userinfo or port.
- §2.1: the trust domain is non-empty, lowercase, only `[a-z0-9.-_]`, no
  percent-encoding (so never an IPv6 literal); at most 255 bytes (§2.3).
- §2.2: path segments are non-empty, never `.` or `..`, only `[a-zA-Z0-9.-_]`,
  no percent-encoding, no trailing `/`.
- §2.3: the whole URI is at most 2048 bytes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from legation.model.mesh import Workload

SPIFFE_SCHEME = "spiffe://"
MAX_SPIFFE_ID_LENGTH = 2048  # SPIFFE-ID.md §2.3
MAX_TRUST_DOMAIN_LENGTH = 255  # SPIFFE-ID.md §2.3 (RFC 3986 host)

_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]+")
_SEGMENT = re.compile(r"[a-zA-Z0-9._-]+")


class SpiffeIdError(ValueError):
    """Text that is not a valid Legation SPIFFE ID; the message says why."""


def validate_trust_domain(trust_domain: str) -> None:
    """Raise `SpiffeIdError` unless `trust_domain` is valid (SPIFFE-ID.md §2.1)."""
    if not trust_domain:
        raise SpiffeIdError("trust domain must not be empty")
    if len(trust_domain) > MAX_TRUST_DOMAIN_LENGTH:
        raise SpiffeIdError(f"trust domain is longer than {MAX_TRUST_DOMAIN_LENGTH} bytes")
    if not _TRUST_DOMAIN.fullmatch(trust_domain):
        raise SpiffeIdError(
            f"trust domain {trust_domain!r} may contain only lowercase letters, digits, "
            "'.', '-' and '_'"
        )


def _validate_segment(what: str, segment: str) -> None:
    if not segment:
        raise SpiffeIdError(f"{what} must not be empty")
    if segment in (".", ".."):
        raise SpiffeIdError(f"{what} must not be the relative path segment {segment!r}")
    if not _SEGMENT.fullmatch(segment):
        raise SpiffeIdError(
            f"{what} {segment!r} may contain only letters, digits, '.', '-' and '_'"
        )


@dataclass(frozen=True, slots=True, kw_only=True, order=True)
class SpiffeId:
    """`spiffe://<trust_domain>/ns/<namespace>/sa/<service_account>`; validated on creation."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        validate_trust_domain(self.trust_domain)
        _validate_segment("namespace", self.namespace)
        _validate_segment("service account", self.service_account)
        if len(str(self)) > MAX_SPIFFE_ID_LENGTH:
            raise SpiffeIdError(f"SPIFFE ID is longer than {MAX_SPIFFE_ID_LENGTH} bytes")

    @classmethod
    def parse(cls, text: str) -> SpiffeId:
        """Parse `spiffe://td/ns/<ns>/sa/<sa>`; `SpiffeIdError` says what is wrong."""
        if len(text) > MAX_SPIFFE_ID_LENGTH:
            raise SpiffeIdError(f"SPIFFE ID is longer than {MAX_SPIFFE_ID_LENGTH} bytes")
        if not text.startswith(SPIFFE_SCHEME):
            raise SpiffeIdError(f"{text!r} does not start with {SPIFFE_SCHEME!r}")
        trust_domain, slash, path = text[len(SPIFFE_SCHEME) :].partition("/")
        validate_trust_domain(trust_domain)
        if not slash:
            raise SpiffeIdError(
                f"{text!r} has no path; expected /ns/<namespace>/sa/<service-account>"
            )
        segments = path.split("/")
        for i, segment in enumerate(segments):
            _validate_segment(f"path segment {i + 1}", segment)
        if len(segments) != 4 or segments[0] != "ns" or segments[2] != "sa":
            raise SpiffeIdError(f"{text!r}: expected the path /ns/<namespace>/sa/<service-account>")
        return cls(trust_domain=trust_domain, namespace=segments[1], service_account=segments[3])

    @classmethod
    def for_workload(cls, workload: Workload, *, trust_domain: str) -> SpiffeId:
        """The identity a workload runs as: its namespace and service account."""
        return cls(
            trust_domain=trust_domain,
            namespace=workload.namespace,
            service_account=workload.service_account,
        )

    def __str__(self) -> str:
        return f"{SPIFFE_SCHEME}{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadCertificate:
    """An X.509 SVID and its private key, as PEM.

    `chain_pem` is the leaf first, then any intermediates up to (not
    necessarily including) a trusted root: what Envoy's `tls_certificate`
    `certificate_chain` carries. The key is kept out of `repr` so it never
    lands in a log line.
    """

    identity: SpiffeId
    chain_pem: str
    key_pem: str = field(repr=False)
    not_before: datetime
    not_after: datetime
    serial: int

    @property
    def lifetime(self) -> timedelta:
        return self.not_after - self.not_before


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustBundle:
    """PEM of every currently trusted root, oldest first (Envoy's `ROOTCA` secret)."""

    roots_pem: tuple[str, ...]

    @property
    def pem(self) -> str:
        """All roots concatenated: Envoy's `trusted_ca` inline string."""
        return "".join(r if r.endswith("\n") else r + "\n" for r in self.roots_pem)
