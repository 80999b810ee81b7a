"""Root rotation: make-before-break trust, retirement after the last leaf, restarts."""

from __future__ import annotations

import json
import shutil
import stat
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.verification import VerificationError

from legation.security import CAError, CertificateAuthority, RootState

from .helpers import TD, FakeTime, certs_of, ident, leaf_of, openssl_verify, verify_client

HOUR = timedelta(hours=1)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def _load(path: Path, clock: FakeTime) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(path, trust_domain=TD, clock=clock)


def _roots(ca: CertificateAuthority) -> list[x509.Certificate]:
    return [certs_of(p)[0] for p in ca.trust_bundle().roots_pem]


def _signed_by(leaf: x509.Certificate, root: x509.Certificate) -> bool:
    try:
        leaf.verify_directly_issued_by(root)
    except Exception:
        return False
    return True


def test_new_root_is_trusted_before_it_signs_and_old_root_outlives_its_leaves(
    tmp_path: Path, clock: FakeTime
) -> None:
    ca = _load(tmp_path, clock)
    (old_root,) = _roots(ca)
    early = ca.issue(ident(), ttl=HOUR)

    clock.advance(timedelta(minutes=5))
    bundle = ca.stage_new_root()
    assert len(bundle.roots_pem) == 2
    old, new_root = _roots(ca)
    assert old == old_root and new_root != old_root  # oldest first
    # staged: in the bundle, but leaves are still signed by the old root
    during = ca.issue(ident(), ttl=HOUR)
    assert _signed_by(leaf_of(during), old_root)
    assert not _signed_by(leaf_of(during), new_root)

    clock.advance(timedelta(minutes=5))  # the bundle reached the proxies
    ca.activate_staged_root()
    after = ca.issue(ident(), ttl=HOUR)
    assert _signed_by(leaf_of(after), new_root)
    # every live leaf verifies against the bundle peers hold now
    for cert in (early, during, after):
        verify_client(cert, ca.trust_bundle().roots_pem, at=clock.now)

    last_old_leaf_expiry = during.not_after  # issued at +5 min, 1 h TTL
    clock.now = last_old_leaf_expiry - timedelta(seconds=1)
    assert _roots(ca) == [old_root, new_root]
    clock.now = last_old_leaf_expiry
    assert _roots(ca) == [new_root]  # pruned: no leaf of the old root is alive
    with pytest.raises(VerificationError):
        verify_client(during, ca.trust_bundle().roots_pem, at=clock.now - timedelta(seconds=1))
    verify_client(after, ca.trust_bundle().roots_pem, at=clock.now)


def test_root_info_reports_states(tmp_path: Path, clock: FakeTime) -> None:
    ca = _load(tmp_path, clock)
    ca.issue(ident(), ttl=HOUR)
    assert [r.state for r in ca.roots()] == [RootState.ACTIVE]
    ca.stage_new_root()
    assert [r.state for r in ca.roots()] == [RootState.ACTIVE, RootState.STAGED]
    assert ca.staged_at() == clock.now
    ca.activate_staged_root()
    retired, active = ca.roots()
    assert (retired.state, active.state) == (RootState.RETIRED, RootState.ACTIVE)
    assert retired.signed_until == clock.now + HOUR
    assert ca.staged_at() is None


def test_two_step_api_guards(tmp_path: Path, clock: FakeTime) -> None:
    ca = _load(tmp_path, clock)
    with pytest.raises(CAError, match="no staged root"):
        ca.activate_staged_root()
    ca.stage_new_root()
    with pytest.raises(CAError, match="already staged"):
        ca.stage_new_root()


def test_a_root_that_signed_nothing_is_dropped_at_once(tmp_path: Path, clock: FakeTime) -> None:
    ca = _load(tmp_path, clock)
    ca.stage_new_root()
    new_root = _roots(ca)[1]
    ca.activate_staged_root()
    assert _roots(ca) == [new_root]


def test_staged_and_active_roots_survive_a_restart(tmp_path: Path, clock: FakeTime) -> None:
    ca = _load(tmp_path, clock)
    (old_root,) = _roots(ca)
    cert = ca.issue(ident(), ttl=HOUR)
    ca.stage_new_root()

    restarted = _load(tmp_path, clock)
    assert restarted.trust_bundle() == ca.trust_bundle()
    assert _signed_by(leaf_of(restarted.issue(ident(), ttl=HOUR)), old_root)  # still staged

    clock.advance(timedelta(minutes=1))
    restarted.activate_staged_root()
    new_root = _roots(restarted)[1]
    again = _load(tmp_path, clock)
    assert _roots(again) == [old_root, new_root]
    assert _signed_by(leaf_of(again.issue(ident(), ttl=HOUR)), new_root)
    verify_client(cert, again.trust_bundle().roots_pem, at=clock.now)
    # the retired root's key is gone; the new key is private
    state = json.loads((tmp_path / "roots.json").read_text())
    assert [r["state"] for r in state["roots"]] == ["retired", "active"]
    assert not (tmp_path / "root-key.pem").exists()
    new_key = tmp_path / state["roots"][1]["key"]
    assert stat.S_IMODE(new_key.stat().st_mode) == 0o600


def test_leaves_issued_before_a_restart_keep_the_old_root_trusted(
    tmp_path: Path, clock: FakeTime
) -> None:
    ca = _load(tmp_path, clock)
    (old_root,) = _roots(ca)
    cert = ca.issue(ident(), ttl=HOUR)  # then the process stops

    clock.advance(timedelta(minutes=1))
    restarted = _load(tmp_path, clock)  # knows nothing of that leaf but what roots.json says
    restarted.stage_new_root()
    restarted.activate_staged_root()
    clock.now = cert.not_after - timedelta(seconds=1)
    assert old_root in _roots(restarted)
    verify_client(cert, restarted.trust_bundle().roots_pem, at=clock.now)


def test_the_watermark_is_reserved_ahead_not_written_per_leaf(
    tmp_path: Path, clock: FakeTime
) -> None:
    ca = _load(tmp_path, clock)
    ca.issue(ident(), ttl=HOUR)
    state = tmp_path / "roots.json"
    first = state.read_text()
    clock.advance(timedelta(minutes=30))
    ca.issue(ident(), ttl=HOUR)  # expires within the reservation: no write
    assert state.read_text() == first
    clock.advance(timedelta(minutes=45))
    ca.issue(ident(), ttl=HOUR)  # beyond it: the reservation moves ahead first
    assert state.read_text() != first


def test_corrupt_state_file_names_the_file(tmp_path: Path, clock: FakeTime) -> None:
    _load(tmp_path, clock).issue(ident(), ttl=HOUR)
    (tmp_path / "roots.json").write_text("{not json")
    with pytest.raises(CAError, match=r"roots.json: not valid JSON"):
        _load(tmp_path, clock)
    (tmp_path / "roots.json").write_text('{"format": 1, "roots": []}')
    with pytest.raises(CAError, match=r"roots.json: expected exactly one active root"):
        _load(tmp_path, clock)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_openssl_picks_the_right_root_among_two_with_the_same_name(
    tmp_path: Path, clock: FakeTime
) -> None:
    ca = _load(tmp_path / "ca", clock)
    before = ca.issue(ident(), ttl=HOUR)
    ca.stage_new_root()
    ca.activate_staged_root()
    after = ca.issue(ident(), ttl=HOUR)
    roots = ca.trust_bundle().roots_pem
    assert len({certs_of(r)[0].subject for r in roots}) == 1  # same subject, told apart by AKI
    for cert in (before, after):
        done = openssl_verify(tmp_path, cert, roots, at=clock.now, purpose="sslclient")
        assert done.returncode == 0, done.stderr
        verify_client(cert, roots, at=clock.now)
