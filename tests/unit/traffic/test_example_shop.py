"""examples/shop, traffic policy included, is a config `legation analyze` finds clean."""

from __future__ import annotations

from pathlib import Path

from legation.cli import analyze_dirs, main
from legation.model import VirtualService
from legation.sources.files import load_dirs

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def test_analyze_finds_nothing_in_the_shop(capsys: object) -> None:
    assert analyze_dirs([SHOP]) == []
    assert main(["analyze", str(SHOP)]) == 0


def test_the_shop_has_the_canary_and_the_order_policy() -> None:
    objects = load_dirs([SHOP]).objects
    routes = {o.name: o for o in objects if isinstance(o, VirtualService)}
    assert sorted(routes) == ["catalog", "order"]
    canary, split = routes["catalog"].http
    assert canary.match[0].headers[0].name == "x-canary"
    assert [(d.destination.subset, d.weight) for d in split.route] == [("v1", 90), ("v2", 10)]
    order = routes["order"].http[0]
    assert order.timeout_ms == 3000 and order.retries is not None and order.retries.attempts == 3
