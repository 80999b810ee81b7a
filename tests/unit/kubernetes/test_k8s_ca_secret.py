"""The CA root in the Secret legation-ca (or Istio's cacerts), against the emulated API server."""

from __future__ import annotations

import base64
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from k8s import ApiServer

from legation.kube.secretstore import CASecretStore, Materialized, SecretConflict
from legation.security import CAError, CertificateAuthority, TokenAuthority

NS = "legation-system"
TD = "cluster.local"
SELF_MANAGED = ("root-cert.pem", "root-key.pem", "xds-token-key.pem")


def _store(api: Any, **kw: Any) -> CASecretStore:
    kw.setdefault("sleep", lambda s: None)
    return CASecretStore(api, namespace=NS, **kw)


def _secret(apiserver: ApiServer, name: str = "legation-ca") -> dict[str, bytes]:
    obj = apiserver.get("v1", "Secret", name, NS)
    assert obj is not None, f"no Secret {name}"
    return {k: base64.b64decode(v) for k, v in obj["data"].items()}


def _dir_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in d.iterdir() if p.is_file()}


def test_the_first_replica_creates_the_secret_and_loads_it(apiserver: ApiServer, api: Any,
                                                           tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"

    done = _store(api).materialize(ca_dir)

    assert done.created and done.source == "legation-ca" and done.files == SELF_MANAGED
    assert _dir_files(ca_dir) == _secret(apiserver)
    assert (ca_dir / "root-key.pem").stat().st_mode & 0o077 == 0
    ca = CertificateAuthority.load_or_create(ca_dir, trust_domain=TD)
    assert not ca.plugged_in
    assert ca.trust_bundle().roots_pem[0].encode() == _secret(apiserver)["root-cert.pem"]
    obj = apiserver.get("v1", "Secret", "legation-ca", NS)
    assert obj is not None and obj["type"] == "Opaque"
    assert done.resource_version == obj["metadata"]["resourceVersion"]


def test_every_replica_uses_the_same_root_and_token_key(apiserver: ApiServer, api: Any,
                                                        tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    assert _store(api).materialize(a).created

    second = _store(api).materialize(b)

    assert not second.created
    assert _dir_files(a) == _dir_files(b)
    ca_a = CertificateAuthority.load_or_create(a, trust_domain=TD)
    ca_b = CertificateAuthority.load_or_create(b, trust_domain=TD)
    assert ca_a.trust_bundle() == ca_b.trust_bundle()
    token = TokenAuthority.load_or_create(a, TD).mint("shop", "catalog", "catalog-1")
    claims = TokenAuthority.load_or_create(b, TD).verify(
        token, node_namespace="shop", node_workload="catalog-1",
        workload_service_account="catalog")
    assert claims.service_account == "catalog"


class RacingStore(CASecretStore):
    """Every replica has read "no Secret" before any of them creates it."""

    def __init__(self, barrier: threading.Barrier, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._barrier = barrier

    def _create_or_adopt(self, current: Any, *, with_root: bool) -> Any:
        self._barrier.wait(timeout=10)
        return super()._create_or_adopt(current, with_root=with_root)


def test_replicas_starting_together_create_it_once(apiserver: ApiServer, api: Any,
                                                   tmp_path: Path) -> None:
    n = 5
    barrier = threading.Barrier(n)
    dirs = [tmp_path / f"replica-{i}" for i in range(n)]

    def start(d: Path) -> Materialized:
        return RacingStore(barrier, api, namespace=NS, sleep=lambda s: None).materialize(d)

    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(start, dirs))

    assert sum(r.created for r in results) == 1
    assert len([w for w in apiserver.writes("secrets") if w.method == "POST"]) == n  # all tried
    winner = _secret(apiserver)
    assert all(_dir_files(d) == winner for d in dirs)
    assert len({r.resource_version for r in results}) == 1


Signer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def _ca_cert(key: ec.EllipticCurvePrivateKey, cn: str, issuer: Signer | None) -> x509.Certificate:
    now = datetime.now(UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    signer_name, signer_key = (issuer[0].subject, issuer[1]) if issuer else (name, key)
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(signer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .sign(signer_key, hashes.SHA256())
    )


def _cacerts(apiserver: ApiServer, *, drop: str = "") -> x509.Certificate:
    """Istio's plug-in CA Secret `cacerts`: a root and an intermediate it signed."""
    root_key, ca_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    root = _ca_cert(root_key, "Operator Root", None)
    inter = _ca_cert(ca_key, "Operator Intermediate", (root, root_key))
    pem = serialization.Encoding.PEM
    files = {
        "ca-cert.pem": inter.public_bytes(pem),
        "ca-key.pem": ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()),
        "root-cert.pem": root.public_bytes(pem),
        "cert-chain.pem": inter.public_bytes(pem) + root.public_bytes(pem),
    }
    files.pop(drop, None)
    apiserver.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": "cacerts", "namespace": NS},
                     "data": {k: base64.b64encode(v).decode() for k, v in files.items()}})
    return root


def test_istios_cacerts_is_used_when_present(apiserver: ApiServer, api: Any,
                                             tmp_path: Path) -> None:
    root = _cacerts(apiserver)
    a, b = tmp_path / "a", tmp_path / "b"

    first = _store(api).materialize(a)
    second = _store(api).materialize(b)

    assert first.source == second.source == "cacerts"
    assert first.created and not second.created
    assert set(_dir_files(a)) == {"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem",
                                  "xds-token-key.pem"}
    assert _dir_files(a) == _dir_files(b)
    assert set(_secret(apiserver)) == {"xds-token-key.pem"}  # no root of our own is made
    ca = CertificateAuthority.load_or_create(a, trust_domain=TD)
    assert ca.plugged_in
    assert ca.trust_bundle().roots_pem == (root.public_bytes(serialization.Encoding.PEM).decode(),)


def test_an_incomplete_cacerts_is_an_error_naming_what_is_missing(
    apiserver: ApiServer, api: Any, tmp_path: Path
) -> None:
    _cacerts(apiserver, drop="ca-key.pem")

    with pytest.raises(CAError, match=r"cacerts .*lacks ca-key\.pem"):
        _store(api).materialize(tmp_path / "ca")


def test_the_secret_replaces_stale_files_in_the_ca_dir(apiserver: ApiServer, api: Any,
                                                       tmp_path: Path) -> None:
    _store(api).materialize(tmp_path / "first")
    ca_dir = tmp_path / "ca"
    CertificateAuthority.load_or_create(ca_dir, trust_domain=TD)  # an unrelated local root
    (ca_dir / "roots.json").write_text("{}")
    (ca_dir / "notes.txt").write_text("not CA material: left alone")

    _store(api).materialize(ca_dir)

    files = _dir_files(ca_dir)
    assert files.pop("notes.txt") == b"not CA material: left alone"
    assert files == _secret(apiserver)


def test_an_existing_secret_without_a_token_key_is_completed(apiserver: ApiServer, api: Any,
                                                             tmp_path: Path) -> None:
    _store(api).materialize(tmp_path / "seed")
    old = _secret(apiserver)
    apiserver.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "legation-ca", "namespace": NS}, "data": {
        k: base64.b64encode(old[k]).decode() for k in ("root-cert.pem", "root-key.pem")}})

    done = _store(api).materialize(tmp_path / "ca")

    now = _secret(apiserver)
    assert done.created and set(now) == set(SELF_MANAGED)
    assert now["root-cert.pem"] == old["root-cert.pem"]  # the root is kept
    assert _dir_files(tmp_path / "ca") == now


def test_publish_uses_optimistic_concurrency(apiserver: ApiServer, api: Any,
                                             tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    first = _store(api).materialize(a)
    ca = CertificateAuthority.load_or_create(a, trust_domain=TD)
    ca.stage_new_root()  # a rotation writes roots.json and a second root into the dir

    rv = _store(api).publish(a, resource_version=first.resource_version)

    assert rv != first.resource_version
    assert "roots.json" in _secret(apiserver)
    with pytest.raises(SecretConflict):  # a second writer that read before the first wrote
        _store(api).publish(a, resource_version=first.resource_version)
    _store(api).materialize(b)  # another replica picks the rotation up
    assert CertificateAuthority.load_or_create(b, trust_domain=TD).trust_bundle() == \
        ca.trust_bundle()


def test_an_unreachable_api_server_fails_after_bounded_retries(apiserver: ApiServer, api: Any,
                                                               tmp_path: Path) -> None:
    slept: list[float] = []
    apiserver.stop()

    with pytest.raises(CAError, match="cannot be reached"):
        _store(api, attempts=3, backoff_s=0.5, sleep=slept.append,
               request_timeout_s=2).materialize(tmp_path / "ca")

    assert slept == [0.5, 1.0]
    assert not (tmp_path / "ca").exists()
