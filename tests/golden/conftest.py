"""Golden tests: `pytest tests/golden --update-golden` rewrites the expected files."""

from __future__ import annotations

import contextlib

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    with contextlib.suppress(ValueError):  # already registered by another conftest
        parser.addoption(
            "--update-golden",
            action="store_true",
            default=False,
            help="rewrite tests/golden/*/out.*.yaml from the translators and delete stale ones",
        )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    # default=False: this conftest is not an "initial" one when pytest runs from
    # the repository root, and then the option is simply absent.
    return bool(request.config.getoption("--update-golden", default=False))
