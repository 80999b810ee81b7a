"""The Dockerfile builds an image that runs `legation` as a non-root user.

Opt-in (`LEGATION_DOCKER_TESTS=1`): it needs a Docker daemon and, with no
registry reachable, a locally made base image, and takes about a minute.
The base is `legation-test-base:bookworm`, imported from a `debootstrap`
root file system of Debian bookworm with python3, venv and pip (about 45 s to
make, once: the image stays in Docker's store and is reused by later runs),
trusting this machine's CA bundle so that pip inside the build reaches the
package index exactly as pip on the host does. `LEGATION_DOCKER_BASE=<image>`
uses another base instead (e.g. `python:3.11-slim` where a registry is
reachable).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from legation import __version__

ROOT = Path(__file__).resolve().parents[2]
TEST_BASE = "legation-test-base:bookworm"
IMAGE = "legation:e2e-test"
MIRROR = "http://deb.debian.org/debian"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

pytestmark = pytest.mark.skipif(
    os.environ.get("LEGATION_DOCKER_TESTS") != "1",
    reason="opt-in: set LEGATION_DOCKER_TESTS=1 (needs a Docker daemon; builds a base image "
    "with debootstrap on first use, then takes about a minute)",
)


def _run(*args: str, timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
            f"{proc.stderr[-3000:]}"
        )
    return proc


def _require_daemon() -> None:
    if shutil.which("docker") is None:
        pytest.skip("no docker client on PATH")
    if _run("docker", "info", timeout=30, check=False).returncode != 0:
        pytest.skip("no Docker daemon answers (start dockerd)")


def _has_image(name: str) -> bool:
    return _run("docker", "image", "inspect", name, timeout=30, check=False).returncode == 0


def _make_test_base() -> str:
    """`TEST_BASE`, made from a debootstrap root file system unless Docker has it already."""
    if _has_image(TEST_BASE):
        return TEST_BASE
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        pytest.skip(f"no {TEST_BASE} image, and making it needs root and debootstrap")
    with tempfile.TemporaryDirectory(prefix="legation-base-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _run("debootstrap", "--variant=minbase",
             "--include=python3,python3-venv,python3-pip,ca-certificates",
             "bookworm", str(rootfs), MIRROR, timeout=900)
        if CA_BUNDLE.is_file():  # trust what this machine trusts (its package-index proxy)
            shutil.copyfile(CA_BUNDLE, rootfs / "etc/ssl/certs/ca-certificates.crt")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                ["docker", "import", "--change", f"ENV PIP_CERT={CA_BUNDLE}",
                 "--change", f"ENV SSL_CERT_FILE={CA_BUNDLE}", "-", TEST_BASE],
                stdin=tar.stdout, capture_output=True, timeout=300, check=True,
            )
        finally:
            assert tar.stdout is not None
            tar.stdout.close()
            tar.wait(timeout=60)
    return TEST_BASE


@pytest.fixture(scope="module")
def image() -> str:
    _require_daemon()
    base = os.environ.get("LEGATION_DOCKER_BASE") or _make_test_base()
    _run("docker", "build", "--build-arg", f"BASE={base}", "-t", IMAGE, str(ROOT), timeout=900)
    return IMAGE


def test_the_image_runs_legation(image: str) -> None:
    out = _run("docker", "run", "--rm", image, "--version", timeout=60).stdout
    assert out.strip() == f"legation {__version__}"


def test_the_image_is_configured_for_kubernetes(image: str) -> None:
    [info] = json.loads(_run("docker", "image", "inspect", image, timeout=30).stdout)
    config = info["Config"]
    assert config["Entrypoint"] == ["legation"]
    assert config["Cmd"] == ["serve", "--in-cluster"]
    assert set(config["ExposedPorts"]) == {"15010/tcp", "15012/tcp", "15014/tcp"}
    uid, _, gid = config["User"].partition(":")
    assert uid.isdigit() and int(uid) != 0 and gid == uid  # runAsNonRoot can verify it


def test_runs_as_non_root_on_a_read_only_root_without_dev_extras(image: str) -> None:
    ids = _run("docker", "run", "--rm", "--entrypoint", "id", image, timeout=60).stdout
    assert ids.startswith("uid=65532") and "gid=65532" in ids
    help_text = _run("docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "--cap-drop",
                     "ALL", "--security-opt", "no-new-privileges", image, "serve", "--help",
                     timeout=60).stdout
    assert "--in-cluster" in help_text
    probe = ("import importlib.util as u, sys; "
             "sys.exit(sum(u.find_spec(m) is not None for m in ('pytest', 'mypy', 'ruff')))")
    dev = _run("docker", "run", "--rm", "--entrypoint", "/opt/legation/bin/python", image,
               "-c", probe, timeout=60, check=False)
    assert dev.returncode == 0, "dev extras were installed in the image"
