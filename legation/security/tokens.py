"""xDS credentials: tokens the control plane mints and later verifies (PyJWT, ES256).

`legation bootstrap` embeds a token in a workload's Envoy bootstrap; Envoy
sends it as gRPC metadata `authorization: Bearer <token>` on every xDS
stream. The token is a JWT signed with an ECDSA P-256 key kept in
`--ca-dir/xds-token-key.pem` (created on first use, 0600), bound to the
workload's namespace, service account and name: claims `iss` "legation",
`aud` "legation-xds", `sub` its SPIFFE ID, `ns`, `sa`, `workload`, `iat`,
`nbf`, `exp`, `jti`.

`verify` answers with `TokenClaims` or raises `CredentialError`:
UNAUTHENTICATED when the token is missing, malformed, forged, expired, not
yet valid, or for another audience or issuer; PERMISSION_DENIED when a valid
token is bound to another namespace, workload or service account than the
node claims or the mesh says. The algorithm is pinned to ES256 and checked
against the header before PyJWT runs, so `alg: none`, HMAC with the public
key as secret (RFC 8725 §2.1, §3.1) and any other algorithm are refused.
Time checks use the injected clock, not PyJWT's.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from legation.model import SpiffeId, SpiffeIdError, validate_trust_domain
from legation.security import files
from legation.security.certs import key_to_pem, load_key
from legation.security.clock import Clock, utc_now
from legation.security.errors import CAError

AUTHORIZATION_METADATA_KEY = "authorization"  # gRPC metadata key Envoy sends the token in
BEARER_PREFIX = "Bearer "
TOKEN_KEY_FILE = "xds-token-key.pem"
TOKEN_ISSUER = "legation"
TOKEN_AUDIENCE = "legation-xds"
ALGORITHM = "ES256"
DEFAULT_TOKEN_TTL = timedelta(days=365)
MAX_TOKEN_LENGTH = 8192
NOT_BEFORE_LEEWAY = timedelta(seconds=30)  # a token minted on a host whose clock runs ahead

_REGISTERED = ("iss", "aud", "sub", "iat", "nbf", "exp", "jti")
_NAME = re.compile(r"[A-Za-z0-9._-]+")


class CredentialCode(StrEnum):
    """The gRPC status an xDS stream is refused with."""

    UNAUTHENTICATED = "UNAUTHENTICATED"
    PERMISSION_DENIED = "PERMISSION_DENIED"


class CredentialError(Exception):
    """A refused credential: `code` for the gRPC status, `reason` for logs and the peer."""

    def __init__(self, code: CredentialCode, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


def _unauthenticated(reason: str) -> CredentialError:
    return CredentialError(CredentialCode.UNAUTHENTICATED, reason)


def _denied(reason: str) -> CredentialError:
    return CredentialError(CredentialCode.PERMISSION_DENIED, reason)


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenClaims:
    identity: SpiffeId
    namespace: str
    service_account: str
    workload: str
    issued_at: datetime
    not_before: datetime
    expires_at: datetime
    token_id: str


def bearer_token(metadata: Iterable[tuple[str, str | bytes]]) -> str:
    """The token in `authorization: Bearer <token>` gRPC metadata; CredentialError if absent."""
    for key, value in metadata:
        if key.lower() != AUTHORIZATION_METADATA_KEY:
            continue
        text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
        if not text.startswith(BEARER_PREFIX):
            raise _unauthenticated(
                "the authorization metadata is not a 'Bearer <token>' credential"
            )
        return text[len(BEARER_PREFIX) :].strip()
    raise _unauthenticated("no credential: the stream carries no authorization metadata")


def _key_id(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()[:12]).decode("ascii")


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if not path.exists():
        fresh = ec.generate_private_key(ec.SECP256R1())
        files.create_exclusive(path, key_to_pem(fresh).encode(), mode=files.KEY_MODE)
        # Whoever won a concurrent creation, everyone uses the file's key.
    key = load_key(files.read_key_bytes(path), path)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CAError(f"{path}: must be an ECDSA P-256 key (tokens are signed with ES256)")
    return key


class TokenAuthority:
    """Mints and verifies the xDS credentials of one trust domain."""

    def __init__(
        self, *, key: ec.EllipticCurvePrivateKey, trust_domain: str, clock: Clock = utc_now
    ) -> None:
        try:
            validate_trust_domain(trust_domain)
        except SpiffeIdError as e:
            raise CAError(f"trust domain {trust_domain!r}: {e}") from None
        self._key = key
        self._public = key.public_key()
        self._kid = _key_id(key)
        self.trust_domain = trust_domain
        self._clock = clock

    @classmethod
    def load_or_create(
        cls, ca_dir: Path, trust_domain: str, *, clock: Clock = utc_now
    ) -> TokenAuthority:
        files.ensure_dir(ca_dir)
        return cls(
            key=_load_or_create_key(ca_dir / TOKEN_KEY_FILE), trust_domain=trust_domain, clock=clock
        )

    @property
    def public_key_pem(self) -> str:
        return self._public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode("ascii")

    def mint(
        self,
        namespace: str,
        service_account: str,
        workload: str,
        ttl: timedelta = DEFAULT_TOKEN_TTL,
    ) -> str:
        """A signed token binding `workload` in `namespace` to `service_account`."""
        identity = SpiffeId(
            trust_domain=self.trust_domain, namespace=namespace, service_account=service_account
        )
        if not _NAME.fullmatch(workload):
            raise ValueError(f"workload name {workload!r} must be letters, digits, '.', '-', '_'")
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        now = int(self._clock().timestamp())
        payload = {
            "iss": TOKEN_ISSUER,
            "aud": TOKEN_AUDIENCE,
            "sub": str(identity),
            "ns": namespace,
            "sa": service_account,
            "workload": workload,
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl.total_seconds()),
            "jti": secrets.token_urlsafe(16),
        }
        return jwt.encode(payload, self._key, algorithm=ALGORITHM, headers={"kid": self._kid})

    def verify(
        self,
        token: str | bytes,
        *,
        node_namespace: str,
        node_workload: str,
        workload_service_account: str,
    ) -> TokenClaims:
        """Authenticate `token`, then check it is bound to what the node claims and the
        mesh says; `CredentialError` otherwise."""
        claims = self._claims(self._decode(token))
        if claims.identity.trust_domain != self.trust_domain:
            raise _denied(
                f"the token is for trust domain {_show(claims.identity.trust_domain)} but "
                f"this control plane serves {_show(self.trust_domain)}"
            )
        if claims.namespace != node_namespace:
            raise _denied(
                f"the token is bound to namespace {_show(claims.namespace)} but the node "
                f"claims namespace {_show(node_namespace)}"
            )
        if claims.workload != node_workload:
            raise _denied(
                f"the token is bound to workload {_show(claims.workload)} but the node "
                f"claims workload {_show(node_workload)}"
            )
        if claims.service_account != workload_service_account:
            raise _denied(
                f"the token is bound to service account {_show(claims.service_account)} but "
                f"workload {_show(node_namespace + '/' + node_workload)} runs as service account "
                f"{_show(workload_service_account)} in the mesh"
            )
        return claims

    # -- internals --------------------------------------------------------------------

    def _decode(self, token: str | bytes) -> dict[str, Any]:
        """Signature, algorithm, audience and issuer; UNAUTHENTICATED with the reason."""
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise _unauthenticated("malformed token: not ASCII") from None
        if not isinstance(token, str) or not token:
            raise _unauthenticated("no credential: the token is empty")
        if len(token) > MAX_TOKEN_LENGTH:
            raise _unauthenticated(f"malformed token: longer than {MAX_TOKEN_LENGTH} bytes")
        if token.count(".") != 2:
            raise _unauthenticated(
                "malformed token: expected three base64url parts separated by '.'"
            )
        try:
            header = jwt.get_unverified_header(token)
        except Exception as e:  # attacker-controlled bytes: any parse failure is a refusal
            raise _unauthenticated(f"malformed token header: {_clip(e)}") from None
        alg = header.get("alg")
        if alg != ALGORITHM:
            raise _unauthenticated(
                f"algorithm {_show(alg)} is not accepted; tokens are signed with {ALGORITHM}"
            )
        if header.get("kid") != self._kid:
            raise _unauthenticated(
                "the token was not signed with this control plane's token key "
                f"(key id {_show(header.get('kid'))}, expected {_show(self._kid)})"
            )
        try:
            return jwt.decode(
                token,
                self._public,
                algorithms=[ALGORITHM],
                audience=TOKEN_AUDIENCE,
                issuer=TOKEN_ISSUER,
                options={
                    "require": list(_REGISTERED),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise _unauthenticated(
                "bad signature: the token does not verify with this control plane's token key"
            ) from None
        except jwt.InvalidAudienceError:
            raise _unauthenticated(
                f"wrong audience {_show(_peek(token, 'aud'))}: expected {_show(TOKEN_AUDIENCE)}"
            ) from None
        except jwt.InvalidIssuerError:
            raise _unauthenticated(
                f"wrong issuer {_show(_peek(token, 'iss'))}: expected {_show(TOKEN_ISSUER)}"
            ) from None
        except jwt.MissingRequiredClaimError as e:
            raise _unauthenticated(f"missing claim {e.claim!r}") from None
        except jwt.PyJWTError as e:
            raise _unauthenticated(f"invalid token: {_clip(e)}") from None
        except Exception as e:  # attacker-controlled bytes: any parse failure is a refusal
            raise _unauthenticated(f"malformed token: {type(e).__name__}") from None

    def _claims(self, payload: dict[str, Any]) -> TokenClaims:
        """Types, times (injected clock) and self-consistency of the signed claims."""
        strings = {k: payload.get(k) for k in ("sub", "ns", "sa", "workload", "jti")}
        for name, value in strings.items():
            if not isinstance(value, str) or not value:
                raise _unauthenticated(f"claim {name!r} must be a non-empty string")
        iat, nbf, exp = (_timestamp(payload, k) for k in ("iat", "nbf", "exp"))
        now = self._clock()
        if exp <= now:
            raise _unauthenticated(f"the token expired at {exp.isoformat()}")
        if nbf > now + NOT_BEFORE_LEEWAY:
            raise _unauthenticated(f"the token is not valid before {nbf.isoformat()}")
        try:
            identity = SpiffeId.parse(str(strings["sub"]))
        except SpiffeIdError as e:
            raise _unauthenticated(f"claim 'sub' is not a workload SPIFFE ID: {_clip(e)}") from None
        ns, sa = str(strings["ns"]), str(strings["sa"])
        if (identity.namespace, identity.service_account) != (ns, sa):
            raise _unauthenticated(
                f"inconsistent claims: sub {_show(str(identity))} but "
                f"ns {_show(ns)} and sa {_show(sa)}"
            )
        return TokenClaims(
            identity=identity,
            namespace=ns,
            service_account=sa,
            workload=str(strings["workload"]),
            issued_at=iat,
            not_before=nbf,
            expires_at=exp,
            token_id=str(strings["jti"]),
        )


def _timestamp(payload: dict[str, Any], name: str) -> datetime:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _unauthenticated(f"claim {name!r} must be a number of seconds since the epoch")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError):
        raise _unauthenticated(f"claim {name!r} is out of range") from None


def _show(value: object, limit: int = 64) -> str:
    """A value for a reason: ASCII-escaped and clipped (tokens and node ids are untrusted)."""
    text = ascii(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _clip(error: Exception, limit: int = 120) -> str:
    text = ascii(str(error))[1:-1]
    return text if len(text) <= limit else text[:limit] + "..."


def _peek(token: str, claim: str) -> object:
    """A claim of a token whose signature already verified (for error messages only)."""
    try:
        payload = jwt.decode(token, options={"verify_signature": False})
    except Exception:  # only used to word a message
        return None
    return payload.get(claim) if isinstance(payload, dict) else None
