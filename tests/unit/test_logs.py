"""Logs stay bounded whatever clients send (issue 13): clipped values, rate-limited names."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import structlog

from legation.logs import LIBRARY_BURST, MAX_VALUE_CHARS, Bounded, configure


def test_long_values_are_clipped() -> None:
    out = Bounded()(None, "warning", {"event": "xds.nack", "detail": "x" * 1_000_000})
    assert len(out["detail"]) < MAX_VALUE_CHARS + 60
    assert out["detail"].endswith("[1000000 characters, clipped]")


def test_repeats_are_counted_then_reported_with_first_and_last_seen() -> None:
    now = [0.0]
    bounded = Bounded(burst=3, window_s=10.0, clock=lambda: now[0], wall=lambda: 1.7e9 + now[0])

    def log(name: str, method: str = "warning") -> dict[str, Any] | None:
        try:
            return dict(bounded(None, method, {"event": name}))
        except structlog.DropEvent:
            return None

    kept = [log("xds.stream_rejected") for _ in range(1000)]
    assert sum(k is not None for k in kept) == 3
    assert log("other.event") is not None  # names are limited apart
    assert log("xds.stream_rejected", "error") is not None  # errors are never dropped
    now[0] = 11.0
    summary = log("xds.stream_rejected")
    assert summary is not None and summary["suppressed"] == 997
    assert summary["suppressed_first"] == "2023-11-14T22:13:20Z"
    assert summary["suppressed_last"] == "2023-11-14T22:13:20Z"
    assert "suppressed" not in (log("xds.stream_rejected") or {})


@pytest.mark.parametrize("method", ["info", "warning"])
def test_the_burst_is_per_window(method: str) -> None:
    now = [0.0]
    bounded = Bounded(burst=2, window_s=1.0, clock=lambda: now[0])
    dropped = 0
    for i in range(100):
        now[0] = i * 0.1
        try:
            bounded(None, method, {"event": "e"})
        except structlog.DropEvent:
            dropped += 1
    assert dropped == 100 - 2 * 10  # two per second over ten seconds


def test_library_logs_are_structured_and_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 14: an API-server outage made urllib3 print hundreds of unstructured
    "Retrying" lines; they are now events of their logger, at most LIBRARY_BURST each."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure(fmt="json", level="info")
    try:
        library = logging.getLogger("urllib3.connectionpool")
        for i in range(200):
            library.warning("Retrying (Retry(total=%d)) after connection broken: /api/v1", i)
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines() if x.strip()]
    finally:  # the captured stderr closes after this test: leave nothing writing to it
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)
    assert len(lines) == LIBRARY_BURST
    assert all(x["event"] == "urllib3.connectionpool" and x["level"] == "warning"
               for x in lines)
    assert lines[0]["detail"].startswith("Retrying (Retry(total=0))")
