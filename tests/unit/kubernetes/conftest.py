"""Fixtures for the Kubernetes source tests: an emulated API server (tests/k8s)
and the official client pointed at it.

`tests/` goes on sys.path so that the helper package imports as `k8s`. This
directory has no __init__.py on purpose: as a package it would be named
`kubernetes` and shadow the official client.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_TESTS = str(Path(__file__).resolve().parents[2])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from k8s import ApiServer  # noqa: E402
from k8s.harness import api_client  # noqa: E402


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


@pytest.fixture
def api(apiserver: ApiServer) -> Iterator[Any]:
    client = api_client(apiserver.url)
    yield client
    client.close()
