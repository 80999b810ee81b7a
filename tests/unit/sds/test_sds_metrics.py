"""SDS metrics on the server's registry: issuance counters, expiry gauges at scrape time."""

from __future__ import annotations

import random
from datetime import timedelta
from pathlib import Path

from prometheus_client import generate_latest

from legation.metrics import Metrics
from legation.security import CertificateAuthority, CertificateIssuer, SdsMetrics

from .helpers import TD, FakeTime, ident, write_plugin_layout

HOUR = timedelta(hours=1)


def _sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_counters_and_expiry_gauges(tmp_path: Path) -> None:
    clock, metrics = FakeTime(), Metrics()
    sds = SdsMetrics(metrics.registry, clock=clock)
    ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock, metrics=sds)
    issuer = CertificateIssuer(ca, ttl=HOUR, clock=clock, rng=random.Random(1), metrics=sds)
    a, b = ident(sa="a"), ident(sa="b")
    issuer.certificate(a)
    clock.advance(timedelta(minutes=10))
    issuer.certificate(b)
    ca.issue_server(["localhost"], [], ttl=HOUR)

    assert _sample(metrics, "legation_certificates_issued_total", {"kind": "workload"}) == 2
    assert _sample(metrics, "legation_certificates_issued_total", {"kind": "server"}) == 1
    expiry = "legation_certificate_expiry_seconds"
    assert _sample(metrics, expiry, {"identity": str(a)}) == 50 * 60
    assert _sample(metrics, expiry, {"identity": str(b)}) == 60 * 60
    root_left = _sample(metrics, "legation_root_expiry_seconds")
    assert root_left == (ca.root_expiry() - clock.now).total_seconds()
    assert root_left is not None and root_left > 9 * 365 * 86400
    assert _sample(metrics, "legation_ca_signer_expiry_seconds") == root_left

    clock.advance(timedelta(minutes=20))  # computed at scrape time, not when set
    assert _sample(metrics, expiry, {"identity": str(a)}) == 30 * 60
    assert issuer.rotate_due() == (a,)  # a: due at 27-30 min; b: not before 37 min
    assert _sample(metrics, "legation_certificate_rotations_total") == 1
    assert _sample(metrics, expiry, {"identity": str(a)}) == 60 * 60

    issuer.forget(a)
    assert _sample(metrics, expiry, {"identity": str(a)}) is None
    assert (
        b'legation_certificate_expiry_seconds{identity="spiffe://cluster.local/ns/shop/sa/b"}'
        in (generate_latest(metrics.registry))
    )


def test_plugin_ca_reports_root_and_intermediate_expiry(tmp_path: Path) -> None:
    clock, metrics = FakeTime(), Metrics()
    sds = SdsMetrics(metrics.registry, clock=clock)
    root, _ = write_plugin_layout(tmp_path, not_after=FakeTime().now + timedelta(days=30))
    CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=clock, metrics=sds)
    assert _sample(metrics, "legation_ca_signer_expiry_seconds") == 30 * 86400
    assert (
        _sample(metrics, "legation_root_expiry_seconds")
        == (root.not_valid_after_utc - clock.now).total_seconds()
    )
