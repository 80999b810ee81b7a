"""The admin API's CA endpoints over a real socket: GET /debug/ca, POST /ca/rotate-root
(and `legation ca rotate-root|status`, the CLI that calls them)."""

from __future__ import annotations

import asyncio
import json
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from legation.admin import Admin, AdminServer
from legation.admin.server import load_or_create_token
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


TOKEN = "t0ken"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def _server(ca: FakeRotation | None, **kw: Any) -> AdminServer:
    server = AdminServer(Admin(View(), StatusBoard(), Metrics(), ca=ca), host="127.0.0.1",
                         port=0, token=TOKEN, post_interval_s=kw.pop("interval", 0.0), **kw)
    await server.start()
    return server


@pytest.fixture
async def admin() -> AsyncIterator[tuple[AdminServer, FakeRotation]]:
    rotation = FakeRotation()
    server = await _server(rotation)
    yield server, rotation
    await server.stop()


async def _post(port: int, path: str, *, auth: bool = True,
                **headers: str) -> tuple[int, dict[str, Any] | str]:
    resp = await request("127.0.0.1", port, "POST", path,
                         headers={**(AUTH if auth else {}), **headers})
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


async def test_operator_actions_need_the_token_and_are_rate_limited() -> None:
    """Issue 13: six unauthenticated POSTs left seven roots in the trust bundle."""
    rotation = FakeRotation()
    now = [0.0]
    server = await _server(rotation, interval=60.0, clock=lambda: now[0])
    try:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
            resp = await request("127.0.0.1", server.port, "POST", "/ca/rotate-root",
                                 headers=headers)
            assert resp.status == 401 and resp.header("www-authenticate") is not None
        assert rotation.requests == 0
        assert (await _post(server.port, "/ca/rotate-root"))[0] == 202
        now[0] = 30.0
        resp = await request("127.0.0.1", server.port, "POST", "/ca/rotate-root", headers=AUTH)
        assert resp.status == 429 and resp.header("retry-after") == "30"
        now[0] = 61.0
        assert (await _post(server.port, "/ca/rotate-root"))[0] == 202
        assert rotation.requests == 2
    finally:
        await server.stop()


def test_the_token_file_is_made_once_and_private(tmp_path: Path) -> None:
    path = tmp_path / "ca" / "admin-token"
    token = load_or_create_token(path)
    assert len(token) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == token


async def test_the_cli_triggers_and_reports(
    admin: tuple[AdminServer, FakeRotation], capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    server, rotation = admin
    address = f"127.0.0.1:{server.port}"
    (tmp_path / "admin-token").write_text(TOKEN + "\n")
    rotate = ["ca", "rotate-root", "--admin-address", address, "--ca-dir", str(tmp_path)]
    assert await asyncio.to_thread(main, rotate) == 0
    assert "ab" * 32 in capsys.readouterr().out
    rotation.answer = Outcome(refused=Refusal.IN_PROGRESS, message="a root rotation is running")
    assert await asyncio.to_thread(main, rotate) == 1
    assert "a root rotation is running (HTTP 409)" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["ca", "status", "--admin-address", address]) == 0
    assert json.loads(capsys.readouterr().out)["phase"] == "idle"
    assert rotation.requests == 2
