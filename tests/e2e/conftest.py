"""Fixtures for end-to-end tests with real Envoy (see harness.py).

- `loopback`: this process's 127.B.y.z allocator (`loopback.next()`).
- `envoys`: an EnvoyFleet writing to the test's tmp dir; every Envoy is
  stopped and reaped at teardown, and a failed test prints their log tails.
- `apps`: an AppFleet of in-process demo workloads, stopped at teardown.

Every test under tests/e2e is marked `e2e` (deselect with `-m "not e2e"`).
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path

import pytest

from .harness import AppFleet, EnvoyFleet, Loopback

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
