"""Self-managed roots in `--ca-dir`: creation, reuse, rotation, persistence.

Files:
- `root-cert.pem`, `root-key.pem`: the first root, created on an empty
  directory (ECDSA P-256, 10 years) or provided by the operator.
- `root-<fingerprint>-cert.pem`, `-key.pem`: roots created by rotation.
- `roots.json`: once it exists, the authoritative list of roots, oldest
  first, each `staged` (trusted, not signing yet), `active` (signing) or
  `retired` (trusted until its last leaf expired; its key is deleted). It is
  rewritten atomically; writing it is the commit point of every change, so a
  crash leaves either the old or the new state, plus at worst unused files.

Rotation is make-before-break: `stage` puts a new root in the bundle;
`activate` (after that bundle has reached the proxies) makes it sign and
retires the old one, which stays trusted until `signed_until`, the latest
expiry of any leaf it signed. That watermark must survive restarts, so the
active root's record carries a write-ahead reservation: before a leaf that
expires after the reservation is handed out, the reservation moves to one
more leaf lifetime beyond it. One process writes a `--ca-dir` at a time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import structlog
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from legation.security import files
from legation.security.certs import (
    KeyType,
    Signer,
    SigningKey,
    build_root,
    cert_to_pem,
    fingerprint,
    generate_key,
    is_ca,
    key_to_pem,
    load_certs,
    load_key,
    matches_key,
)
from legation.security.errors import CAError

_log = structlog.get_logger(__name__)

ROOT_CERT = "root-cert.pem"
ROOT_KEY = "root-key.pem"
STATE_FILE = "roots.json"
STATE_FORMAT = 1
ROOT_LIFETIME = timedelta(days=3650)
ROOT_BACKDATE = timedelta(minutes=5)


class RootState(StrEnum):
    STAGED = "staged"  # in the trust bundle, signs nothing yet
    ACTIVE = "active"  # signs new leaves
    RETIRED = "retired"  # trusted until its last leaf expired; key deleted


@dataclass(frozen=True, slots=True, kw_only=True)
class RootInfo:
    """A root as the admin API and logs show it."""

    fingerprint: str  # SHA-256 of the DER certificate, hex
    state: RootState
    not_before: datetime
    not_after: datetime
    signed_until: datetime | None  # the latest expiry of a leaf it signed, if known
    staged_at: datetime | None


@dataclass(frozen=True, slots=True, kw_only=True)
class _Root:
    cert: x509.Certificate
    cert_file: str
    key: SigningKey | None
    key_file: str | None
    state: RootState
    signed_until: datetime | None = None  # active: persisted reservation; retired: final
    staged_at: datetime | None = None

    def info(self) -> RootInfo:
        return RootInfo(
            fingerprint=fingerprint(self.cert),
            state=self.state,
            not_before=self.cert.not_valid_before_utc,
            not_after=self.cert.not_valid_after_utc,
            signed_until=self.signed_until,
            staged_at=self.staged_at,
        )


def _new_root_files(ca_dir: Path, *, now: datetime, cert_name: str, key_name: str) -> _Root:
    """Create (or, when a concurrent creator won, load) a root key and certificate."""
    key_path, cert_path = ca_dir / key_name, ca_dir / cert_name
    key: SigningKey = generate_key(KeyType.ECDSA_P256)
    if not files.create_exclusive(key_path, key_to_pem(key).encode(), mode=files.KEY_MODE):
        key = load_key(files.read_key_bytes(key_path), key_path)  # another process won
    if not cert_path.exists():
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CAError(f"{key_path}: a new root needs an ECDSA P-256 key")
        cert = build_root(key, not_before=now - ROOT_BACKDATE, not_after=now + ROOT_LIFETIME)
        files.create_exclusive(cert_path, cert_to_pem(cert).encode(), mode=files.CERT_MODE)
    return _load_root(ca_dir, cert_name, key_name, RootState.ACTIVE)


def _load_root(ca_dir: Path, cert_name: str, key_name: str | None, state: RootState) -> _Root:
    cert_path = ca_dir / cert_name
    cert = load_certs(files.read_bytes(cert_path), cert_path)[0]
    if not is_ca(cert):
        raise CAError(f"{cert_path}: not a CA certificate (needs basicConstraints CA:true)")
    key = None
    if key_name is not None:
        key_path = ca_dir / key_name
        key = load_key(files.read_key_bytes(key_path), key_path)
        if not matches_key(cert, key):
            raise CAError(f"{key_path}: is not the key of the certificate in {cert_name}")
    return _Root(cert=cert, cert_file=cert_name, key=key, key_file=key_name, state=state)


def _time(value: Any, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise CAError(f"{where}: expected an ISO 8601 time, got {value!r}") from None


def _record(ca_dir: Path, raw: Any, where: str) -> _Root:
    if not isinstance(raw, dict) or not isinstance(raw.get("cert"), str):
        raise CAError(f"{where}: expected an object with a 'cert' file name")
    try:
        state = RootState(str(raw.get("state")))
    except ValueError:
        raise CAError(f"{where}: state must be staged, active or retired") from None
    key_file = raw.get("key") if state is not RootState.RETIRED else None
    if state is not RootState.RETIRED and not isinstance(key_file, str):
        raise CAError(f"{where}: a {state} root needs its 'key' file name")
    root = _load_root(ca_dir, raw["cert"], key_file, state)
    return replace(
        root,
        signed_until=_time(raw.get("signed_until"), where),
        staged_at=_time(raw.get("staged_at"), where),
    )


def _load_state(ca_dir: Path) -> list[_Root]:
    path = ca_dir / STATE_FILE
    try:
        doc = json.loads(files.read_bytes(path))
    except (ValueError, UnicodeDecodeError) as e:
        raise CAError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != STATE_FORMAT:
        raise CAError(f"{path}: expected an object with format {STATE_FORMAT}")
    raw_roots = doc.get("roots")
    if not isinstance(raw_roots, list):
        raise CAError(f"{path}: expected a 'roots' list")
    roots = [_record(ca_dir, r, f"{path} roots[{i}]") for i, r in enumerate(raw_roots)]
    states = [r.state for r in roots]
    if states.count(RootState.ACTIVE) != 1 or states.count(RootState.STAGED) > 1:
        raise CAError(f"{path}: expected exactly one active root and at most one staged root")
    return roots


def _latest(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


class RootStore:
    """The roots of a self-managed CA and their persisted state. Not thread-safe:
    `CertificateAuthority` serializes calls."""

    def __init__(self, ca_dir: Path, roots: list[_Root]) -> None:
        self._dir = ca_dir
        self._roots = roots
        # Leaves signed by the active root before this process: covered by its
        # persisted reservation; leaves signed since: tracked exactly.
        self._floor = self._active.signed_until
        self._issued_max: datetime | None = None

    @classmethod
    def load_or_create(cls, ca_dir: Path, *, now: datetime) -> RootStore:
        if (ca_dir / STATE_FILE).exists():
            store = cls(ca_dir, _load_state(ca_dir))
        else:
            cert_path, key_path = ca_dir / ROOT_CERT, ca_dir / ROOT_KEY
            if cert_path.exists() and not key_path.exists():
                raise CAError(f"{key_path}: missing; the root in {ROOT_CERT} needs its key to sign")
            created = not key_path.exists()
            root = _new_root_files(ca_dir, now=now, cert_name=ROOT_CERT, key_name=ROOT_KEY)
            if created:
                _log.info("sds.root-created", dir=str(ca_dir), fingerprint=fingerprint(root.cert))
            store = cls(ca_dir, [root])
        active = store._active.cert
        if active.not_valid_after_utc <= now:
            raise CAError(
                f"{ca_dir / store._active.cert_file}: the active root expired at "
                f"{active.not_valid_after_utc.isoformat()}"
            )
        return store

    @property
    def _active(self) -> _Root:
        return next(r for r in self._roots if r.state is RootState.ACTIVE)

    @property
    def staged(self) -> _Root | None:
        return next((r for r in self._roots if r.state is RootState.STAGED), None)

    def signer(self) -> Signer:
        active = self._active
        assert active.key is not None  # loading guarantees an active root has its key
        return Signer(cert=active.cert, key=active.key)

    def anchor(self) -> x509.Certificate:
        return self._active.cert

    def bundle(self, now: datetime) -> tuple[str, ...]:
        """Retired roots still covering a live leaf, the active root, the staged root."""
        return tuple(cert_to_pem(r.cert) for r in self._roots if self._trusted(r, now))

    @staticmethod
    def _trusted(root: _Root, now: datetime) -> bool:
        if root.state is not RootState.RETIRED:
            return True
        return root.signed_until is not None and root.signed_until > now

    def infos(self) -> tuple[RootInfo, ...]:
        return tuple(r.info() for r in self._roots)

    def note_issued(self, not_after: datetime, *, now: datetime) -> None:
        """Record a leaf of the active root; reserve ahead in roots.json before it is used."""
        if self._issued_max is None or not_after > self._issued_max:
            self._issued_max = not_after
        active = self._active
        if active.signed_until is not None and not_after <= active.signed_until:
            return
        reserved = not_after + max(not_after - now, timedelta(0))
        self._replace(active, replace(active, signed_until=reserved))
        try:
            self._save()
        except CAError as e:
            # Issuance goes on; only a later rotation after a restart could prune early.
            _log.warning("sds.root-state-write-failed", error=str(e))

    def stage(self, *, now: datetime) -> _Root:
        if self.staged is not None:
            raise CAError(
                f"{self._dir / STATE_FILE}: a new root is already staged; activate it first"
            )
        key = generate_key(KeyType.ECDSA_P256)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        cert = build_root(key, not_before=now - ROOT_BACKDATE, not_after=now + ROOT_LIFETIME)
        stem = f"root-{fingerprint(cert)[:16]}"
        files.create_exclusive(
            self._dir / f"{stem}-key.pem", key_to_pem(key).encode(), mode=files.KEY_MODE
        )
        files.create_exclusive(
            self._dir / f"{stem}-cert.pem", cert_to_pem(cert).encode(), mode=files.CERT_MODE
        )
        root = _Root(
            cert=cert,
            cert_file=f"{stem}-cert.pem",
            key=key,
            key_file=f"{stem}-key.pem",
            state=RootState.STAGED,
            staged_at=now,
        )
        self._commit([*(r for r in self._roots if self._trusted(r, now)), root])
        return root

    def activate(
        self, *, now: datetime, trusted_until_at_least: datetime | None = None
    ) -> tuple[_Root, _Root]:
        """The staged root signs from now on; the old one retires. Returns (old, new).

        `trusted_until_at_least`: keep the old root trusted at least until then, for
        leaves this store cannot know of (other replicas sharing the CA sign with the
        old root until they reload the new state)."""
        staged = self.staged
        if staged is None:
            raise CAError(f"{self._dir / STATE_FILE}: no staged root to activate; stage one first")
        old = self._active
        known = [
            t for t in (self._floor, self._issued_max, trusted_until_at_least) if t is not None
        ]
        retired = replace(
            old,
            state=RootState.RETIRED,
            key=None,
            key_file=None,
            signed_until=max(known) if known else now,
        )
        new = replace(staged, state=RootState.ACTIVE, signed_until=None)
        roots = [retired if r is old else new if r is staged else r for r in self._roots]
        self._commit([r for r in roots if self._trusted(r, now)])
        self._floor, self._issued_max = None, None
        if old.key_file is not None:
            files.remove(self._dir / old.key_file)
        return retired, new

    def carry_over(self, previous: RootStore) -> None:
        """This store was reloaded from the directory `previous` served (another replica
        changed it): keep what `previous` knew of the leaves its active root signed,
        while that root is still active here."""
        if fingerprint(previous._active.cert) != fingerprint(self._active.cert):
            return
        self._floor = _latest(self._floor, previous._floor)
        self._issued_max = _latest(self._issued_max, previous._issued_max)

    def _replace(self, old: _Root, new: _Root) -> None:
        self._roots = [new if r is old else r for r in self._roots]

    def _commit(self, roots: list[_Root]) -> None:
        previous, self._roots = self._roots, roots
        try:
            self._save()
        except CAError:
            self._roots = previous
            raise

    def _save(self) -> None:
        doc = {
            "format": STATE_FORMAT,
            "roots": [
                {
                    "cert": r.cert_file,
                    "key": r.key_file,
                    "state": str(r.state),
                    "signed_until": _iso(r.signed_until),
                    "staged_at": _iso(r.staged_at),
                }
                for r in self._roots
            ],
        }
        data = (json.dumps(doc, indent=2) + "\n").encode()
        files.replace(self._dir / STATE_FILE, data, mode=files.KEY_MODE)
