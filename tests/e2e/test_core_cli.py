"""Issue 2, the command line as a user meets it: bad flags, unreadable paths and
unknown workloads end with one line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from .harness import Loopback

REPO = Path(__file__).resolve().parents[2]
SHOP = REPO / "examples" / "shop"
BOOTSTRAP = ["bootstrap", "--namespace", "shop", "--admin-address", "127.0.0.1:15000"]


def legation(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "legation", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        check=False,
    )


def our_lines(stderr: str) -> list[str]:
    """stderr without gRPC core's own log lines (`E1122 12:00:00.000 ... file.cc:83] ...`)."""
    return [line for line in stderr.splitlines() if not (line[:1] in "EWI" and "] " in line
                                                          and line[1:5].isdigit())]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["serve", "--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["serve", "--config-dir", "/nonexistent/mesh"], "/nonexistent/mesh"),
        (["serve"], "give --config-dir"),
        (["serve", "--config-dir", str(SHOP), "--xds-address", "nowhere"], "--xds-address"),
        (["serve", "--config-dir", str(SHOP), "--debounce-quiet", "soon"], "--debounce-quiet"),
        (
            [*BOOTSTRAP, "--config-dir", str(SHOP), "--workload", "nope"],
            "no workload shop/nope",
        ),
        (
            [*BOOTSTRAP, "--config-dir", "/nonexistent/mesh", "--workload", "order-v1"],
            "/nonexistent/mesh",
        ),
        (["demo", "--duration", "forever"], "--duration"),
    ],
    ids=[
        "serve-bad-flag",
        "serve-missing-dir",
        "serve-no-source",
        "serve-bad-address",
        "serve-bad-duration",
        "bootstrap-unknown-workload",
        "bootstrap-missing-dir",
        "demo-bad-duration",
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], expected: str) -> None:
    done = legation(*args)

    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("legation: error: ") and expected in line, line


def test_serve_on_a_busy_xds_port_is_one_line_and_exit_2(loopback: Loopback) -> None:
    host = loopback.next()
    with socket.socket() as busy:
        busy.bind((host, 15010))
        busy.listen()
        done = legation(
            "serve",
            "--config-dir", str(SHOP),
            "--xds-address", f"{host}:15010",
            "--admin-address", f"{host}:15014",
        )  # fmt: skip

    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    # No raw gRPC core line before ours (issue 10): what a newcomer sees is one sentence.
    assert our_lines(done.stderr) == done.stderr.splitlines(), done.stderr
    [line] = [x for x in our_lines(done.stderr) if x.startswith("legation:")]
    assert line == (
        f"legation: error: cannot listen for xDS on {host}:15010: the address is in use "
        "or not an address of this host"
    )


def test_bootstrap_for_a_known_workload(tmp_path: Path) -> None:
    out = tmp_path / "order.yaml"

    done = legation(
        "bootstrap", "--config-dir", str(SHOP), "--workload", "order-v1", "--namespace", "shop",
        "--xds-address", "127.0.0.1:15010", "--admin-address", "127.0.10.2:15000", "--delta",
        "--output", str(out),
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "id: order-v1.shop" in text and "api_type: DELTA_GRPC" in text
