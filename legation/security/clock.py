"""Injected time: every component of `legation.security` takes a `Clock` so tests control it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]  # must return timezone-aware datetimes


def utc_now() -> datetime:
    return datetime.now(UTC)
