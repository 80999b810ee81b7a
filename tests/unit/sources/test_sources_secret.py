"""Core v1 Secrets as gateway credentials: Istio's layouts, checked, values never shown."""

from __future__ import annotations

import base64
import datetime

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sources_builders import convert

from legation.model import Severity, TlsCredential


def _pair() -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop.example.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


CERT, KEY = _pair()
OTHER_CERT, OTHER_KEY = _pair()


def secret(data: dict[str, str], *, kind: str = "kubernetes.io/tls", plain: bool = False) -> str:
    body = ({"stringData": data} if plain else
            {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}})
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "type": kind,
                           "metadata": {"name": "cert", "namespace": "shop"}, **body})


@pytest.mark.parametrize(("text", "ca"), [
    (secret({"tls.crt": CERT, "tls.key": KEY}), ""),
    (secret({"cert": CERT, "key": KEY, "cacert": OTHER_CERT}, kind="Opaque"), OTHER_CERT),
    (secret({"tls.crt": CERT, "tls.key": KEY, "ca.crt": OTHER_CERT}, plain=True), OTHER_CERT),
], ids=["tls", "generic", "string-data"])
def test_istios_layouts_are_read(text: str, ca: str) -> None:
    result = convert(text)
    assert result.diagnostics == ()
    (c,) = result.objects
    assert isinstance(c, TlsCredential) and (c.namespace, c.name) == ("shop", "cert")
    assert (c.cert_chain, c.private_key, c.ca_cert) == (CERT, KEY, ca)
    assert KEY not in repr(c)  # a key never reaches a log line through repr


@pytest.mark.parametrize(("data", "code"), [
    ({"tls.crt": CERT, "tls.key": OTHER_KEY}, "secret.key-mismatch"),
    ({"tls.crt": "not a certificate", "tls.key": KEY}, "secret.certificate-invalid"),
    ({"tls.crt": CERT, "tls.key": "not a key"}, "secret.key-invalid"),
    ({"tls.crt": CERT}, "secret.tls-data-missing"),
], ids=["mismatch", "bad-cert", "bad-key", "no-key"])
def test_a_bad_credential_is_an_error_that_shows_no_value(data: dict[str, str],
                                                          code: str) -> None:
    result = convert(secret(data))
    assert result.objects == ()
    found = [d for d in result.diagnostics if d.code == code]
    assert found and found[0].severity is Severity.ERROR, [d.code for d in result.diagnostics]
    for d in result.diagnostics:
        assert "PRIVATE KEY" not in d.format() and "not a key" not in d.format()


def test_bad_base64_is_an_error() -> None:
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                           "metadata": {"name": "cert", "namespace": "shop"},
                           "data": {"tls.crt": "%%%", "tls.key": "%%%"}})
    result = convert(text)
    assert {d.code for d in result.diagnostics} == {"secret.data-invalid"}
    assert result.objects == ()


def test_other_secret_types_are_left_out_with_a_note() -> None:
    result = convert(secret({"token": "x"}, kind="kubernetes.io/service-account-token"))
    assert result.objects == ()
    assert [(d.code, d.severity) for d in result.diagnostics] == [
        ("secret.not-tls", Severity.INFO)]
