"""Durations as Istio accepts them: Go duration strings, to millisecond precision.

Istio's CRDs validate durations with Kubernetes' `duration` format, which is
Go's `time.ParseDuration` (https://pkg.go.dev/time#ParseDuration): "a
possibly signed sequence of decimal numbers, each with optional fraction and
a unit suffix, such as "300ms", "-1.5h" or "2h45m". Valid time units are
"ns", "us" (or "µs"), "ms", "s", "m", "h"." Protobuf JSON's "1.5s" is one of
those. Istio then requires whole milliseconds and, for most fields, at least
1ms (istio/istio pkg/config/validation, ValidateDuration: "duration must be
greater than 1ms", "only durations to ms precision are supported").
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_NS_PER_UNIT = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 micro sign
    "μs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_MAX_NS = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds
NS_PER_MS = 1_000_000

EXPECTED = (
    "a duration such as 250ms, 5s, 1m or 1h30m (a number with a unit: ns, us, ms, s, m, h)"
)


class DurationError(ValueError):
    """Text that is not a duration; the message says why, as a sentence fragment."""


def parse_go_duration(text: str) -> int:
    """Nanoseconds of a Go duration string; DurationError when it is not one."""
    s = text.strip() if isinstance(text, str) else text
    if not s:
        raise DurationError("it is empty")
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    pos, total = 0, Decimal(0)
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            bare = re.fullmatch(r"\d+(\.\d*)?", s[pos:])
            if bare is not None:
                raise DurationError(f"{s[pos:]!r} has no unit")
            raise DurationError(f"{s[pos:]!r} is not a number followed by a unit")
        try:
            total += Decimal(m.group(1)) * _NS_PER_UNIT[m.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex only admits decimals
            raise DurationError(f"{m.group(1)!r} is not a number") from exc
        pos = m.end()
    if total > _MAX_NS:
        raise DurationError("it is longer than the largest duration (about 292 years)")
    return sign * int(total)


def to_milliseconds(nanos: int, *, allow_zero: bool) -> int:
    """Whole milliseconds, under Istio's rules; DurationError when they are broken."""
    if nanos < 0:
        raise DurationError("it is negative")
    if nanos == 0:
        if allow_zero:
            return 0
        raise DurationError("it must be at least 1ms")
    if nanos < NS_PER_MS:
        raise DurationError("it must be at least 1ms")
    if nanos % NS_PER_MS:
        raise DurationError("only whole milliseconds are supported")
    return nanos // NS_PER_MS
