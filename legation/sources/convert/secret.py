"""Core v1 Secret -> `TlsCredential`: the certificates gateway servers name.

Read are the layouts Istio's gateways accept for `credentialName` (Istio docs,
"Secure Gateways"): a `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`,
optionally `ca.crt`), or a generic (`Opaque`) one with `tls.crt`/`tls.key`
or `cert`/`key`, and optionally `ca.crt` or `cacert`; or one holding only the
client CA (named `<credentialName>-cacert`). Values come from `data`
(base64) or `stringData`. Each is checked: PEM certificates that parse, a
private key that parses and belongs to the first certificate. Diagnostics
never quote a value. Secrets of other types are reported and left out.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from legation.model import Severity, TlsCredential
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

TLS_TYPES = ("kubernetes.io/tls", "Opaque", "generic")
_CERT_KEYS = (("tls.crt", "tls.key"), ("cert", "key"))
_CA_KEYS = ("ca.crt", "cacert")


def convert_secret(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> TlsCredential | None:
    kind = data.get("type") or "Opaque"
    if kind not in TLS_TYPES:
        ctx.report("type", "secret.not-tls",
                   f"a Secret of type {kind} holds no certificate Legation uses (expected "
                   f"one of {', '.join(TLS_TYPES)}); it is left out.", Severity.INFO)
        return None
    values = _values(ctx, data)
    if ctx.failed:
        return None
    cert_key = next(((c, k) for c, k in _CERT_KEYS if c in values or k in values), None)
    ca_key = next((k for k in _CA_KEYS if k in values), None)
    if cert_key is None and ca_key is None:
        if kind == "kubernetes.io/tls":
            ctx.missing("data", "tls-data", "tls.crt and tls.key")
        else:
            ctx.report("data", "secret.no-certificate",
                       "the Secret holds no tls.crt/tls.key, cert/key or ca.crt; it is "
                       "left out.", Severity.INFO)
        return None
    chain = key = ca = ""
    if cert_key is not None:
        cert_name, key_name = cert_key
        for name in cert_key:
            if name not in values:
                ctx.missing(child_path("data", name), "tls-data",
                            f"{cert_name} and {key_name} together (a certificate and its key)")
        if ctx.failed:
            return None
        chain, key = values[cert_name], values[key_name]
        _check_pair(ctx, cert_name, chain, key_name, key)
    if ca_key is not None:
        ca = values[ca_key]
        _certificates(ctx, ca_key, ca)
    if ctx.failed:
        return None
    return TlsCredential(ref=ctx.ref, name=meta.name, namespace=meta.namespace,
                         cert_chain=chain, private_key=key, ca_cert=ca)


def _values(ctx: Ctx, data: Mapping[str, Any]) -> dict[str, str]:
    """`data` (base64) and `stringData` (plain, and winning, as in Kubernetes)."""
    out: dict[str, str] = {}
    for name, raw in ctx.mapping(data, "data", "", problem="data").items():
        try:
            out[str(name)] = base64.b64decode(str(raw), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            ctx.error(child_path("data", str(name)), "data-invalid",
                      "the value is not base64 of PEM text (expected the base64 encoding of "
                      "a PEM file; the value is not shown).")
    for name, raw in ctx.mapping(data, "stringData", "", problem="string-data").items():
        if not isinstance(raw, str):
            ctx.error(child_path("stringData", str(name)), "string-data-invalid",
                      "expected a string (PEM text; the value is not shown)")
            continue
        out[str(name)] = raw
    return out


def _certificates(ctx: Ctx, name: str, pem: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        ctx.error(child_path("data", name), "certificate-invalid",
                  f"{name} holds no PEM certificate that parses (expected one or more "
                  "'-----BEGIN CERTIFICATE-----' blocks; the value is not shown).")
        return []
    return certs


def _check_pair(ctx: Ctx, cert_name: str, chain: str, key_name: str, key: str) -> None:
    certs = _certificates(ctx, cert_name, chain)
    try:
        private = serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError):
        ctx.error(child_path("data", key_name), "key-invalid",
                  f"{key_name} holds no unencrypted PEM private key that parses (the value "
                  "is not shown).")
        return
    if certs and certs[0].public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        ctx.error(child_path("data", key_name), "key-mismatch",
                  f"{key_name} is not the key of the first certificate in {cert_name} "
                  "(expected the certificate's own private key).")
