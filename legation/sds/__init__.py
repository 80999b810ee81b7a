"""Workload identity: the CA, X.509 SVIDs, rotation, and xDS credentials.

- `ca.CertificateAuthority`: key material from `--ca-dir` (Istio's plug-in
  layout, a root made earlier, or a new self-signed root), workload and
  server certificates, the trust bundle, two-step root rotation.
- `issuer.CertificateIssuer`: one certificate per SPIFFE identity, issued on
  first use and re-issued at half its lifetime (with jitter) by `run()`,
  which calls `on_rotate(identity)` so the new `default` Secret is pushed.
- `tokens.TokenAuthority`: the ES256 tokens `legation bootstrap` embeds and
  the xDS servers verify (UNAUTHENTICATED / PERMISSION_DENIED).
- `metrics.SdsMetrics`: issuance counters and expiry gauges.

Sits beside the pipeline: produces `legation.model` identity values that
translators turn into Envoy Secrets. Imports `legation.model` only (never
`legation.xds` or `legation.sources`); no global state; time is injected.
"""

from legation.sds.ca import BACKDATE, CONTROL_PLANE_SERVICE_ACCOUNT, CertificateAuthority
from legation.sds.certs import KeyType
from legation.sds.clock import Clock, utc_now
from legation.sds.errors import CAError
from legation.sds.issuer import CertificateIssuer
from legation.sds.metrics import IssuedKind, SdsMetrics
from legation.sds.roots import RootInfo, RootState
from legation.sds.tokens import (
    AUTHORIZATION_METADATA_KEY,
    BEARER_PREFIX,
    DEFAULT_TOKEN_TTL,
    CredentialCode,
    CredentialError,
    TokenAuthority,
    TokenClaims,
    bearer_token,
)

__all__ = [
    "AUTHORIZATION_METADATA_KEY",
    "BACKDATE",
    "BEARER_PREFIX",
    "CONTROL_PLANE_SERVICE_ACCOUNT",
    "DEFAULT_TOKEN_TTL",
    "CAError",
    "CertificateAuthority",
    "CertificateIssuer",
    "Clock",
    "CredentialCode",
    "CredentialError",
    "IssuedKind",
    "KeyType",
    "RootInfo",
    "RootState",
    "SdsMetrics",
    "TokenAuthority",
    "TokenClaims",
    "bearer_token",
    "utc_now",
]
