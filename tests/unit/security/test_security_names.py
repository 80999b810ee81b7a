"""Security name formats (names.py): SNI and RBAC policy names round-trip."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from legation.translators import names

label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
fqdn = st.lists(label, min_size=1, max_size=5).map(".".join)
port = st.integers(min_value=1, max_value=65535)


@given(fqdn, port, st.one_of(st.just(""), label))
def test_outbound_sni_round_trip(host: str, number: int, subset: str) -> None:
    parsed = names.parse_outbound_sni(names.outbound_sni(host, number, subset))
    assert parsed is not None
    assert (parsed.host, parsed.port, parsed.subset) == (host, number, subset)


@given(label, st.lists(label, min_size=1, max_size=3).map(".".join), st.integers(0, 10_000))
def test_rbac_policy_round_trip(namespace: str, name: str, rule: int) -> None:
    assert names.parse_rbac_policy(names.rbac_policy(namespace, name, rule)) == (
        namespace,
        name,
        rule,
    )


def test_parsers_refuse_other_text() -> None:
    assert names.parse_outbound_sni("inbound_.9080_._.x") is None
    assert names.parse_outbound_sni("outbound_.0_._.x") is None
    assert names.parse_rbac_policy("ns[a]-policy[b]-rule[01]") is None
    assert names.parse_rbac_policy("policy[b]") is None
    assert names.WORKLOAD_SECRET == "default" and names.ROOT_SECRET == "ROOTCA"
