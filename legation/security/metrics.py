"""The CA's and issuer's Prometheus metrics, on the registry of `legation.metrics.Metrics`.

Counters are incremented by the CA and the issuer; expiry gauges are computed
at scrape time from what the CA and issuer hold (a stored gauge would go
stale between rotations):

- `legation_certificates_issued_total{kind}`: kind is `workload` or `server`.
- `legation_certificate_rotations_total`: workload certificates re-issued by rotation.
- `legation_certificate_expiry_seconds{identity}`: seconds until the earliest
  expiry of the certificates held for each SPIFFE identity.
- `legation_root_expiry_seconds`: seconds until the root that anchors the
  certificates being issued expires.
- `legation_ca_signer_expiry_seconds`: seconds until the signing certificate
  (the root itself, or the plug-in intermediate) expires.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from legation.model import SpiffeId


class IssuedKind(StrEnum):
    WORKLOAD = "workload"
    SERVER = "server"


class CertificateSource(Protocol):
    def expiries(self) -> Mapping[SpiffeId, datetime]: ...


class AuthoritySource(Protocol):
    def root_expiry(self) -> datetime: ...

    def signer_expiry(self) -> datetime: ...


class _ExpiryCollector(Collector):
    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.issuers: list[CertificateSource] = []
        self.authorities: list[AuthoritySource] = []

    def describe(self) -> Iterable[Metric]:
        return self._families()

    def collect(self) -> Iterable[Metric]:
        now = self._clock()
        identity, root, signer = self._families()
        earliest: dict[SpiffeId, datetime] = {}
        for source in self.issuers:
            for ident, not_after in source.expiries().items():
                earliest[ident] = min(not_after, earliest.get(ident, not_after))
        for ident in sorted(earliest):
            identity.add_metric([str(ident)], (earliest[ident] - now).total_seconds())
        for ca in self.authorities:
            root.add_metric([], (ca.root_expiry() - now).total_seconds())
            signer.add_metric([], (ca.signer_expiry() - now).total_seconds())
        return [identity, root, signer]

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily(
                "legation_certificate_expiry_seconds",
                "Seconds until the earliest expiry of the workload certificates of an identity.",
                labels=["identity"],
            ),
            GaugeMetricFamily(
                "legation_root_expiry_seconds",
                "Seconds until the root that anchors newly issued certificates expires.",
            ),
            GaugeMetricFamily(
                "legation_ca_signer_expiry_seconds",
                "Seconds until the certificate that signs workload certificates expires.",
            ),
        ]


class SdsMetrics:
    """Register once per running server; pass to the CA and the issuer."""

    def __init__(self, registry: CollectorRegistry, *, clock: Callable[[], datetime]) -> None:
        self.issued = Counter(
            "legation_certificates_issued",
            "Certificates issued by the CA, by kind.",
            ["kind"],
            registry=registry,
        )
        self.rotations = Counter(
            "legation_certificate_rotations",
            "Workload certificates re-issued by rotation.",
            registry=registry,
        )
        self._collector = _ExpiryCollector(clock)
        registry.register(self._collector)

    def watch_issuer(self, issuer: CertificateSource) -> None:
        self._collector.issuers.append(issuer)

    def watch_authority(self, ca: AuthoritySource) -> None:
        self._collector.authorities.append(ca)
