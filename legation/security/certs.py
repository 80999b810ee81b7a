"""X.509 building blocks for the CA (cryptography): keys, roots, leaves, PEM.

Pure functions of their arguments (time and serial are passed in). The
profile of a workload certificate follows the X.509-SVID specification,
https://github.com/spiffe/spiffe/blob/main/standards/X509-SVID.md:
exactly one URI SAN (§2), `CA:false` (§4.1), keyUsage digitalSignature and
never keyCertSign/cRLSign (§4.3), EKU serverAuth+clientAuth (§4.4). The
subject is empty, so the SAN extension is critical (RFC 5280 §4.2.1.6).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from legation.security.errors import CAError

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

ROOT_SUBJECT = x509.Name(
    [
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Legation"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Legation Root CA"),
    ]
)


class KeyType(StrEnum):
    ECDSA_P256 = "ecdsa-p256"
    RSA_2048 = "rsa-2048"


@dataclass(frozen=True, slots=True, kw_only=True)
class Signer:
    """The certificate and key that sign leaves, and what follows a leaf in its chain."""

    cert: x509.Certificate
    key: SigningKey
    chain_pem: tuple[str, ...] = ()  # appended after the leaf (Istio: cert-chain.pem)


def generate_key(kind: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if KeyType(kind) is KeyType.RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def random_serial() -> int:
    """A random, positive, non-zero 128-bit serial (RFC 5280 §4.1.2.2: at most 20 octets)."""
    return int.from_bytes(os.urandom(16), "big") or 1


def key_to_pem(key: SigningKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def cert_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def load_certs(data: bytes, path: Path) -> list[x509.Certificate]:
    """Every certificate of a PEM file, in order; `CAError` naming the file otherwise."""
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise CAError(f"{path}: not a PEM certificate file: {e}") from None
    if not certs:
        raise CAError(f"{path}: holds no certificate")
    return certs


def load_key(data: bytes, path: Path) -> SigningKey:
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise CAError(f"{path}: not an unencrypted PEM private key: {e}") from None
    if not isinstance(
        key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise CAError(
            f"{path}: unsupported key type {type(key).__name__}; use ECDSA, RSA or Ed25519"
        )
    return key


def matches_key(cert: x509.Certificate, key: SigningKey) -> bool:
    """True when `key` is the private half of the key `cert` certifies."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def is_ca(cert: x509.Certificate) -> bool:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return ku.key_cert_sign


def _hash_for(key: SigningKey) -> hashes.SHA256 | None:
    return None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()


def _key_usage(*, digital_signature: bool, key_encipherment: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def build_root(
    key: ec.EllipticCurvePrivateKey, *, not_before: datetime, not_after: datetime
) -> x509.Certificate:
    """A self-signed root: CA (critical), keyCertSign+cRLSign, SKI = AKI."""
    public = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(ROOT_SUBJECT)
        .issuer_name(ROOT_SUBJECT)
        .public_key(public)
        .serial_number(random_serial())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            _key_usage(digital_signature=False, key_encipherment=False, ca=True), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )


def _authority_key_id(signer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    try:
        ski = signer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    except x509.ExtensionNotFound:
        return x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key())  # type: ignore[arg-type]
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeafSpec:
    sans: Sequence[x509.GeneralName]
    server_auth: bool = True
    client_auth: bool = True
    not_before: datetime
    not_after: datetime
    serial: int


def build_leaf(
    signer: Signer,
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
    spec: LeafSpec,
) -> x509.Certificate:
    """An end-entity certificate: empty subject, critical SAN, CA:false, AKI/SKI."""
    public = key.public_key()
    usages = [
        oid
        for oid, wanted in (
            (ExtendedKeyUsageOID.SERVER_AUTH, spec.server_auth),
            (ExtendedKeyUsageOID.CLIENT_AUTH, spec.client_auth),
        )
        if wanted
    ]
    rsa_key = isinstance(key, rsa.RSAPrivateKey)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(signer.cert.subject)
        .public_key(public)
        .serial_number(spec.serial)
        .not_valid_before(spec.not_before)
        .not_valid_after(spec.not_after)
        .add_extension(x509.SubjectAlternativeName(list(spec.sans)), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            _key_usage(digital_signature=True, key_encipherment=rsa_key, ca=False), critical=True
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(_authority_key_id(signer.cert), critical=False)
        .sign(signer.key, _hash_for(signer.key))
    )
