"""The TLS xDS listener's certificate: names, and renewal at half its lifetime."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509

from legation.app.security import server_names
from legation.security import CertificateAuthority
from legation.settings import HostPort
from legation.xds.tls import ServerCertificate


def test_server_names_cover_the_listen_address_loopback_and_extras() -> None:
    dns, ips = server_names(HostPort(host="10.1.2.3", port=15012), ["Legation.Example.", "::2"])
    assert dns == ["legation.example", "localhost"]
    assert ips == ["10.1.2.3", "127.0.0.1", "::1", "::2"]
    assert server_names(HostPort(host="0.0.0.0", port=1), []) == (
        ["localhost"],
        ["127.0.0.1", "::1"],
    )


def test_renewed_past_half_its_lifetime(tmp_path: Path) -> None:
    now = [datetime(2030, 1, 1, tzinfo=UTC)]
    ca = CertificateAuthority.load_or_create(
        tmp_path, trust_domain="cluster.local", clock=lambda: now[0]
    )
    holder = ServerCertificate(
        lambda: ca.issue_server(["localhost"], ["127.0.0.1"], ttl=timedelta(hours=2)),
        clock=lambda: now[0],
    )
    first = holder.current
    leaf = x509.load_pem_x509_certificates(first.chain_pem.encode())[0]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert holder._fetch() is None
    now[0] += timedelta(minutes=59)
    assert holder._fetch() is None
    now[0] += timedelta(minutes=2)
    assert holder._fetch() is not None
    assert holder.current.serial != first.serial
