"""The vocabulary and the observable state of root rotation (legation/security/rotation.py).

Phases, triggers, the answer to an operator's request, the record of a
rotation, the body of ``GET /debug/ca`` and the phase metrics. Read-only
views of the CA (legation/security/ca.py) and of the duty.

Each root in ``/debug/ca`` shows its fingerprint (SHA-256 of the DER
certificate), serial (hex, as Envoy's ``/certs`` prints it), validity,
whether it is in the trust bundle now, and its state:

- ``staged``: in the bundle, signs nothing yet;
- ``active``: signs new leaves;
- ``retiring``: signs nothing; trusted until ``retires_at``, the expiry of the
  last leaf it signed;
- ``retired``: out of the bundle.

An Istio plug-in CA's roots are ``trusted`` (the operator rotates them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from cryptography import x509
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from legation.security import CertificateAuthority, RootInfo, RootState
from legation.security.certs import fingerprint


@dataclass(frozen=True, slots=True, kw_only=True)
class RotationPolicy:
    rotate_before: timedelta | None = timedelta(days=365)  # None: no automatic rotation
    grace: timedelta = timedelta(minutes=2)  # longest wait for the proxies' ACKs
    check_every: timedelta = timedelta(hours=1)
    follower_sync: timedelta = timedelta(0)  # replicas sharing the CA: their reload delay
    workload_ttl: timedelta = timedelta(hours=24)
    ack_poll_s: float = 0.2
    retry_after_s: float = 10.0
    max_sleep_s: float = 60.0  # wake at least this often (notices wall-clock jumps)


@dataclass(frozen=True, slots=True, kw_only=True)
class AckState:
    """Streams asked for Secrets and still without the root, out of how many."""

    pending: tuple[str, ...]  # node ids, sorted, once each
    streams: int  # SDS streams of proxies that hold a ROOTCA


class Phase(StrEnum):
    IDLE = "idle"
    DISTRIBUTING = "distributing"  # new root staged: in the bundle, signs nothing yet
    REISSUING = "reissuing"  # new root active: workload certificates being re-issued
    RETIRING = "retiring"  # old root trusted until the last leaf it signed expires


class Trigger(StrEnum):
    AUTO = "auto"
    OPERATOR = "operator"
    RESUMED = "resumed"  # a staged root found when this replica started leading


class Refusal(StrEnum):
    IN_PROGRESS = "in-progress"
    PLUG_IN = "plug-in"
    NOT_LEADER = "not-leader"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """The answer to an operator request: the staged root's fingerprint, or a refusal."""

    fingerprint: str = ""
    refused: Refusal | None = None
    message: str = ""


@dataclass(slots=True, kw_only=True)
class RotationRecord:
    """One rotation, as /debug/ca shows it."""

    trigger: Trigger
    root: str  # the new root's fingerprint
    started_at: datetime
    phase: Phase = Phase.DISTRIBUTING
    phase_at: datetime | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # finished phase -> duration
    streams: int = 0
    pending: tuple[str, ...] = ()
    grace_expired: bool = False
    retired: str = ""  # the old root's fingerprint
    retires_at: datetime | None = None
    retired_at: datetime | None = None  # when the pruned bundle was pushed

    def enter(self, phase: Phase, now: datetime) -> None:
        start = self.phase_at or self.started_at
        self.seconds[str(self.phase)] = round((now - start).total_seconds(), 3)
        self.phase, self.phase_at = phase, now

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger": str(self.trigger), "root": self.root,
            "started_at": self.started_at.isoformat(), "phase": str(self.phase),
            "phase_seconds": dict(self.seconds), "proxies": self.streams,
            "pending_proxies": list(self.pending), "grace_expired": self.grace_expired,
            "retired_root": self.retired or None,
            "retires_at": self.retires_at.isoformat() if self.retires_at else None,
            "retired_at": self.retired_at.isoformat() if self.retired_at else None,
        }  # fmt: skip


class RotationState(Protocol):
    def phase(self) -> Phase: ...

    def pending_proxies(self) -> int: ...


def bundle_certs(ca: CertificateAuthority) -> list[x509.Certificate]:
    """The roots of the CA's trust bundle now, oldest first."""
    return [x509.load_pem_x509_certificate(p.encode()) for p in ca.trust_bundle().roots_pem]


def ca_debug(
    ca: CertificateAuthority,
    *,
    now: datetime,
    phase: str,
    leading: bool,
    leader: str,
    policy: RotationPolicy,
    rotation: dict[str, Any] | None,
) -> dict[str, Any]:
    trusted = {fingerprint(c): c for c in bundle_certs(ca)}
    if ca.plugged_in:
        roots = [_plugin_root(c) for c in trusted.values()]
    else:
        roots = [_root(r, trusted.get(r.fingerprint), now) for r in ca.roots()]
    before = policy.rotate_before
    expiry = ca.root_expiry()
    return {
        "mode": "plug-in" if ca.plugged_in else "self-managed",
        "trust_domain": ca.trust_domain,
        "phase": phase,
        "leading": leading,
        "leader": leader or None,
        "root_expires_at": expiry.isoformat(),
        "automatic_rotation": None if before is None or ca.plugged_in else {
            "rotate_before_s": before.total_seconds(),
            "due_at": (expiry - before).isoformat(),
        },
        "grace_s": policy.grace.total_seconds(),
        "roots": roots,
        "rotation": rotation,
    }  # fmt: skip


def _root(info: RootInfo, cert: x509.Certificate | None, now: datetime) -> dict[str, Any]:
    state = str(info.state)
    if info.state is RootState.RETIRED:
        state = "retiring" if info.signed_until is not None and info.signed_until > now else (
            "retired")  # fmt: skip
    return {
        "fingerprint": info.fingerprint,
        "serial": format(cert.serial_number, "x") if cert is not None else None,
        "state": state,
        "in_bundle": cert is not None,
        "not_before": info.not_before.isoformat(),
        "not_after": info.not_after.isoformat(),
        "staged_at": info.staged_at.isoformat() if info.staged_at else None,
        "retires_at": info.signed_until.isoformat()
        if info.state is RootState.RETIRED and info.signed_until
        else None,
    }


def _plugin_root(cert: x509.Certificate) -> dict[str, Any]:
    return {
        "fingerprint": fingerprint(cert),
        "serial": format(cert.serial_number, "x"),
        "state": "trusted",
        "in_bundle": True,
        "subject": cert.subject.rfc4514_string(),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "staged_at": None,
        "retires_at": None,
    }


class PhaseCollector(Collector):
    """legation_root_rotation_phase{phase} (1 for the current one) and the proxies
    the rotation still waits for, computed at scrape time."""

    def __init__(self, rotation: RotationState) -> None:
        self._rotation = rotation

    def describe(self) -> list[Metric]:
        return self._families(None)

    def collect(self) -> list[Metric]:
        return self._families(self._rotation)

    @staticmethod
    def _families(rotation: RotationState | None) -> list[Metric]:
        phase = GaugeMetricFamily(
            "legation_root_rotation_phase",
            "Root CA rotation phase of this replica: 1 for the current phase, 0 for the others.",
            labels=["phase"],
        )
        pending = GaugeMetricFamily(
            "legation_root_rotation_pending_proxies",
            "Proxies that have not yet ACKed the trust bundle with the new root.",
        )
        if rotation is not None:
            current = rotation.phase()
            for p in Phase:
                phase.add_metric([str(p)], 1.0 if p is current else 0.0)
            pending.add_metric([], float(rotation.pending_proxies()))
        return [phase, pending]
