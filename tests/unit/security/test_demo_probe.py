"""The demo's authorization probe: who POSTs to payment, through which sidecar."""

from __future__ import annotations

from pathlib import Path

from legation.demo.plan import make_plan
from legation.demo.probe import probe_calls, title
from legation.mesh.store import MeshStore
from legation.sources.files import load_dirs

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def test_probe_calls_payment_from_the_client_and_from_order() -> None:
    loaded = load_dirs([SHOP])
    store = MeshStore()
    store.replace_source("shop", loaded.objects, loaded.diagnostics)
    plan = make_plan(store.snapshot(), SHOP)
    calls = probe_calls(plan)
    assert [(c.caller, c.address, c.target) for c in calls] == [
        ("frontend", "127.0.10.1", "payment.shop:9080"),
        ("order-v1", "127.0.10.2", "payment.shop:9080"),
    ]
    assert title(calls[0]) == "frontend → POST payment.shop:9080/pay"


def test_shop_security_policies_load_cleanly() -> None:
    loaded = load_dirs([SHOP])
    assert [d.format() for d in loaded.diagnostics] == []
    kinds = sorted(
        type(o).__name__
        for o in loaded.objects
        if "Authentication" in type(o).__name__ or "Authorization" in type(o).__name__
    )
    assert kinds == ["AuthorizationPolicy", "PeerAuthentication"]
