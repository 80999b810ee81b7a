"""`legation demo` runs the shop with STRICT mTLS and its AuthorizationPolicy, and shows it:
a POST to payment from the client's identity is denied, from order-sa's allowed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .test_demo import REPO, _demo_ports_free, summary


def test_demo_shows_a_denied_call(tmp_path: Path) -> None:
    busy = _demo_ports_free(tmp_path)
    if busy is not None:
        pytest.skip(f"the demo's fixed addresses are taken: {busy}")
    done = subprocess.run(
        [sys.executable, "-m", "legation", "demo", "--duration", "5"],
        capture_output=True, text=True, timeout=90, cwd=REPO, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"stdout:\n{out}\nstderr:\n{done.stderr}"
    probes = [
        re.sub(r"^security +[\d.]+s +", "", line)
        for line in out.splitlines()
        if line.startswith("security ")
    ]
    assert probes == [
        "frontend → POST payment.shop:9080/pay → 403 RBAC: access denied",
        "order-v1 → POST payment.shop:9080/pay → 200 (served by payment-v1)",
    ], out
    assert summary(out)["errors"] == "0", out  # STRICT mTLS everywhere, no failed request
