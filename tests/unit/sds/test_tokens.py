"""xDS credentials: minting, verification, forgery, expiry, binding; fuzzed parser."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legation.security import CredentialCode, CredentialError, TokenAuthority, bearer_token

from .helpers import TD, FakeTime

UNAUTH, DENIED = CredentialCode.UNAUTHENTICATED, CredentialCode.PERMISSION_DENIED
NODE = {
    "node_namespace": "shop",
    "node_workload": "order-1",
    "workload_service_account": "order-sa",
}


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    return tmp_path / "ca"


@pytest.fixture
def tokens(ca_dir: Path, clock: FakeTime) -> TokenAuthority:
    return TokenAuthority.load_or_create(ca_dir, TD, clock=clock)


def _signing_key(ca_dir: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key((ca_dir / "xds-token-key.pem").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _kid(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


def _claims(tokens: TokenAuthority, clock: FakeTime, **over: Any) -> dict[str, Any]:
    now = int(clock.now.timestamp())
    claims: dict[str, Any] = {
        "iss": "legation",
        "aud": "legation-xds",
        "sub": "spiffe://cluster.local/ns/shop/sa/order-sa",
        "ns": "shop",
        "sa": "order-sa",
        "workload": "order-1",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "j1",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(ca_dir: Path, kid: str, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, _signing_key(ca_dir), algorithm="ES256", headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _refused(tokens: TokenAuthority, token: str | bytes, **node: str) -> CredentialError:
    with pytest.raises(CredentialError) as err:
        tokens.verify(token, **{**NODE, **node})
    return err.value


def test_round_trip(tokens: TokenAuthority, clock: FakeTime) -> None:
    token = tokens.mint("shop", "order-sa", "order-1")
    claims = tokens.verify(token, **NODE)
    assert str(claims.identity) == "spiffe://cluster.local/ns/shop/sa/order-sa"
    assert (claims.namespace, claims.service_account, claims.workload) == (
        "shop",
        "order-sa",
        "order-1",
    )
    assert claims.issued_at == claims.not_before == clock.now
    assert claims.expires_at == clock.now + timedelta(days=365)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "ns", "sa", "workload", "iat", "nbf", "exp", "jti"}
    assert (payload["iss"], payload["aud"]) == ("legation", "legation-xds")
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert tokens.mint("shop", "order-sa", "order-1") != token  # fresh jti


def test_key_file_is_private_and_reused(
    ca_dir: Path, tokens: TokenAuthority, clock: FakeTime
) -> None:
    assert stat.S_IMODE((ca_dir / "xds-token-key.pem").stat().st_mode) == 0o600
    token = tokens.mint("shop", "order-sa", "order-1")
    again = TokenAuthority.load_or_create(ca_dir, TD, clock=clock)
    assert again.verify(token, **NODE).workload == "order-1"
    assert again.public_key_pem == tokens.public_key_pem


def test_ttl_is_settable_and_expiry_is_enforced(tokens: TokenAuthority, clock: FakeTime) -> None:
    token = tokens.mint("shop", "order-sa", "order-1", ttl=timedelta(hours=1))
    clock.advance(timedelta(minutes=59))
    tokens.verify(token, **NODE)
    clock.advance(timedelta(minutes=1))
    err = _refused(tokens, token)
    assert err.code is UNAUTH and "expired" in err.reason


def test_not_yet_valid(tokens: TokenAuthority, clock: FakeTime) -> None:
    clock.advance(timedelta(hours=1))
    token = tokens.mint("shop", "order-sa", "order-1")
    clock.advance(timedelta(hours=-1))
    err = _refused(tokens, token)
    assert err.code is UNAUTH and "not valid before" in err.reason
    clock.advance(timedelta(minutes=59, seconds=31))  # within the 30 s leeway
    tokens.verify(token, **NODE)


def test_forged_by_another_key(tokens: TokenAuthority, tmp_path: Path, clock: FakeTime) -> None:
    forger = TokenAuthority.load_or_create(tmp_path / "forger", TD, clock=clock)
    err = _refused(tokens, forger.mint("shop", "order-sa", "order-1"))
    assert err.code is UNAUTH and "not signed with this control plane's token key" in err.reason
    # the forger copies our key id: the signature itself gives it away
    stranger = ec.generate_private_key(ec.SECP256R1())
    kid = _kid(tokens.mint("shop", "order-sa", "order-1"))
    forged = jwt.encode(_claims(tokens, clock), stranger, algorithm="ES256", headers={"kid": kid})
    err = _refused(tokens, forged)
    assert err.code is UNAUTH and "bad signature" in err.reason


def test_tampered_claims(tokens: TokenAuthority) -> None:
    header, payload, sig = tokens.mint("shop", "order-sa", "order-1").split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["sa"], claims["sub"] = "admin", "spiffe://cluster.local/ns/shop/sa/admin"
    tampered = ".".join([header, _b64(json.dumps(claims).encode()), sig])
    err = _refused(tokens, tampered, workload_service_account="admin")
    assert err.code is UNAUTH and "bad signature" in err.reason


def test_alg_none(tokens: TokenAuthority, clock: FakeTime) -> None:
    kid = _kid(tokens.mint("shop", "order-sa", "order-1"))
    unsigned = jwt.encode(_claims(tokens, clock), "", algorithm="none", headers={"kid": kid})
    err = _refused(tokens, unsigned)
    assert err.code is UNAUTH and "algorithm 'none' is not accepted" in err.reason


def test_hs256_with_the_public_key_as_secret(tokens: TokenAuthority, clock: FakeTime) -> None:
    """Key confusion (RFC 8725 §2.1): an HMAC keyed with the published public key."""
    kid = _kid(tokens.mint("shop", "order-sa", "order-1"))
    signing_input = ".".join(
        [
            _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()),
            _b64(json.dumps(_claims(tokens, clock)).encode()),
        ]
    )
    mac = hmac.new(tokens.public_key_pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    err = _refused(tokens, f"{signing_input}.{_b64(mac)}")
    assert err.code is UNAUTH and "algorithm 'HS256' is not accepted" in err.reason


def test_other_asymmetric_algorithm_is_refused(tokens: TokenAuthority, clock: FakeTime) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    err = _refused(tokens, jwt.encode(_claims(tokens, clock), key, algorithm="RS256"))
    assert err.code is UNAUTH and "'RS256' is not accepted" in err.reason


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"aud": "someone-else"}, "wrong audience 'someone-else': expected 'legation-xds'"),
        ({"iss": "mallory"}, "wrong issuer 'mallory': expected 'legation'"),
        ({"jti": None}, "missing claim 'jti'"),
        ({"exp": None}, "missing claim 'exp'"),
        ({"workload": None}, "claim 'workload' must be a non-empty string"),
        ({"ns": 7}, "claim 'ns' must be a non-empty string"),
        ({"exp": "tomorrow"}, "'exp'"),
        ({"exp": 10**20}, "claim 'exp' is out of range"),
        ({"sub": "spiffe://cluster.local/payments"}, "claim 'sub' is not a workload SPIFFE ID"),
        ({"sa": "other-sa"}, "inconsistent claims"),
    ],
    ids=lambda v: (
        next(iter(v)) + "=" + str(next(iter(v.values()))) if isinstance(v, dict) else None
    ),
)
def test_validly_signed_but_wrong_claims_are_unauthenticated(
    tokens: TokenAuthority, ca_dir: Path, clock: FakeTime, over: dict[str, Any], reason: str
) -> None:
    kid = _kid(tokens.mint("shop", "order-sa", "order-1"))
    err = _refused(tokens, _sign(ca_dir, kid, _claims(tokens, clock, **over)))
    assert err.code is UNAUTH
    assert reason in err.reason


@pytest.mark.parametrize(
    ("node", "parts"),
    [
        ({"node_namespace": "billing"}, ["namespace 'shop'", "namespace 'billing'"]),
        ({"node_workload": "payment-1"}, ["workload 'order-1'", "workload 'payment-1'"]),
        (
            {"workload_service_account": "payment-sa"},
            ["service account 'order-sa'", "'payment-sa'", "shop/order-1"],
        ),
    ],
    ids=["namespace", "workload", "service-account"],
)
def test_mismatched_binding_is_permission_denied(
    tokens: TokenAuthority, node: dict[str, str], parts: list[str]
) -> None:
    err = _refused(tokens, tokens.mint("shop", "order-sa", "order-1"), **node)
    assert err.code is DENIED
    for part in parts:
        assert part in err.reason


def test_other_trust_domain_is_permission_denied(ca_dir: Path, clock: FakeTime) -> None:
    minted = TokenAuthority.load_or_create(ca_dir, "old.example", clock=clock).mint(
        "shop", "order-sa", "order-1"
    )
    err = _refused(TokenAuthority.load_or_create(ca_dir, TD, clock=clock), minted)
    assert err.code is DENIED and "'old.example'" in err.reason and "'cluster.local'" in err.reason


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", "empty"),
        (b"\xff\xfe", "not ASCII"),
        ("abc", "three base64url parts"),
        ("a.b.c", "malformed token header"),
        ("x" * 9000, "longer than"),
    ],
    ids=["empty", "binary", "one-part", "garbage", "huge"],
)
def test_malformed(tokens: TokenAuthority, token: str | bytes, reason: str) -> None:
    err = _refused(tokens, token)
    assert err.code is UNAUTH and reason in err.reason


def test_mint_validates_its_inputs(tokens: TokenAuthority) -> None:
    with pytest.raises(ValueError):
        tokens.mint("Shop!", "order-sa", "order-1")
    with pytest.raises(ValueError, match="workload name"):
        tokens.mint("shop", "order-sa", "")
    with pytest.raises(ValueError, match="positive"):
        tokens.mint("shop", "order-sa", "order-1", ttl=timedelta(0))


def test_bearer_token_from_grpc_metadata() -> None:
    assert (
        bearer_token([("user-agent", "envoy"), ("authorization", "Bearer abc.def.ghi")])
        == "abc.def.ghi"
    )
    assert bearer_token([("Authorization", b"Bearer t")]) == "t"
    with pytest.raises(CredentialError, match="no authorization metadata") as err:
        bearer_token([("user-agent", "envoy")])
    assert err.value.code is UNAUTH
    with pytest.raises(CredentialError, match="Bearer"):
        bearer_token([("authorization", "Basic dXNlcjpwYXNz")])


# -- fuzzing: whatever arrives, verify answers with CredentialError or claims ----------

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_CLAIMS = ["iss", "aud", "sub", "ns", "sa", "workload", "iat", "nbf", "exp", "jti"]
_claim_values = st.dictionaries(
    st.sampled_from([*_CLAIMS, "x"]),
    _json | st.integers(min_value=-(2**70), max_value=2**70),
    max_size=3,
)


def _only_credential_errors(tokens: TokenAuthority, token: str | bytes) -> None:
    try:
        tokens.verify(token, **NODE)
    except CredentialError as e:
        assert e.code in (UNAUTH, DENIED) and e.reason


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300) | st.text(max_size=300))
def test_fuzz_random_input(tokens: TokenAuthority, data: str | bytes) -> None:
    _only_credential_errors(tokens, data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(header=_json, payload=_json, sig=st.binary(max_size=80), raw=st.booleans())
def test_fuzz_jwt_shaped_garbage(
    tokens: TokenAuthority, header: object, payload: object, sig: bytes, raw: bool
) -> None:
    parts = [json.dumps(header).encode(), json.dumps(payload).encode()]
    if raw:  # not even JSON
        parts = [sig, sig[::-1]]
    _only_credential_errors(tokens, ".".join([*(_b64(p) for p in parts), _b64(sig)]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    changes=_claim_values,
    dropped=st.sets(st.sampled_from(_CLAIMS)),
    extra_header=st.dictionaries(st.sampled_from(["typ", "cty", "crit", "x"]), _json),
)
def test_fuzz_validly_signed_garbage_claims(
    tokens: TokenAuthority,
    ca_dir: Path,
    clock: FakeTime,
    changes: dict[str, Any],
    dropped: set[str],
    extra_header: dict[str, Any],
) -> None:
    """Signed with the real key: every claim check after the signature is exercised."""
    claims = {k: v for k, v in {**_claims(tokens, clock), **changes}.items() if k not in dropped}
    kid = _kid(tokens.mint("shop", "order-sa", "order-1"))
    payload = json.dumps(claims).encode()  # jwt.encode would refuse some of these claims
    token = jwt.api_jws.encode(
        payload, _signing_key(ca_dir), algorithm="ES256", headers={**extra_header, "kid": kid}
    )
    _only_credential_errors(tokens, token)
