"""Durations, RE2 checks and host names: the small validators traffic policy relies on."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legation.model.hosts import host_matches, qualify
from legation.sources.convert.duration import DurationError, parse_go_duration, to_milliseconds
from legation.sources.convert.regex import check_re2

MS = 1_000_000


@pytest.mark.parametrize(("text", "nanos"), [
    ("0", 0), ("1ms", MS), ("1.5s", 1_500 * MS), ("300ms", 300 * MS), ("1m", 60_000 * MS),
    ("1h30m", 5_400_000 * MS), ("2h45m10.5s", 9_910_500 * MS), ("250us", 250_000),
    ("250µs", 250_000), ("7ns", 7), (".5s", 500 * MS), ("-1s", -1_000 * MS), ("+2m", 120_000 * MS),
], ids=str)
def test_go_durations(text: str, nanos: int) -> None:
    assert parse_go_duration(text) == nanos


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"), ("1x", "not a number followed by a unit"), ("10", "has no unit"),
    ("s", "not a number"), ("1s2", "has no unit"), ("1 s", "not a number"),
    ("9999999999h", "longer than the largest duration"),
], ids=str)
def test_not_go_durations(text: str, why: str) -> None:
    with pytest.raises(DurationError, match=why):
        parse_go_duration(text)


@pytest.mark.parametrize(("nanos", "zero", "why"), [
    (0, False, "at least 1ms"), (999_999, False, "at least 1ms"), (1_500_000, False, "whole ms"),
    (-MS, True, "negative"),
], ids=str)
def test_istio_millisecond_rules(nanos: int, zero: bool, why: str) -> None:
    with pytest.raises(DurationError, match=why.replace("whole ms", "whole milliseconds")):
        to_milliseconds(nanos, allow_zero=zero)


@given(st.integers(min_value=1, max_value=10**9))
def test_milliseconds_round_trip(ms: int) -> None:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, rest = divmod(rest, 1000)
    text = "".join(f"{v}{u}" for v, u in ((h, "h"), (m, "m"), (s, "s"), (rest, "ms")) if v)
    assert to_milliseconds(parse_go_duration(text), allow_zero=False) == ms


@pytest.mark.parametrize("pattern", [
    r"^/api/v\d+/.*$", r"(?i)catalog", r"a(?i:b)c", r"(?P<id>[0-9]+)", r"(?<id>[0-9]+)",
    r"[[:alpha:]_]+", r"\p{Greek}", r"\x{1F600}", r"\Q1+1=2\E", r"a{2,40}", r"\012",
    r"(?U)a+", r"\Aab\z", r"[^\]]", r"x*?y+?", "", ".*",
], ids=str)
def test_valid_re2(pattern: str) -> None:
    assert check_re2(pattern) is None


@pytest.mark.parametrize(("pattern", "why"), [
    (r"(?=a)", "lookahead"), (r"(?!a)", "negative lookahead"), (r"(?<=a)b", "lookbehind"),
    (r"(?<!a)b", "negative lookbehind"), (r"(a)\1", "backreferences"),
    (r"(?P<n>a)(?P=n)", "named backreferences"), (r"(?>a)", "atomic groups"),
    (r"a++", "possessive"), (r"(?(1)a|b)", "conditionals"), (r"a\Z", r"\\Z"), (r"\Ga", r"\\G"),
    (r"a{1001}", "up to 1000"), (r"(?x)a b", "verbose"), (r"(?#c)a", "comments"),
    (r"[[:nope:]]", "POSIX class"), (r"\u0041", r"\\u"), (r"(a", "missing \\)"),
    (r"[a-", "never closed"), (r"*a", "nothing to repeat"), (r"a**", "multiple repeat"),
    ("a\\", "lone backslash"), (r"[z-a]", "bad character range"),
], ids=str)
def test_invalid_re2(pattern: str, why: str) -> None:
    problem = check_re2(pattern)
    assert problem is not None
    assert re.search(why, problem), problem
    assert "https://github.com/google/re2/wiki/Syntax" in problem


@pytest.mark.parametrize(("pattern", "size"), [
    (r"a{1000}", 1004), (r"a{2,1000}", 2002), (r"\pL+\p{Greek}", 1263), (r"[a-z]{1,50}", 103),
], ids=str)
def test_valid_re2_that_envoy_refuses_for_its_program_size(pattern: str, size: int) -> None:
    """Envoy rejects a regex whose RE2 program is larger than 100 (issue 13: `a{1000}` in
    one VirtualService froze the shared route configuration of every proxy)."""
    problem = check_re2(pattern)
    assert problem is not None
    assert f"program size is {size}, over Envoy's limit of 100" in problem


@given(st.text(alphabet="ab.*+?|()[]{}\\^$0123456789", max_size=12))
def test_re2_check_never_raises(pattern: str) -> None:
    result = check_re2(pattern)
    assert result is None or isinstance(result, str)


@pytest.mark.parametrize(("host", "fqdn", "expanded"), [
    ("reviews", "reviews.prod.svc.cluster.local", False),
    ("reviews.shop", "reviews.shop.svc.cluster.local", True),
    ("reviews.shop.svc", "reviews.shop.svc.cluster.local", True),
    ("ratings.shop", "ratings.shop", False),  # no such service: taken literally, as Istio
    ("reviews.shop.svc.cluster.local", "reviews.shop.svc.cluster.local", False),
    ("Example.COM.", "example.com", False),
    ("*.shop.svc.cluster.local", "*.shop.svc.cluster.local", False),
    ("10.0.0.1", "10.0.0.1", False),
], ids=str)
def test_qualify(host: str, fqdn: str, expanded: bool) -> None:
    known = {("shop", "reviews")}
    q = qualify(host, "prod", "cluster.local", lambda ns, n: (ns, n) in known)
    assert (q.fqdn, q.expanded) == (fqdn, expanded)


@pytest.mark.parametrize(("pattern", "host", "matches"), [
    ("*", "a.b", True), ("*.shop.svc.cluster.local", "catalog.shop.svc.cluster.local", True),
    ("*.svc.cluster.local", "catalog.shop.svc.cluster.local", True),
    ("*.shop.svc.cluster.local", "shop.svc.cluster.local", False),
    ("catalog.shop.svc.cluster.local", "catalog.shop.svc.cluster.local", True),
    ("catalog.shop.svc.cluster.local", "catalogx.shop.svc.cluster.local", False),
], ids=str)
def test_host_matches(pattern: str, host: str, matches: bool) -> None:
    assert host_matches(pattern, host) is matches
