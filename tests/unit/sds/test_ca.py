"""The self-managed CA: root creation and reuse, the X.509-SVID profile, verification."""

from __future__ import annotations

import ipaddress
import multiprocessing
import shutil
import stat
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from legation.security import CAError, CertificateAuthority, KeyType

from .helpers import (
    T0,
    TD,
    FakeTime,
    certs_of,
    ident,
    leaf_of,
    openssl_verify,
    verify_client,
)

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def ca(tmp_path: Path, clock: FakeTime) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain=TD, clock=clock)


def _root(ca: CertificateAuthority) -> x509.Certificate:
    (root_pem,) = ca.trust_bundle().roots_pem
    (root,) = certs_of(root_pem)
    return root


def test_new_root_profile(ca: CertificateAuthority) -> None:
    root = _root(ca)
    assert root.subject.rfc4514_string() == "CN=Legation Root CA,O=Legation"
    assert root.issuer == root.subject
    public = root.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    assert root.not_valid_after_utc - T0 == timedelta(days=3650)
    bc = root.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = root.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
    assert not ku.value.digital_signature
    ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = root.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest


def test_root_files_and_permissions(ca: CertificateAuthority, tmp_path: Path) -> None:
    key, cert = tmp_path / "ca" / "root-key.pem", tmp_path / "ca" / "root-cert.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert.stat().st_mode) == 0o644
    assert not [p.name for p in (tmp_path / "ca").iterdir() if p.name.endswith(".tmp")]


def test_workload_svid_profile(ca: CertificateAuthority, clock: FakeTime) -> None:
    cert = ca.issue(ident(), ttl=timedelta(hours=24))
    leaf = leaf_of(cert)
    assert leaf.subject == x509.Name([])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert list(san.value) == [
        x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/order-sa")
    ]
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature
    assert not (ku.value.key_cert_sign or ku.value.crl_sign or ku.value.key_encipherment)
    bc = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    root_ski = _root(ca).extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == root_ski.digest
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    # validity: backdated five minutes for clock skew, TTL from now
    assert leaf.not_valid_before_utc == clock.now - timedelta(minutes=5) == cert.not_before
    assert leaf.not_valid_after_utc == clock.now + timedelta(hours=24) == cert.not_after
    assert leaf.serial_number == cert.serial
    assert 0 < cert.serial < 2**128
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert cert.chain_pem.count("BEGIN CERTIFICATE") == 1
    assert "PRIVATE KEY" in cert.key_pem and "PRIVATE KEY" not in repr(cert)


def test_serials_are_random(ca: CertificateAuthority) -> None:
    serials = {ca.issue(ident(), ttl=timedelta(hours=1)).serial for _ in range(20)}
    assert len(serials) == 20
    assert max(serials).bit_length() > 100


def test_rsa_leaf_adds_key_encipherment(ca: CertificateAuthority) -> None:
    leaf = leaf_of(ca.issue(ident(), ttl=timedelta(hours=1), key_type=KeyType.RSA_2048))
    public = leaf.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert public.key_size == 2048
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_encipherment


def test_leaf_key_matches_certificate(ca: CertificateAuthority) -> None:
    from cryptography.hazmat.primitives import serialization

    cert = ca.issue(ident(), ttl=timedelta(hours=1))
    key = serialization.load_pem_private_key(cert.key_pem.encode(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert key.public_key() == leaf_of(cert).public_key()


@pytest.mark.parametrize("key_type", list(KeyType), ids=str)
def test_leaf_verifies_with_cryptography(
    ca: CertificateAuthority, clock: FakeTime, key_type: KeyType
) -> None:
    cert = ca.issue(ident(), ttl=timedelta(hours=1), key_type=key_type)
    verified = verify_client(cert, ca.trust_bundle().roots_pem, at=clock.now)
    assert verified.subjects == [
        x509.UniformResourceIdentifier("spiffe://cluster.local/ns/shop/sa/order-sa")
    ]
    assert verified.chain[-1] == _root(ca)


def test_verification_fails_outside_validity_and_with_other_roots(
    ca: CertificateAuthority, clock: FakeTime, tmp_path: Path
) -> None:
    cert = ca.issue(ident(), ttl=timedelta(hours=1))
    roots = ca.trust_bundle().roots_pem
    verify_client(cert, roots, at=clock.now - timedelta(minutes=4))  # backdated: still valid
    with pytest.raises(VerificationError):
        verify_client(cert, roots, at=clock.now - timedelta(minutes=6))
    with pytest.raises(VerificationError):
        verify_client(cert, roots, at=clock.now + timedelta(hours=1, seconds=1))
    other = CertificateAuthority.load_or_create(tmp_path / "other", trust_domain=TD, clock=clock)
    with pytest.raises(VerificationError):
        verify_client(cert, other.trust_bundle().roots_pem, at=clock.now)


@needs_openssl
@pytest.mark.parametrize("purpose", ["sslclient", "sslserver"])
@pytest.mark.parametrize("key_type", list(KeyType), ids=str)
def test_leaf_verifies_with_openssl(
    ca: CertificateAuthority, clock: FakeTime, tmp_path: Path, purpose: str, key_type: KeyType
) -> None:
    cert = ca.issue(ident(), ttl=timedelta(hours=1), key_type=key_type)
    done = openssl_verify(
        tmp_path, cert, ca.trust_bundle().roots_pem, at=clock.now, purpose=purpose
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert done.stdout.strip().endswith(": OK")
    late = openssl_verify(
        tmp_path,
        cert,
        ca.trust_bundle().roots_pem,
        at=clock.now + timedelta(hours=2),
        purpose=purpose,
    )
    assert late.returncode != 0 and "expired" in (late.stdout + late.stderr)


def test_ttl_is_capped_at_the_root_expiry(ca: CertificateAuthority, clock: FakeTime) -> None:
    root_end = _root(ca).not_valid_after_utc
    clock.now = root_end - timedelta(hours=1)
    cert = ca.issue(ident(), ttl=timedelta(hours=24))
    assert cert.not_after == root_end
    clock.now = root_end
    with pytest.raises(CAError, match="expired"):
        ca.issue(ident(), ttl=timedelta(hours=24))


def test_issue_refuses_other_trust_domain_and_bad_ttl(ca: CertificateAuthority) -> None:
    with pytest.raises(CAError, match=r"trust domain 'cluster\.local'"):
        ca.issue(ident(td="other.example"), ttl=timedelta(hours=1))
    with pytest.raises(ValueError, match="positive"):
        ca.issue(ident(), ttl=timedelta(0))


def test_invalid_trust_domain_is_a_ca_error(tmp_path: Path) -> None:
    with pytest.raises(CAError, match="Bad_Domain"):
        CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain="Bad_Domain")
    assert not (tmp_path / "ca").exists()  # refused before anything is written


def test_existing_root_is_reused(ca: CertificateAuthority, tmp_path: Path, clock: FakeTime) -> None:
    clock.advance(timedelta(days=30))
    again = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain=TD, clock=clock)
    assert again.trust_bundle() == ca.trust_bundle()
    cert = again.issue(ident(), ttl=timedelta(hours=1))
    verify_client(cert, ca.trust_bundle().roots_pem, at=clock.now)


def test_operator_provided_root_is_reused(tmp_path: Path, clock: FakeTime) -> None:
    from .helpers import key_pem, make_ca_cert, pem

    key = ec.generate_private_key(ec.SECP256R1())
    root = make_ca_cert(key, cn="Operator Root")
    (tmp_path / "root-cert.pem").write_bytes(pem(root))
    (tmp_path / "root-key.pem").write_bytes(key_pem(key))
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert not ca.plugged_in
    assert certs_of(ca.trust_bundle().roots_pem[0]) == [root]
    assert leaf_of(ca.issue(ident(), ttl=timedelta(hours=1))).issuer == root.subject


def test_key_left_by_an_interrupted_creator_is_completed(tmp_path: Path, clock: FakeTime) -> None:
    from .helpers import key_pem

    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "root-key.pem").write_bytes(key_pem(key))  # crashed before writing the cert
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert _root(ca).public_key() == key.public_key()


@pytest.mark.parametrize(
    ("files", "match"),
    [
        ({"root-cert.pem": "cert"}, "root-key.pem: missing"),
        ({"root-cert.pem": "cert", "root-key.pem": "other-key"}, "root-key.pem: is not the key"),
        (
            {"root-cert.pem": b"garbage", "root-key.pem": "key"},
            "root-cert.pem: not a PEM certificate",
        ),
        ({"root-cert.pem": "cert", "root-key.pem": b"garbage"}, "root-key.pem: not an unencrypted"),
        ({"root-cert.pem": "leaf", "root-key.pem": "key"}, "root-cert.pem: not a CA certificate"),
    ],
    ids=["no-key", "key-mismatch", "bad-cert", "bad-key", "not-ca"],
)
def test_broken_root_files_name_the_file(
    tmp_path: Path, clock: FakeTime, files: dict[str, object], match: str
) -> None:
    from .helpers import key_pem, make_ca_cert, pem

    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    content = {
        "cert": pem(make_ca_cert(key, cn="R")),
        "leaf": pem(make_ca_cert(key, cn="R", ca=False)),
        "key": key_pem(key),
        "other-key": key_pem(other),
    }
    for name, what in files.items():
        (tmp_path / name).write_bytes(what if isinstance(what, bytes) else content[str(what)])
    with pytest.raises(CAError, match=match) as err:
        CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock)
    assert "\n" not in str(err.value)


def test_expired_root_is_refused(ca: CertificateAuthority, tmp_path: Path, clock: FakeTime) -> None:
    clock.advance(timedelta(days=3651))
    with pytest.raises(CAError, match=r"root-cert\.pem: the active root expired"):
        CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain=TD, clock=clock)


def test_concurrent_creators_in_threads_share_one_root(tmp_path: Path, clock: FakeTime) -> None:
    n = 8
    barrier = threading.Barrier(n)
    bundles: list[tuple[str, ...]] = []

    def create() -> None:
        barrier.wait()
        ca = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain=TD, clock=clock)
        bundles.append(ca.trust_bundle().roots_pem)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(bundles) == n
    assert len(set(bundles)) == 1
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["root-cert.pem", "root-key.pem"]


def _create_in_process(ca_dir: str, barrier: object, out: object) -> None:
    barrier.wait()  # type: ignore[attr-defined]
    ca = CertificateAuthority.load_or_create(Path(ca_dir), trust_domain=TD)
    out.put(ca.trust_bundle().roots_pem)  # type: ignore[attr-defined]


def test_concurrent_creators_in_processes_share_one_root(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    n = 4
    barrier, out = ctx.Barrier(n), ctx.Queue()
    procs = [
        ctx.Process(target=_create_in_process, args=(str(tmp_path / "ca"), barrier, out))
        for _ in range(n)
    ]
    for p in procs:
        p.start()
    bundles = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert len(set(bundles)) == 1
    on_disk = (tmp_path / "ca" / "root-cert.pem").read_text()
    assert bundles[0] == (on_disk,)
    assert sorted(p.name for p in (tmp_path / "ca").iterdir()) == ["root-cert.pem", "root-key.pem"]


def test_server_certificate(ca: CertificateAuthority, clock: FakeTime) -> None:
    cert = ca.issue_server(
        ["legation.istio-system.svc", "localhost"], ["127.0.0.1", "::1"], ttl=timedelta(days=30)
    )
    leaf = leaf_of(cert)
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert san.value.get_values_for_type(x509.DNSName) == ["legation.istio-system.svc", "localhost"]
    assert san.value.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/istio-system/sa/legation"
    ]
    assert str(cert.identity) == "spiffe://cluster.local/ns/istio-system/sa/legation"
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    roots = [c for p in ca.trust_bundle().roots_pem for c in certs_of(p)]
    builder = PolicyBuilder().store(Store(roots)).time(clock.now)
    for subject in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        builder.build_server_verifier(subject).verify(leaf, [])
    with pytest.raises(VerificationError):
        builder.build_server_verifier(x509.DNSName("evil.example")).verify(leaf, [])


@needs_openssl
def test_server_certificate_verifies_with_openssl(
    ca: CertificateAuthority, clock: FakeTime, tmp_path: Path
) -> None:
    cert = ca.issue_server(["localhost"], ["127.0.0.1"], ttl=timedelta(days=1))
    done = openssl_verify(
        tmp_path, cert, ca.trust_bundle().roots_pem, at=clock.now, purpose="sslserver"
    )
    assert done.returncode == 0, done.stderr
    client = openssl_verify(
        tmp_path, cert, ca.trust_bundle().roots_pem, at=clock.now, purpose="sslclient"
    )
    assert client.returncode != 0  # serverAuth only


@pytest.mark.parametrize(
    ("dns", "ips", "match"),
    [
        (["bad name"], [], "not an ASCII DNS name"),
        ([""], [], "not an ASCII DNS name"),
        ([], ["300.1.1.1"], "not an IP address"),
    ],
)
def test_server_certificate_rejects_bad_names(
    ca: CertificateAuthority, dns: list[str], ips: list[str], match: str
) -> None:
    with pytest.raises(CAError, match=match):
        ca.issue_server(dns, ips, ttl=timedelta(days=1))
