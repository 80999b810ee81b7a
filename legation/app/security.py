"""Composition of the security features for `App` (only when `--ca-dir` is given).

Owns the CA, the certificate issuer and its rotation task, the xDS token
authority, the per-proxy SDS resources (`WorkloadSecrets`) and the TLS xDS
listener's certificate; builds the authenticator of each xDS listener.
Wiring only: the behaviour lives in `legation.security` (certificates, tokens),
`legation.security.workload_secrets` (which secrets a proxy gets),
`legation.xds.auth` / `keys` / `tls` (who is served what) and the
translators (how listeners and clusters use the secrets).

A rotation (`CertificateIssuer.on_rotate`) republishes only the connected
proxies that hold the rotated identity (`on_rotated`, set by `App` to
`Pipeline.refresh`).
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Callable, Iterable
from datetime import timedelta

import structlog

from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import MeshSecurity, SpiffeId
from legation.security import CertificateAuthority, CertificateIssuer, SdsMetrics, TokenAuthority
from legation.security.clock import Clock, utc_now
from legation.security.servercert import KeptServerCertificate
from legation.security.workload_secrets import WorkloadSecrets
from legation.settings import HostPort, Settings
from legation.translators import names
from legation.xds.auth import MeshNotReady, NodeAuthenticator, NodeClaim
from legation.xds.tls import ServerCertificate

_log = structlog.get_logger("legation.app.security")

SERVER_CERT_TTL = timedelta(days=30)  # renewed at half its lifetime (xds/tls.py)
_UNSPECIFIED = ("0.0.0.0", "::", "")


def mesh_security(settings: Settings) -> MeshSecurity:
    return MeshSecurity(mtls=settings.security, trust_domain=settings.trust_domain,
                        jwks_refresh_s=settings.jwks_refresh_s)


class Security:
    def __init__(self, settings: Settings, metrics: Metrics, *, clock: Clock = utc_now) -> None:
        if settings.ca_dir is None:
            raise ValueError("Security needs settings.ca_dir")
        self.settings = settings
        self.sds_metrics = SdsMetrics(metrics.registry, clock=clock)
        self.ca = CertificateAuthority.load_or_create(
            settings.ca_dir,
            trust_domain=settings.trust_domain,
            clock=clock,
            metrics=self.sds_metrics,
        )
        self.tokens = TokenAuthority.load_or_create(
            settings.ca_dir, settings.trust_domain, clock=clock
        )
        self.issuer = CertificateIssuer(
            self.ca,
            ttl=timedelta(seconds=settings.workload_cert_ttl_s),
            clock=clock,
            rng=random.Random(),
            on_rotate=self._rotated,
            metrics=self.sds_metrics,
        )
        self.secrets = WorkloadSecrets(self.issuer, self.ca)
        self.on_rotated: Callable[[Iterable[str]], None] | None = None
        self._clock = clock

    def authenticator(
        self, store: MeshStore, *, required: bool, listener: str
    ) -> NodeAuthenticator:
        def lookup(node_id: str) -> NodeClaim | None:
            if not store.ready:
                raise MeshNotReady
            parsed = names.parse_node_id(node_id)
            if parsed is None:
                return None
            name, namespace = parsed
            workload = store.snapshot().workload(namespace, name)
            return NodeClaim(
                namespace=namespace,
                workload=name,
                service_account=workload.service_account if workload is not None else None,
            )

        return NodeAuthenticator(self.tokens, lookup, required=required, listener=listener)

    def server_certificate(self, address: HostPort) -> ServerCertificate:
        """The TLS xDS listener's certificate: the listen address, loopback, `--xds-tls-san`."""
        dns, ips = server_names(address, self.settings.xds_tls_names)
        assert self.settings.ca_dir is not None
        kept = KeptServerCertificate(self.settings.ca_dir, dns=dns, ips=ips)
        return ServerCertificate(
            lambda: self.ca.issue_server(
                dns, ips, ttl=SERVER_CERT_TTL, namespace=self.settings.root_namespace
            ),
            clock=self._clock,
            kept=kept.load(self.ca.trust_bundle(), self._clock()),
            keep=kept.save,
        )

    def _rotated(self, identity: SpiffeId) -> None:
        nodes = self.secrets.nodes_of(identity)
        _log.info("sds.push-rotated", identity=str(identity), proxies=len(nodes))
        if self.on_rotated is not None and nodes:
            self.on_rotated(nodes)


def server_names(address: HostPort, extra: Iterable[str]) -> tuple[list[str], list[str]]:
    """(DNS names, IP addresses) the xDS server certificate must carry."""
    dns, ips = ["localhost"], ["127.0.0.1", "::1"]
    for name in (address.host, *extra):
        if name in _UNSPECIFIED:
            continue
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name.lower().rstrip("."))
    return sorted(set(dns)), sorted(set(ips))
