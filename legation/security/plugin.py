"""Istio's plug-in CA layout in `--ca-dir`: an operator-provided intermediate.

Files (istio.io "Plug in CA Certificates"): `ca-cert.pem` and `ca-key.pem`
(the intermediate that signs workload certificates), `root-cert.pem` (the
trust anchor, possibly several roots) and `cert-chain.pem` (the chain from
`ca-cert.pem` up to the root). As in Istio, the chain sent with each leaf is
the leaf followed by `cert-chain.pem`, and the trust bundle is
`root-cert.pem`. Everything is validated once, at load, with a `CAError`
naming the file at fault. Rotating these files is the operator's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from legation.security.certs import Signer, cert_to_pem, is_ca, load_certs, load_key, matches_key
from legation.security.errors import CAError
from legation.security.files import read_bytes, read_key_bytes

CA_CERT = "ca-cert.pem"
CA_KEY = "ca-key.pem"
ROOT_CERT = "root-cert.pem"
CERT_CHAIN = "cert-chain.pem"
PLUGIN_FILES = (CA_CERT, CA_KEY, ROOT_CERT, CERT_CHAIN)


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginCA:
    signer: Signer
    roots: tuple[x509.Certificate, ...]
    anchor: x509.Certificate  # the root of root-cert.pem that cert-chain.pem leads to


def has_plugin_layout(ca_dir: Path) -> bool:
    """The operator meant the plug-in layout as soon as an intermediate file is there."""
    return (ca_dir / CA_CERT).exists() or (ca_dir / CA_KEY).exists()


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _anchor(
    chain: list[x509.Certificate], roots: list[x509.Certificate], path: Path
) -> x509.Certificate:
    for i in range(len(chain) - 1):
        if not _issued_by(chain[i], chain[i + 1]):
            raise CAError(f"{path}: certificate {i + 1} is not signed by certificate {i + 2}")
    last = chain[-1]
    for root in roots:
        if last == root or _issued_by(last, root):
            return root
    raise CAError(f"{path}: does not lead to a root of {ROOT_CERT}")


def load_plugin(ca_dir: Path, *, now: datetime) -> PluginCA:
    """Load and validate the four files; `CAError` naming the file otherwise."""
    for name in PLUGIN_FILES:
        if not (ca_dir / name).is_file():
            raise CAError(
                f"{ca_dir / name}: missing; Istio's plug-in CA layout needs "
                + ", ".join(PLUGIN_FILES)
            )
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    chain_path, root_path = ca_dir / CERT_CHAIN, ca_dir / ROOT_CERT
    cert = load_certs(read_bytes(cert_path), cert_path)[0]
    key = load_key(read_key_bytes(key_path), key_path)
    if not matches_key(cert, key):
        raise CAError(f"{key_path}: is not the key of the certificate in {CA_CERT}")
    if not is_ca(cert):
        raise CAError(
            f"{cert_path}: not a CA certificate (needs basicConstraints CA:true and keyCertSign)"
        )
    if cert.not_valid_after_utc <= now:
        raise CAError(f"{cert_path}: expired at {cert.not_valid_after_utc.isoformat()}")
    chain = load_certs(read_bytes(chain_path), chain_path)
    if chain[0] != cert:
        raise CAError(f"{chain_path}: must begin with the certificate of {CA_CERT}")
    roots = load_certs(read_bytes(root_path), root_path)
    anchor = _anchor(chain, roots, chain_path)
    signer = Signer(cert=cert, key=key, chain_pem=tuple(cert_to_pem(c) for c in chain))
    return PluginCA(signer=signer, roots=tuple(roots), anchor=anchor)
