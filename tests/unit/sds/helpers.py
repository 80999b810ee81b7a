"""Builders for the sds tests: a fake clock, verifiers (cryptography and openssl), test CAs."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerifiedClient

from legation.model import SpiffeId, WorkloadCertificate

T0 = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
TD = "cluster.local"


class FakeTime:
    """A settable clock and a `sleep` that advances it instead of waiting."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)
        await asyncio.sleep(0)


def ident(ns: str = "shop", sa: str = "order-sa", td: str = TD) -> SpiffeId:
    return SpiffeId(trust_domain=td, namespace=ns, service_account=sa)


def certs_of(pem: str) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(pem.encode())


def leaf_of(cert: WorkloadCertificate) -> x509.Certificate:
    return certs_of(cert.chain_pem)[0]


def verify_client(
    cert: WorkloadCertificate, roots_pem: Sequence[str], *, at: datetime
) -> VerifiedClient:
    """cryptography's RFC 5280 / Web PKI path validation of a client certificate."""
    chain = certs_of(cert.chain_pem)
    roots = [c for pem in roots_pem for c in certs_of(pem)]
    verifier = PolicyBuilder().store(Store(roots)).time(at).build_client_verifier()
    return verifier.verify(chain[0], chain[1:])


def openssl_verify(
    tmp: Path, cert: WorkloadCertificate, roots_pem: Sequence[str], *, at: datetime, purpose: str
) -> subprocess.CompletedProcess[str]:
    """`openssl verify -x509_strict -purpose P -attime T -CAfile roots -untrusted rest leaf`."""
    openssl = shutil.which("openssl")
    assert openssl is not None
    chain = certs_of(cert.chain_pem)
    pem = [c.public_bytes(serialization.Encoding.PEM) for c in chain]
    (tmp / "leaf.pem").write_bytes(pem[0])
    (tmp / "roots.pem").write_text("".join(roots_pem))
    args = [
        openssl,
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-attime",
        str(int(at.timestamp())),
        "-CAfile",
        str(tmp / "roots.pem"),
    ]
    if len(pem) > 1:
        (tmp / "untrusted.pem").write_bytes(b"".join(pem[1:]))
        args += ["-untrusted", str(tmp / "untrusted.pem")]
    return subprocess.run(
        [*args, str(tmp / "leaf.pem")], capture_output=True, text=True, check=False
    )


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def make_ca_cert(
    key: ec.EllipticCurvePrivateKey,
    *,
    cn: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    not_before: datetime = T0 - timedelta(days=1),
    not_after: datetime = T0 + timedelta(days=365),
    ca: bool = True,
) -> x509.Certificate:
    """A test CA: self-signed root, or an intermediate signed by `issuer`."""
    issuer_cert, issuer_key = issuer if issuer else (None, key)
    issuer_name = issuer_cert.subject if issuer_cert else _name(cn)
    issuer_public = issuer_key.public_key()
    usage = x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public), critical=False
        )
        .sign(issuer_key, hashes.SHA256())
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_plugin_layout(
    ca_dir: Path, *, not_after: datetime = T0 + timedelta(days=365)
) -> tuple[x509.Certificate, x509.Certificate]:
    """Istio's plug-in files for a fresh test root and intermediate: (root, intermediate)."""
    root_key, ca_key = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    root = make_ca_cert(root_key, cn="Test Root")
    inter = make_ca_cert(
        ca_key, cn="Test Intermediate", issuer=(root, root_key), not_after=not_after
    )
    ca_dir.mkdir(parents=True, exist_ok=True)
    (ca_dir / "ca-cert.pem").write_bytes(pem(inter))
    (ca_dir / "ca-key.pem").write_bytes(key_pem(ca_key))
    (ca_dir / "root-cert.pem").write_bytes(pem(root))
    (ca_dir / "cert-chain.pem").write_bytes(pem(inter) + pem(root))
    return root, inter
