"""`legation demo`'s tally of answers and its terminal view."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter

from legation.demo.convergence import ProxyView
from legation.demo.http import HttpResponse
from legation.demo.traffic import Tally, outcome
from legation.demo.view import ChangeEvent, Frame, ProxyRow, render, status_line, summary_line

V1, V2 = ("catalog.shop", "catalog-v1"), ("catalog.shop", "catalog-v2")


def answer(status: int, served_by: str, calls: list[dict[str, object]]) -> HttpResponse:
    body = json.dumps({"workload": served_by, "calls": calls}).encode()
    return HttpResponse(status=status, reason="", headers=(("x-served-by", served_by),), body=body)


def test_a_fan_out_answer_names_every_workload_that_served_it() -> None:
    ok = answer(200, "order-v1", [
        {"target": "catalog.shop:9080", "status": 200, "served_by": "catalog-v2"},
        {"target": "payment.shop:9080", "status": 200, "served_by": "payment-v1"},
    ])  # fmt: skip
    failed = answer(502, "order-v1", [
        {"target": "catalog.shop:9080", "status": 503, "served_by": None},
    ])  # fmt: skip

    assert outcome("order.shop:9080", ok) == (
        (
            ("order.shop", "order-v1"),
            ("catalog.shop", "catalog-v2"),
            ("payment.shop", "payment-v1"),
        ),
        None,
    )
    assert outcome("order.shop:9080", failed) == ((("order.shop", "order-v1"),), "HTTP 502")


def test_tally_keeps_totals_and_a_sliding_window() -> None:
    t = Tally()
    t.record((V1,), None, now=0.0)
    t.record((V2,), None, now=10.0)
    t.record((), "TimeoutError", now=10.5, detail="timed out")

    assert t.total == Counter({V1: 1, V2: 1})
    assert t.window(now=11.0) == Counter({V2: 1})
    assert (t.requests, t.error_count, t.last_error) == (3, 1, "TimeoutError: timed out")
    assert t.rate(now=11.0) == 2.0


def view(node: str, *, in_sync: bool, stream: str = "ads") -> ProxyView:
    return ProxyView(
        node_id=node,
        stream=stream,
        acked={"cds": "0123456789abcdef"},
        in_sync=in_sync,
        last_ack_at=1.0,
        nack="",
        refused="",
        changed_at=1.0,
    )


def frame() -> Frame:
    return Frame(
        elapsed=7.25,
        source="examples/shop",
        traffic="GET http://order.shop:9080/shop",
        requests=4,
        errors=Counter(),
        last_error="",
        rate=2.0,
        total=Counter({V1: 3, V2: 1}),
        window=Counter({V1: 1, V2: 1}),
        proxies=(
            ProxyRow(workload="frontend", delta=False, view=view("a", in_sync=True), in_mesh=True),
            ProxyRow(
                workload="catalog-v2",
                delta=True,
                view=view("b", in_sync=False, stream=""),
                in_mesh=False,
            ),
        ),
        startup=0.42,
        nacks=0,
        events=(ChangeEvent(at=2.5, title="remove WorkloadEntry catalog-v2", result="done"),),
    )


def test_render_shows_split_sync_and_changes() -> None:
    text = "\n".join(render(frame()))

    assert "00:07.2" in text
    assert "catalog.shop     catalog-v1          3   75.0%    50.0%  ██████████\n" in text
    assert "                 catalog-v2          1   25.0%    50.0%  ██████████\n" in text
    assert "1/1 proxies in sync · all ACKed 0.42s after the sidecars started · 0 NACKs" in text
    assert "frontend       ADS sotw   01234567\n" in text
    assert "catalog-v2     ADS delta  not in the mesh" in text
    assert "00:02.5  remove WorkloadEntry catalog-v2 → done" in text


def test_status_and_summary_lines() -> None:
    f = frame()

    assert status_line(f) == (
        "status 00:07.2  4 req  0 errors  catalog.shop: catalog-v1 50% catalog-v2 50%"
        "  |  1/1 proxies in sync"
    )
    assert summary_line(f) == (
        "summary requests=4 errors=0 catalog-v1=3 catalog-v2=1 in_sync=1/1 startup_s=0.420 nacks=0"
        " canary=- ingress=- external=-"
    )
    shown = dataclasses.replace(
        f, canary=((V2, 2),), identities=(("catalog-v2", "spiffe://cluster.local/ns/shop/sa/c"),),
        ingress="200 (served by order-v1; certificate for shop.example.com verified)",
        external="200 (served by rates.example.com, outside the mesh)")
    assert summary_line(shown).endswith(
        " canary=catalog-v2:2 identity.catalog-v2=spiffe://cluster.local/ns/shop/sa/c"
        " ingress=200 external=200")
    text = "\n".join(render(shown))
    assert "x-canary: true -> catalog-v2 x2" in text
    assert "spiffe://cluster.local/ns/shop/sa/c" in text
