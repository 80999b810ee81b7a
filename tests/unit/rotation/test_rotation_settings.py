"""`--root-rotate-before` and `--root-rotation-grace`: parsing, validation, the policy."""

from __future__ import annotations

import argparse
from datetime import timedelta
from pathlib import Path

import pytest

from legation.app.duties import FOLLOWER_SYNC_POLLS, rotation_policy
from legation.cli import _parser, _serve_settings
from legation.settings import Settings, SettingsError

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def _serve(*args: str) -> Settings:
    ns: argparse.Namespace = _parser().parse_args(["serve", "--config-dir", str(SHOP), *args])
    return _serve_settings(ns)


def test_defaults_rotate_a_year_before_expiry_and_wait_two_minutes() -> None:
    s = _serve()
    assert s.root_rotate_before_s == timedelta(days=365).total_seconds()
    assert s.root_rotation_grace_s == 120
    policy = rotation_policy(s, shared=False)
    assert policy.rotate_before == timedelta(days=365) and policy.grace == timedelta(minutes=2)
    assert policy.follower_sync == timedelta(0)
    assert policy.workload_ttl == timedelta(hours=24)


@pytest.mark.parametrize(
    ("flags", "before", "grace"),
    [(("--root-rotate-before", "off"), None, 120.0),
     (("--root-rotate-before", "90d", "--root-rotation-grace", "30s"), 90 * 86400.0, 30.0),
     (("--root-rotation-grace", "0"), 365 * 86400.0, 0.0)],
    ids=["off", "90d-30s", "no-grace"],
)  # fmt: skip
def test_flags(flags: tuple[str, ...], before: float | None, grace: float) -> None:
    s = _serve(*flags)
    assert (s.root_rotate_before_s, s.root_rotation_grace_s) == (before, grace)


@pytest.mark.parametrize(
    "flags",
    [("--root-rotate-before", "3650d"), ("--root-rotate-before", "0"),
     ("--root-rotate-before", "soon"), ("--root-rotation-grace=-1s",)],
    ids=["as-long-as-a-root-lives", "zero", "not-a-duration", "negative-grace"],
)  # fmt: skip
def test_bad_values_are_one_line_errors(flags: tuple[str, ...]) -> None:
    with pytest.raises(SettingsError, match=r"--root-rot"):
        _serve(*flags)


def test_replicas_sharing_the_ca_wait_for_each_other(tmp_path: Path) -> None:
    s = Settings(ca_dir=tmp_path, ca_secret_poll_s=10.0, workload_cert_ttl_s=3600.0)
    policy = rotation_policy(s, shared=True)
    assert policy.follower_sync == FOLLOWER_SYNC_POLLS * timedelta(seconds=10)
    assert policy.workload_ttl == timedelta(hours=1)
