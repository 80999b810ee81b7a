"""The xDS listener's certificate survives a restart until its half-life (issue 13: after a
root rotation, a restart moved it to the new root at once and old bootstraps failed)."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from legation.security import CertificateAuthority
from legation.security.servercert import CERT_FILE, KEY_FILE, KeptServerCertificate
from legation.xds.tls import ServerCertificate

DNS, IPS = ["localhost"], ["127.0.0.1", "::1"]


def test_kept_until_half_life_from_a_trusted_root_with_the_same_names(tmp_path: Path) -> None:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain="cluster.local")
    kept = KeptServerCertificate(tmp_path, dns=DNS, ips=IPS)
    issued = []

    def issue():  # type: ignore[no-untyped-def]
        issued.append(ca.issue_server(DNS, IPS, ttl=timedelta(days=30)))
        return issued[-1]

    first = ServerCertificate(issue, clock=lambda: datetime.now(UTC), keep=kept.save)
    cert = first.current
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert (tmp_path / CERT_FILE).exists()

    bundle = ca.trust_bundle()
    again = kept.load(bundle, cert.not_before + timedelta(days=14))
    assert again is not None and again.serial == cert.serial  # a restart keeps it
    restarted = ServerCertificate(issue, clock=lambda: cert.not_before, kept=again)
    assert restarted.current.serial == cert.serial and len(issued) == 1

    half = cert.not_before + cert.lifetime / 2  # certificates are backdated a little
    assert kept.load(bundle, half - timedelta(seconds=1)) is not None
    assert kept.load(bundle, half) is None
    other_names = KeptServerCertificate(tmp_path, dns=["xds.example"], ips=IPS)
    assert other_names.load(bundle, cert.not_before) is None
    stranger = CertificateAuthority.load_or_create(tmp_path / "other", trust_domain="cluster.local")
    assert kept.load(stranger.trust_bundle(), cert.not_before) is None
