"""Fixtures for end-to-end tests with real Envoy (see harness.py).

- `loopback`: this process's 127.B.y.z allocator (`loopback.next()`).
- `envoys`: an EnvoyFleet writing to the test's tmp dir; every Envoy is
  stopped and reaped at teardown, and a failed test prints their log tails.
- `apps`: an AppFleet of in-process demo workloads, stopped at teardown.
- `mesh`: a MeshLab (harness.py): a watched mesh directory, `legation serve` as
  a real process (`mesh.control_plane`), apps and sidecars from the two
  fleets above. Parametrized over the xDS variant (`delta`: ids sotw, delta),
  so every test using it runs against SotW and delta ADS. A failed test
  prints the control plane's log tail.

Every test under tests/e2e is marked `e2e` (deselect with `-m "not e2e"`).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from .harness import AppFleet, EnvoyFleet, Loopback, MeshLab
from .security_lab import SecureLab

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()
_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(r.failed for r in reports.values())


@pytest.fixture(scope="session")
def loopback() -> Iterator[Loopback]:
    allocator = Loopback()
    yield allocator
    allocator.close()


@pytest.fixture
async def envoys(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[EnvoyFleet]:
    fleet = EnvoyFleet(tmp_path / "envoy")
    try:
        yield fleet
    finally:
        if _failed(request) and fleet.envoys:
            print(f"envoy logs ({fleet.workdir}):\n{fleet.log_tails()}", file=sys.stderr)
        await fleet.stop_all()


@pytest.fixture
async def apps() -> AsyncIterator[AppFleet]:
    fleet = AppFleet()
    try:
        yield fleet
    finally:
        await fleet.stop_all()


@pytest.fixture(params=[False, True], ids=["sotw", "delta"])
def delta(request: pytest.FixtureRequest) -> bool:
    """Whether sidecars use delta (DELTA_GRPC) or state-of-the-world (GRPC) ADS."""
    return bool(request.param)


@pytest.fixture
async def mesh(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    loopback: Loopback,
    envoys: EnvoyFleet,
    apps: AppFleet,
    delta: bool,
) -> AsyncIterator[MeshLab]:
    lab = MeshLab(root=tmp_path, loopback=loopback, envoys=envoys, apps=apps, delta=delta)
    try:
        yield lab
    finally:
        if _failed(request):
            print(lab.log_tails(), file=sys.stderr)
        await envoys.stop_all()  # first: a server with no open streams stops at once
        await lab.control_plane.stop()


@pytest.fixture
async def lab(
    tmp_path: Path, loopback: Loopback, envoys: EnvoyFleet, apps: AppFleet
) -> AsyncIterator[SecureLab]:
    """A secured mesh (security_lab.py): `legation serve --ca-dir`, real Envoys."""
    lab = SecureLab(root=tmp_path, loopback=loopback, envoys=envoys, apps=apps)
    try:
        yield lab
    finally:
        await envoys.stop_all()
        await lab.control_plane.stop()
