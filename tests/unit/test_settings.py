from __future__ import annotations

from pathlib import Path

import pytest

from legation.settings import HostPort, Settings, SettingsError, debounce_from_env, parse_duration


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:15010", "127.0.0.1", 15010),
        ("[::1]:0", "::1", 0),
        ("localhost:80", "localhost", 80),
    ],
    ids=["ipv4", "ipv6", "name"],
)
def test_hostport_parses(text: str, host: str, port: int) -> None:
    hp = HostPort.parse(text, flag="--x")
    assert (hp.host, hp.port) == (host, port)
    assert HostPort.parse(str(hp), flag="--x") == hp


@pytest.mark.parametrize("text", ["15010", ":15010", "h:abc", "h:70000", "h:"], ids=str)
def test_hostport_rejects(text: str) -> None:
    with pytest.raises(SettingsError, match="--x"):
        HostPort.parse(text, flag="--x")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("100ms", 0.1), ("1s", 1.0), ("1.5", 1.5), ("30m", 1800.0), ("2h", 7200.0)],
    ids=str,
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, flag="--d") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["fast", "-1s", "1x"], ids=str)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(SettingsError, match="--d"):
        parse_duration(text, flag="--d")


def test_settings_rejects_missing_config_dir(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="not a readable directory"):
        Settings(config_dirs=(tmp_path / "nope",))


def test_settings_rejects_inverted_debounce() -> None:
    with pytest.raises(SettingsError, match="debounce"):
        Settings(debounce_quiet_s=2.0, debounce_max_s=1.0)


def test_debounce_from_env() -> None:
    assert debounce_from_env({"LEGATION_DEBOUNCE_QUIET": "0.05"}) == (0.05, None)
    with pytest.raises(SettingsError, match="LEGATION_DEBOUNCE_MAX"):
        debounce_from_env({"LEGATION_DEBOUNCE_MAX": "soon"})


def test_sizes_take_kubernetes_binary_suffixes() -> None:
    from legation.cli import _size

    assert [_size(t, flag="--x") for t in ("1048576", "512Ki", "16Mi", "1Gi")] == [
        2**20, 512 * 2**10, 16 * 2**20, 2**30]
    with pytest.raises(SettingsError, match="--x: expected a positive size such as 16Mi"):
        _size("16MB", flag="--x")
