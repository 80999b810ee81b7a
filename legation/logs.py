"""Logging setup: structlog, console key-values by default or JSON lines.

Called once by the CLI; nothing is configured at import time.

Bounded whatever clients and manifests do (issue 13): every string value of an
event is clipped to MAX_VALUE_CHARS, and each event name is logged at most
BURST times per WINDOW_S seconds; the rest are counted, and the next event of
that name that is logged carries `suppressed` (how many were dropped) with
`suppressed_first` and `suppressed_last` (when). Errors are never dropped.

The libraries' own logging (urllib3's "Retrying ..." while the API server is down,
the Kubernetes client, gRPC) goes through the same renderer as structured events
named by their logger (`urllib3.connectionpool`, with the text in `detail`), at
most LIBRARY_BURST per logger per WINDOW_S, counted the same way.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, MutableMapping
from typing import Any

import structlog

MAX_VALUE_CHARS = 2048
BURST = 50
LIBRARY_BURST = 5
WINDOW_S = 10.0
_NEVER_DROPPED = frozenset({"error", "critical", "exception"})


class Bounded:
    """A structlog processor: clips long values, rate-limits each event name."""

    def __init__(self, *, burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self._burst, self._window = burst, window_s
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()  # logging happens on worker threads too
        # event -> [window start, logged in window, dropped, first dropped, last dropped]
        self._seen: dict[str, list[float]] = {}

    def __call__(self, logger: Any, method: str, event: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        for key, value in event.items():
            if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
                event[key] = (f"{value[:MAX_VALUE_CHARS]}... "
                              f"[{len(value)} characters, clipped]")
        name = str(event.get("event", ""))[:200]
        if method in _NEVER_DROPPED:
            return event
        now = self._clock()
        with self._lock:
            state = self._seen.get(name)
            if state is None or now - state[0] >= self._window:
                dropped = state[2] if state is not None else 0
                if state is not None and dropped:
                    event["suppressed"] = int(dropped)
                    event["suppressed_first"] = _iso(state[3])
                    event["suppressed_last"] = _iso(state[4])
                self._seen[name] = [now, 1, 0, 0.0, 0.0]
                if len(self._seen) > 10_000:  # names are ours, but stay bounded anyway
                    self._seen.clear()
                return event
            if state[1] < self._burst:
                state[1] += 1
                return event
            wall = self._wall()
            if not state[2]:
                state[3] = wall
            state[2] += 1
            state[4] = wall
        raise structlog.DropEvent


def _iso(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def configure(*, fmt: str = "console", level: str = "info") -> None:
    lvl = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        Bounded(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if fmt == "json":
        processors.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(sort_keys=True)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(lvl, logging.WARNING), handlers=[LibraryLogs()],
                        force=True)


class LibraryLogs(logging.Handler):
    """Standard-library log records (the libraries') as bounded structured events."""

    def __init__(self) -> None:
        super().__init__()
        self._bounded = Bounded(burst=LIBRARY_BURST)
        self._log = structlog.get_logger("legation.library")

    def emit(self, record: logging.LogRecord) -> None:
        try:
            detail = record.getMessage()
        except (TypeError, ValueError):  # a library's bad format string: keep the template
            detail = str(record.msg)
        event: MutableMapping[str, Any] = {"event": record.name, "detail": detail}
        method = "error" if record.levelno >= logging.ERROR else "warning"
        try:
            event = self._bounded(None, method, event)
        except structlog.DropEvent:
            return
        name = str(event.pop("event"))
        self._log.log(record.levelno, name, **event)
