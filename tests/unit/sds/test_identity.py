"""SpiffeId parsing and printing (SPIFFE-ID.md §2), and the identity value types."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from legation.model import (
    SourceRef,
    SpiffeId,
    SpiffeIdError,
    TrustBundle,
    Workload,
    WorkloadKind,
)

_TD_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789.-_"
_SEG_CHARS = _TD_CHARS + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

trust_domains = st.text(_TD_CHARS, min_size=1, max_size=60)
segments = st.text(_SEG_CHARS, min_size=1, max_size=60).filter(lambda s: s not in (".", ".."))


@given(td=trust_domains, ns=segments, sa=segments)
def test_parse_and_str_round_trip(td: str, ns: str, sa: str) -> None:
    ident = SpiffeId(trust_domain=td, namespace=ns, service_account=sa)
    text = str(ident)
    assert text == f"spiffe://{td}/ns/{ns}/sa/{sa}"
    assert SpiffeId.parse(text) == ident


@given(st.text(max_size=80))
def test_parse_arbitrary_text_only_raises_spiffe_id_error(text: str) -> None:
    try:
        ident = SpiffeId.parse(text)
    except SpiffeIdError:
        return
    assert str(ident) == text  # whatever parses is canonical


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "does not start"),
        ("http://cluster.local/ns/a/sa/b", "does not start"),
        ("SPIFFE://cluster.local/ns/a/sa/b", "does not start"),
        ("spiffe:///ns/a/sa/b", "must not be empty"),
        ("spiffe://Cluster.local/ns/a/sa/b", "lowercase"),
        ("spiffe://cluster.local:8080/ns/a/sa/b", "lowercase"),
        ("spiffe://user@cluster.local/ns/a/sa/b", "lowercase"),
        ("spiffe://[::1]/ns/a/sa/b", "lowercase"),
        ("spiffe://clu%41ster/ns/a/sa/b", "lowercase"),
        ("spiffe://cluster.local", "no path"),
        ("spiffe://cluster.local/", "must not be empty"),
        ("spiffe://cluster.local/ns/a/sa/b/", "must not be empty"),
        ("spiffe://cluster.local/ns//sa/b", "must not be empty"),
        ("spiffe://cluster.local/ns/./sa/b", "relative"),
        ("spiffe://cluster.local/ns/../sa/b", "relative"),
        ("spiffe://cluster.local/ns/a/sa/b?x=1", "letters, digits"),
        ("spiffe://cluster.local/ns/a/sa/b#frag", "letters, digits"),
        ("spiffe://cluster.local/ns/a%20b/sa/b", "letters, digits"),
        ("spiffe://cluster.local/ns/a/sa", "expected the path"),
        ("spiffe://cluster.local/sa/b/ns/a", "expected the path"),
        ("spiffe://cluster.local/ns/a/sa/b/x", "expected the path"),
        ("spiffe://cluster.local/payments/web", "expected the path"),
        ("spiffe://" + "a" * 256 + "/ns/a/sa/b", "255"),
        ("spiffe://cluster.local/ns/a/sa/" + "b" * 2048, "2048"),
    ],
    ids=lambda v: v[:40] if isinstance(v, str) else None,
)
def test_parse_rejects(text: str, why: str) -> None:
    with pytest.raises(SpiffeIdError, match=why):
        SpiffeId.parse(text)


def test_constructor_validates() -> None:
    with pytest.raises(SpiffeIdError, match="lowercase"):
        SpiffeId(trust_domain="Example.org", namespace="a", service_account="b")
    with pytest.raises(SpiffeIdError, match="service account"):
        SpiffeId(trust_domain="example.org", namespace="a", service_account="b/c")


def test_for_workload_uses_namespace_and_service_account() -> None:
    wl = Workload(
        ref=SourceRef(kind="WorkloadEntry", namespace="shop", name="order-1"),
        kind=WorkloadKind.WORKLOAD_ENTRY,
        name="order-1",
        namespace="shop",
        address="127.0.0.10",
        service_account="order-sa",
    )
    assert str(SpiffeId.for_workload(wl, trust_domain="td.example")) == (
        "spiffe://td.example/ns/shop/sa/order-sa"
    )


def test_trust_bundle_pem_concatenates_oldest_first() -> None:
    bundle = TrustBundle(roots_pem=("A\n", "B"))
    assert bundle.pem == "A\nB\n"
