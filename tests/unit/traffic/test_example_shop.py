"""examples/shop, traffic policy included, is a config `legation analyze` finds clean."""

from __future__ import annotations

from pathlib import Path

import pytest

from legation.cli import analyze_paths, main
from legation.model import VirtualService
from legation.sources.files import load_dirs

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def test_analyze_finds_nothing_in_the_shop(capsys: pytest.CaptureFixture[str]) -> None:
    assert analyze_paths([SHOP]) == ([], 23)  # telemetry.yaml holds the MeshConfig too
    assert main(["analyze", str(SHOP)]) == 0
    # A newcomer sees that it ran (issue 10): one line, not silence.
    assert capsys.readouterr().out == "legation analyze: 23 objects read: no problems found\n"


def test_analyze_accepts_files_and_summarises_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "traffic.yaml"
    broken.write_text((SHOP / "traffic.yaml").read_text().replace("weight: 90", "weight: 95"))
    assert main(["analyze", str(SHOP / "services.yaml"), str(SHOP / "workloads.yaml"),
                 str(broken)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{broken}:") and "virtualservice.weights-sum" in line
               for line in out), out
    assert out[-1].startswith("legation analyze: ") and "1 error, 0 warnings" in out[-1]


def test_the_shop_has_the_canary_and_the_order_policy() -> None:
    objects = load_dirs([SHOP]).objects
    routes = {o.name: o for o in objects if isinstance(o, VirtualService)}
    assert sorted(routes) == ["catalog", "order", "shop-ingress"]
    canary, split = routes["catalog"].http
    assert canary.match[0].headers[0].name == "x-canary"
    assert [(d.destination.subset, d.weight) for d in split.route] == [("v1", 90), ("v2", 10)]
    order = routes["order"].http[0]
    assert order.timeout_ms == 3000 and order.retries is not None and order.retries.attempts == 3
