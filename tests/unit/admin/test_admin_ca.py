"""The admin API's CA endpoints over a real socket: GET /debug/ca, POST /ca/rotate-root
(and `legation ca rotate-root|status`, the CLI that calls them)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from legation.admin import Admin, AdminServer
from legation.cache import ProxyError, Snapshot
from legation.cli import main
from legation.demo.http import request
from legation.metrics import Metrics
from legation.model import Diagnostic
from legation.security.rotation import Outcome, Refusal
from legation.xds.status import StatusBoard


class View:
    def ready(self) -> tuple[bool, str]:
        return True, "ready"

    def diagnostics(self) -> list[Diagnostic]:
        return []

    async def snapshot_for(self, node_id: str) -> Snapshot | ProxyError:
        return ProxyError("NOT_FOUND", "none")


class FakeRotation:
    def __init__(self) -> None:
        self.answer = Outcome(fingerprint="ab" * 32)
        self.requests = 0

    def debug(self) -> dict[str, Any]:
        return {"phase": "idle", "roots": [{"fingerprint": "cd" * 32, "state": "active"}]}

    async def request(self) -> Outcome:
        self.requests += 1
        return self.answer


async def _server(ca: FakeRotation | None) -> AdminServer:
    server = AdminServer(Admin(View(), StatusBoard(), Metrics(), ca=ca), host="127.0.0.1", port=0)
    await server.start()
    return server


@pytest.fixture
async def admin() -> AsyncIterator[tuple[AdminServer, FakeRotation]]:
    rotation = FakeRotation()
    server = await _server(rotation)
    yield server, rotation
    await server.stop()


async def _post(port: int, path: str, **headers: str) -> tuple[int, dict[str, Any] | str]:
    resp = await request("127.0.0.1", port, "POST", path, headers=headers)
    ctype = resp.header("content-type") or ""
    return resp.status, resp.json() if ctype.startswith("application/json") else resp.text()


@pytest.mark.parametrize(
    ("refusal", "status"),
    [(None, 202), (Refusal.IN_PROGRESS, 409), (Refusal.PLUG_IN, 409),
     (Refusal.NOT_LEADER, 409), (Refusal.FAILED, 500)],
    ids=["accepted", "in-progress", "plug-in", "not-leader", "failed"],
)  # fmt: skip
async def test_rotate_root_answers(
    admin: tuple[AdminServer, FakeRotation], refusal: Refusal | None, status: int
) -> None:
    server, rotation = admin
    if refusal is not None:
        rotation.answer = Outcome(refused=refusal, message="because")
    code, body = await _post(server.port, "/ca/rotate-root")
    assert code == status
    assert isinstance(body, dict)
    if refusal is None:
        assert body["fingerprint"] == "ab" * 32 and body["status"] == "accepted"
    else:
        assert body == {"status": "refused", "reason": str(refusal), "message": "because"}


async def test_a_browser_cannot_trigger_it(admin: tuple[AdminServer, FakeRotation]) -> None:
    server, rotation = admin
    for header in ({"origin": "http://example.com"}, {"sec-fetch-site": "cross-site"}):
        code, _ = await _post(server.port, "/ca/rotate-root", **header)
        assert code == 403
    assert rotation.requests == 0


async def test_methods_and_paths(admin: tuple[AdminServer, FakeRotation]) -> None:
    server, rotation = admin
    get = await request("127.0.0.1", server.port, "GET", "/ca/rotate-root")
    assert get.status == 405 and "POST" in get.text()
    post = await _post(server.port, "/debug/ca")
    assert post[0] == 405
    debug = await request("127.0.0.1", server.port, "GET", "/debug/ca")
    assert debug.status == 200 and debug.json()["phase"] == "idle"
    assert rotation.requests == 0


async def test_without_a_ca_both_are_not_found() -> None:
    server = await _server(None)
    try:
        code, body = await _post(server.port, "/ca/rotate-root")
        assert code == 404 and "--ca-dir" in str(body)
        debug = await request("127.0.0.1", server.port, "GET", "/debug/ca")
        assert debug.status == 404
    finally:
        await server.stop()


async def test_the_cli_triggers_and_reports(
    admin: tuple[AdminServer, FakeRotation], capsys: pytest.CaptureFixture[str]
) -> None:
    server, rotation = admin
    address = f"127.0.0.1:{server.port}"
    assert await asyncio.to_thread(main, ["ca", "rotate-root", "--admin-address", address]) == 0
    assert "ab" * 32 in capsys.readouterr().out
    rotation.answer = Outcome(refused=Refusal.IN_PROGRESS, message="a root rotation is running")
    assert await asyncio.to_thread(main, ["ca", "rotate-root", "--admin-address", address]) == 1
    assert "a root rotation is running (HTTP 409)" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["ca", "status", "--admin-address", address]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "idle"
    assert rotation.requests == 2
