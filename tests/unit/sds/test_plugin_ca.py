"""Istio's plug-in CA layout: an operator's intermediate signs, root-cert.pem is trusted."""

from __future__ import annotations

import dataclasses
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from legation.security import CAError, CertificateAuthority

from .helpers import (
    T0,
    TD,
    FakeTime,
    certs_of,
    ident,
    key_pem,
    leaf_of,
    make_ca_cert,
    openssl_verify,
    pem,
    verify_client,
    write_plugin_layout,
)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def test_intermediate_signs_and_chain_is_leaf_plus_cert_chain(
    tmp_path: Path, clock: FakeTime
) -> None:
    root, inter = write_plugin_layout(tmp_path)
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert ca.plugged_in
    cert = ca.issue(ident(), ttl=timedelta(hours=1))
    chain = certs_of(cert.chain_pem)
    assert chain[1:] == [inter, root]  # leaf + cert-chain.pem, as Istio sends it
    assert chain[0].issuer == inter.subject
    assert ca.trust_bundle().roots_pem == ((tmp_path / "root-cert.pem").read_text(),)
    verified = verify_client(cert, ca.trust_bundle().roots_pem, at=clock.now)
    assert verified.chain[-1] == root
    assert ca.root_expiry() == root.not_valid_after_utc
    assert ca.signer_expiry() == inter.not_valid_after_utc
    assert ca.roots() == ()
    assert not (tmp_path / "roots.json").exists()  # nothing written into the operator's dir


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_intermediate_chain_verifies_with_openssl(tmp_path: Path, clock: FakeTime) -> None:
    write_plugin_layout(tmp_path / "ca")
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain=TD, clock=clock)
    cert = ca.issue(ident(), ttl=timedelta(hours=1))
    done = openssl_verify(
        tmp_path, cert, ca.trust_bundle().roots_pem, at=clock.now, purpose="sslclient"
    )
    assert done.returncode == 0, done.stderr + done.stdout
    # without the intermediates the leaf does not verify: the chain really is needed
    leaf_only = dataclasses.replace(cert, chain_pem=pem(leaf_of(cert)).decode())
    alone = openssl_verify(
        tmp_path, leaf_only, ca.trust_bundle().roots_pem, at=clock.now, purpose="sslclient"
    )
    assert alone.returncode != 0


def test_leaf_is_capped_at_the_intermediate_expiry(tmp_path: Path, clock: FakeTime) -> None:
    write_plugin_layout(tmp_path, not_after=T0 + timedelta(hours=2))
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert ca.issue(ident(), ttl=timedelta(hours=24)).not_after == T0 + timedelta(hours=2)


def test_rotation_is_the_operators_business(tmp_path: Path, clock: FakeTime) -> None:
    write_plugin_layout(tmp_path)
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    with pytest.raises(CAError, match=r"plug-in.*replacing its files"):
        ca.stage_new_root()
    with pytest.raises(CAError, match="plug-in"):
        ca.activate_staged_root()


def _break(tmp_path: Path, how: str) -> None:
    root, inter = write_plugin_layout(tmp_path)
    other_key = ec.generate_private_key(ec.SECP256R1())
    if how == "missing-chain":
        (tmp_path / "cert-chain.pem").unlink()
    elif how == "missing-key":
        (tmp_path / "ca-key.pem").unlink()
    elif how == "key-mismatch":
        (tmp_path / "ca-key.pem").write_bytes(key_pem(other_key))
    elif how == "not-ca":
        leaf = make_ca_cert(other_key, cn="not a CA", ca=False)
        (tmp_path / "ca-cert.pem").write_bytes(pem(leaf))
        (tmp_path / "ca-key.pem").write_bytes(key_pem(other_key))
    elif how == "garbage-cert":
        (tmp_path / "ca-cert.pem").write_text("not a certificate")
    elif how == "garbage-root":
        (tmp_path / "root-cert.pem").write_text("")
    elif how == "chain-start":
        (tmp_path / "cert-chain.pem").write_bytes(pem(root))
    elif how == "other-root":
        stranger = make_ca_cert(other_key, cn="Stranger Root")
        (tmp_path / "root-cert.pem").write_bytes(pem(stranger))
        (tmp_path / "cert-chain.pem").write_bytes(pem(inter))
    elif how == "expired":
        write_plugin_layout(tmp_path, not_after=T0 - timedelta(seconds=1))


@pytest.mark.parametrize(
    ("how", "match"),
    [
        ("missing-chain", r"cert-chain.pem: missing; Istio's plug-in CA layout needs"),
        ("missing-key", r"ca-key.pem: missing"),
        ("key-mismatch", r"ca-key.pem: is not the key of the certificate in ca-cert.pem"),
        ("not-ca", r"ca-cert.pem: not a CA certificate"),
        ("garbage-cert", r"ca-cert.pem: not a PEM certificate file"),
        ("garbage-root", r"root-cert.pem: (not a PEM|holds no)"),
        ("chain-start", r"cert-chain.pem: must begin with the certificate of ca-cert.pem"),
        ("other-root", r"cert-chain.pem: does not lead to a root of root-cert.pem"),
        ("expired", r"ca-cert.pem: expired at"),
    ],
    ids=lambda v: v if "-" in v or v.isalpha() else None,
)
def test_invalid_layout_is_a_one_line_ca_error(
    tmp_path: Path, clock: FakeTime, how: str, match: str
) -> None:
    _break(tmp_path, how)
    with pytest.raises(CAError, match=match) as err:
        CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert "\n" not in str(err.value)
    assert str(tmp_path) in str(err.value)


def test_leaf_of_plugin_ca_names_the_intermediate_as_issuer(
    tmp_path: Path, clock: FakeTime
) -> None:
    _, inter = write_plugin_layout(tmp_path)
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert leaf_of(ca.issue(ident(), ttl=timedelta(minutes=5))).issuer == inter.subject
