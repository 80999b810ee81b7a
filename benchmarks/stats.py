"""Small measuring helpers: percentiles, timing, process CPU and memory, a table printer.

Process figures come from the kernel (`resource.getrusage`, /proc/self/status),
so they include every thread of the process: gRPC's C core and the
translation worker thread as well as the event loop.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(values: Sequence[float]) -> dict[str, float | int]:
    """count, p50, p90, max (and min) of a sample."""
    return {
        "count": len(values),
        "min": min(values) if values else math.nan,
        "p50": percentile(values, 50),
        "p90": percentile(values, 90),
        "max": max(values) if values else math.nan,
    }


def timed(fn: Callable[[], T], *, repeat: int = 1) -> tuple[T, dict[str, float]]:
    """Run `fn` `repeat` times; its last result, and min/median seconds."""
    gc.collect()
    started = time.perf_counter()
    result = fn()
    times = [time.perf_counter() - started]
    for _ in range(repeat - 1):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return result, {"min_s": min(times), "median_s": statistics.median(times), "runs": len(times)}


def cpu_seconds() -> float:
    """User + system CPU of this process so far (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds_with_children() -> float:
    """CPU of this process and of every descendant it has reaped (servers, clients, Envoys)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def machine_busy_seconds() -> float:
    """CPU seconds every process on the machine has been busy since boot (/proc/stat).

    Compared with our own processes' CPU over the same window, it shows how
    much of the machine something else was using (other people's test runs).
    """
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in first[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_average() -> tuple[float, float, float]:
    try:
        return os.getloadavg()
    except OSError:
        return (math.nan, math.nan, math.nan)


def rss_bytes() -> int:
    """Resident set size of this process now (VmRSS), after a garbage collection."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def table(title: str, header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain text table with a title line."""
    cells = [[str(h) for h in header], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [title]
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if n and i else c.ljust(w)
                               for i, (c, w) in enumerate(zip(row, widths, strict=True))))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
