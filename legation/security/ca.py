"""The certificate authority: workload SVIDs and the xDS server certificate.

`CertificateAuthority.load_or_create(ca_dir, trust_domain=...)` picks its key
material from `--ca-dir` (see `plugin.py` and `roots.py`):
1. Istio's plug-in layout (`ca-cert.pem`, `ca-key.pem`, `root-cert.pem`,
   `cert-chain.pem`): an intermediate; rotation is the operator's business.
2. a root made earlier (`root-cert.pem` + `root-key.pem`, or `roots.json`
   after a rotation): reused.
3. otherwise a new self-signed root, created safely against a concurrent
   creator.

Leaves are X.509 SVIDs (profile in `certs.py`), backdated five minutes for
clock skew and never outliving their signer. The issuer (`issuer.py`) caches
and rotates them; translators turn them into the `default` and `ROOTCA`
Secrets. Thread-safe: translation may run off the event loop.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from cryptography import x509

from legation.model import (
    SpiffeId,
    SpiffeIdError,
    TrustBundle,
    WorkloadCertificate,
    validate_trust_domain,
)
from legation.security import files
from legation.security.certs import (
    KeyType,
    LeafSpec,
    Signer,
    build_leaf,
    cert_to_pem,
    fingerprint,
    generate_key,
    key_to_pem,
    random_serial,
)
from legation.security.clock import Clock, utc_now
from legation.security.errors import CAError
from legation.security.metrics import IssuedKind, SdsMetrics
from legation.security.plugin import PluginCA, has_plugin_layout, load_plugin
from legation.security.roots import RootInfo, RootState, RootStore

_log = structlog.get_logger(__name__)

BACKDATE = timedelta(minutes=5)  # not_before = now - BACKDATE: tolerate peers' clock skew
CONTROL_PLANE_SERVICE_ACCOUNT = "legation"


def _check_trust_domain(trust_domain: str) -> None:
    try:
        validate_trust_domain(trust_domain)
    except SpiffeIdError as e:
        raise CAError(f"trust domain {trust_domain!r}: {e}") from None


class CertificateAuthority:
    """Signs workload and server certificates; owns the trust bundle and root rotation."""

    def __init__(
        self,
        *,
        ca_dir: Path,
        trust_domain: str,
        clock: Clock,
        plugin: PluginCA | None = None,
        roots: RootStore | None = None,
        metrics: SdsMetrics | None = None,
    ) -> None:
        if (plugin is None) == (roots is None):
            raise ValueError("exactly one of plugin and roots is required")
        _check_trust_domain(trust_domain)
        self.ca_dir = ca_dir
        self.trust_domain = trust_domain
        self._clock = clock
        self._plugin = plugin
        self._roots = roots
        self._metrics = metrics
        self._lock = threading.Lock()
        if metrics is not None:
            metrics.watch_authority(self)

    @classmethod
    def load_or_create(
        cls,
        ca_dir: Path,
        *,
        trust_domain: str,
        clock: Clock = utc_now,
        metrics: SdsMetrics | None = None,
    ) -> CertificateAuthority:
        """Load the CA in `ca_dir` (plug-in layout, or our root), creating a root if none."""
        _check_trust_domain(trust_domain)
        now = clock()
        if has_plugin_layout(ca_dir):
            plugin = load_plugin(ca_dir, now=now)
            _log.info(
                "sds.ca-loaded",
                dir=str(ca_dir),
                mode="plug-in",
                signer=plugin.signer.cert.subject.rfc4514_string(),
            )
            return cls(
                ca_dir=ca_dir,
                trust_domain=trust_domain,
                clock=clock,
                plugin=plugin,
                metrics=metrics,
            )
        files.ensure_dir(ca_dir)
        roots = RootStore.load_or_create(ca_dir, now=now)
        _log.info(
            "sds.ca-loaded", dir=str(ca_dir), mode="self-managed", root=fingerprint(roots.anchor())
        )
        return cls(
            ca_dir=ca_dir, trust_domain=trust_domain, clock=clock, roots=roots, metrics=metrics
        )

    @property
    def plugged_in(self) -> bool:
        """True when an operator-provided intermediate (Istio's plug-in layout) signs."""
        return self._plugin is not None

    # -- issuance ---------------------------------------------------------------------

    def issue(
        self, identity: SpiffeId, *, ttl: timedelta, key_type: KeyType = KeyType.ECDSA_P256
    ) -> WorkloadCertificate:
        """An X.509 SVID for `identity`: URI SAN only, server+client auth."""
        if identity.trust_domain != self.trust_domain:
            raise CAError(
                f"cannot issue {identity}: this CA serves trust domain {self.trust_domain!r}"
            )
        san = [x509.UniformResourceIdentifier(str(identity))]
        cert = self._issue(san, ttl=ttl, key_type=key_type, identity=identity, client_auth=True)
        self._count(IssuedKind.WORKLOAD)
        return cert

    def issue_server(
        self,
        dns_names: Sequence[str],
        ip_addresses: Sequence[str],
        *,
        ttl: timedelta,
        namespace: str = "istio-system",
        key_type: KeyType = KeyType.ECDSA_P256,
    ) -> WorkloadCertificate:
        """The xDS TLS listener's certificate: DNS and IP SANs plus the control plane's
        SPIFFE ID `spiffe://<td>/ns/<namespace>/sa/legation`."""
        identity = SpiffeId(
            trust_domain=self.trust_domain,
            namespace=namespace,
            service_account=CONTROL_PLANE_SERVICE_ACCOUNT,
        )
        san: list[x509.GeneralName] = []
        for name in dns_names:
            if not name or any(c.isspace() for c in name) or not name.isascii():
                raise CAError(f"server certificate: {name!r} is not an ASCII DNS name")
            san.append(x509.DNSName(name))
        for text in ip_addresses:
            try:
                san.append(x509.IPAddress(ipaddress.ip_address(text)))
            except ValueError:
                raise CAError(f"server certificate: {text!r} is not an IP address") from None
        san.append(x509.UniformResourceIdentifier(str(identity)))
        cert = self._issue(san, ttl=ttl, key_type=key_type, identity=identity, client_auth=False)
        self._count(IssuedKind.SERVER)
        return cert

    def _issue(
        self,
        san: Sequence[x509.GeneralName],
        *,
        ttl: timedelta,
        key_type: KeyType,
        identity: SpiffeId,
        client_auth: bool,
    ) -> WorkloadCertificate:
        if ttl <= timedelta(0):
            raise ValueError(f"ttl must be positive, got {ttl}")
        key = generate_key(key_type)  # outside the lock: RSA takes tens of milliseconds
        with self._lock:
            now = self._clock()
            signer = self._signer()
            not_before = max(now - BACKDATE, signer.cert.not_valid_before_utc)
            not_after = min(now + ttl, signer.cert.not_valid_after_utc)
            if not_after <= now:
                raise CAError(
                    f"{self.ca_dir}: the signing certificate expired at {not_after.isoformat()}"
                )
            spec = LeafSpec(
                sans=san,
                client_auth=client_auth,
                not_before=not_before,
                not_after=not_after,
                serial=random_serial(),
            )
            leaf = build_leaf(signer, key, spec)
            if self._roots is not None:
                self._roots.note_issued(not_after, now=now)
        return WorkloadCertificate(
            identity=identity,
            chain_pem=cert_to_pem(leaf) + "".join(signer.chain_pem),
            key_pem=key_to_pem(key),
            not_before=not_before,
            not_after=not_after,
            serial=spec.serial,
        )

    def _signer(self) -> Signer:
        if self._plugin is not None:
            return self._plugin.signer
        assert self._roots is not None
        return self._roots.signer()

    def _count(self, kind: IssuedKind) -> None:
        if self._metrics is not None:
            self._metrics.issued.labels(kind=str(kind)).inc()

    # -- trust ------------------------------------------------------------------------

    def trust_bundle(self) -> TrustBundle:
        """Every root a peer must trust now, oldest first."""
        if self._plugin is not None:
            return TrustBundle(roots_pem=tuple(cert_to_pem(c) for c in self._plugin.roots))
        assert self._roots is not None
        with self._lock:
            return TrustBundle(roots_pem=self._roots.bundle(self._clock()))

    def root_expiry(self) -> datetime:
        """When the root anchoring newly issued certificates expires."""
        if self._plugin is not None:
            return self._plugin.anchor.not_valid_after_utc
        assert self._roots is not None
        with self._lock:
            return self._roots.anchor().not_valid_after_utc

    def signer_expiry(self) -> datetime:
        with self._lock:
            return self._signer().cert.not_valid_after_utc

    def signer_fingerprint(self) -> str:
        """SHA-256 of the certificate that signs new leaves (a root, or the plug-in CA)."""
        with self._lock:
            return fingerprint(self._signer().cert)

    def roots(self) -> tuple[RootInfo, ...]:
        """The self-managed roots and their rotation state (empty for a plug-in CA)."""
        if self._roots is None:
            return ()
        with self._lock:
            return self._roots.infos()

    # -- root rotation ----------------------------------------------------------------

    def stage_new_root(self) -> TrustBundle:
        """Step 1 of root rotation: a new root joins the trust bundle but signs nothing.

        Publish the returned bundle (ROOTCA) to every proxy before step 2.
        """
        store = self._rotatable()
        with self._lock:
            root = store.stage(now=self._clock())
        _log.info("sds.root-staged", fingerprint=fingerprint(root.cert))
        return self.trust_bundle()

    def activate_staged_root(self, *, trusted_until_at_least: datetime | None = None) -> None:
        """Step 2: the staged root signs new leaves; the old root stays trusted until
        the last leaf it signed has expired (and at least until `trusted_until_at_least`,
        for leaves other replicas sharing this CA may have signed), then drops out of
        `trust_bundle()`.

        Re-issuing every workload certificate afterwards (`CertificateIssuer.rotate_all`)
        lets the old root retire sooner."""
        store = self._rotatable()
        with self._lock:
            old, new = store.activate(
                now=self._clock(), trusted_until_at_least=trusted_until_at_least
            )
        _log.info(
            "sds.root-activated",
            fingerprint=fingerprint(new.cert),
            retired=fingerprint(old.cert),
            trusted_until=old.signed_until,
        )

    def staged_at(self) -> datetime | None:
        """When the currently staged root was staged, or None."""
        return next((r.staged_at for r in self.roots() if r.state is RootState.STAGED), None)

    def reload(self, prepare: Callable[[Path], None] | None = None) -> None:
        """Swap in the key material now in `ca_dir` (another replica rotated the root and
        the directory is re-materialized from the shared Secret). `prepare(ca_dir)` runs
        under the CA's lock first, so that it can rewrite the files without an issuance
        of this CA writing `roots.json` in between. On `CAError` the CA keeps serving what it
        had in memory (the directory may already hold the new files)."""
        with self._lock:
            if prepare is not None:
                prepare(self.ca_dir)
            now = self._clock()
            if has_plugin_layout(self.ca_dir):
                plugin, roots = load_plugin(self.ca_dir, now=now), None
            else:
                plugin, roots = None, RootStore.load_or_create(self.ca_dir, now=now)
                if self._roots is not None:
                    roots.carry_over(self._roots)
            self._plugin, self._roots = plugin, roots
            signer = fingerprint(self._signer().cert)
        _log.info("sds.ca-reloaded", dir=str(self.ca_dir), signer=signer)

    def _rotatable(self) -> RootStore:
        if self._roots is None:
            raise CAError(
                f"{self.ca_dir}: holds an operator-provided (plug-in) CA; rotate it by "
                "replacing its files, Legation does not rotate it"
            )
        return self._roots
