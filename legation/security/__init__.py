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
- `rotation.RootRotation` and `rotation_state`: operable root rotation (phases,
  the operator's requests, what /debug/ca shows).
- `workload_secrets.WorkloadSecrets`: the SDS resources each proxy gets.

Imports model, translators and cache (see legation/__init__.py): it never talks
to the API server (legation.kube) nor knows xDS streams (legation.xds).

Sits beside the pipeline: produces `legation.model` identity values that
translators turn into Envoy Secrets. Imports `legation.model` only (never
`legation.xds` or `legation.sources`); no global state; time is injected.
"""

from legation.security.ca import BACKDATE, CONTROL_PLANE_SERVICE_ACCOUNT, CertificateAuthority
from legation.security.certs import KeyType
from legation.security.clock import Clock, utc_now
from legation.security.errors import CAError
from legation.security.issuer import CertificateIssuer
from legation.security.metrics import IssuedKind, SdsMetrics
from legation.security.roots import RootInfo, RootState
from legation.security.tokens import (
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
