"""The demo workload: echo, fault knobs, keep-alive, /shop fan-out, CLI."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

from legation.demo.app import DemoApp, Faults, Target, default_version, parse_args
from legation.demo.http import HttpError, read_response, request


@pytest.fixture
async def app() -> AsyncIterator[DemoApp]:
    async with DemoApp(name="catalog-v2") as a:
        yield a


async def get(app: DemoApp, target: str, **headers: str) -> tuple[int, Any]:
    resp = await request(*app.address, "GET", target, headers=headers)
    assert resp.header("x-served-by") == app.name
    return resp.status, resp.json()


async def test_echoes_the_request(app: DemoApp) -> None:
    resp = await request(
        *app.address, "POST", "/items/7?a=1&b=2", headers={"X-Thing": "yes"}, body=b"hello"
    )

    assert resp.status == 200
    assert resp.header("content-type") == "application/json"
    body = resp.json()
    assert body["workload"] == "catalog-v2"
    assert body["version"] == "v2"
    assert (body["method"], body["path"], body["query"]) == (
        "POST",
        "/items/7",
        {"a": "1", "b": "2"},
    )
    assert body["headers"]["x-thing"] == "yes"
    assert body["body_bytes"] == 5


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        ("/?status=503", {}, 503),
        ("/", {"x-demo-status": "429"}, 429),
        ("/?status=201", {"x-demo-status": "500"}, 201),  # the query wins
        ("/?status=99", {}, 400),
        ("/?status=abc", {}, 400),
        ("/?delay=-1", {}, 400),
        ("/?delay=61", {}, 400),
        ("/?fail_first=-2", {}, 400),
        ("/?delay=0", {}, 200),
    ],
    ids=["query", "header", "query-wins", "too-low", "not-a-number", "negative-delay",
         "delay-too-long", "negative-fail-first", "zero-delay"],
)  # fmt: skip
async def test_status_knob(app: DemoApp, target: str, headers: dict[str, str], status: int) -> None:
    got, body = await get(app, target, **headers)

    assert got == status
    assert ("error" in body) == (status == 400)


async def test_fail_first_counts_per_key(app: DemoApp) -> None:
    a = [await get(app, "/pay?fail_first=2&fail_key=a") for _ in range(3)]
    b = [
        await get(app, "/pay", **{"x-demo-fail-first": "1", "x-demo-fail-key": "b"})
        for _ in range(2)
    ]

    assert [(s, body["attempt"]) for s, body in a] == [(503, 1), (503, 2), (200, 3)]
    assert [(s, body["attempt"]) for s, body in b] == [(503, 1), (200, 2)]


async def test_fail_first_uses_status_and_defaults_to_the_path(app: DemoApp) -> None:
    got = [(await get(app, "/x?fail_first=1&status=500"))[0] for _ in range(2)]
    other_path, _ = await get(app, "/y?fail_first=1&status=500")

    assert got == [500, 200]
    assert other_path == 500


async def test_delay_holds_only_its_own_request(app: DemoApp) -> None:
    slow = asyncio.create_task(get(app, "/?delay=30"))

    status, _ = await get(app, "/fast")

    assert status == 200
    assert not slow.done()
    await app.stop()  # closes the held connection instead of waiting 30 s
    with pytest.raises((HttpError, OSError)):
        await slow


async def test_keep_alive_until_connection_close(app: DemoApp) -> None:
    reader, writer = await asyncio.open_connection(*app.address)
    try:
        writer.write(b"GET /1 HTTP/1.1\r\nhost: x\r\n\r\nGET /2 HTTP/1.1\r\nhost: x\r\n\r\n")
        one, two = await read_response(reader), await read_response(reader)
        writer.write(b"GET /3 HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        three = await read_response(reader)
        rest = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()

    assert [r.json()["path"] for r in (one, two, three)] == ["/1", "/2", "/3"]
    assert [r.header("connection") for r in (one, two, three)] == [None, None, "close"]
    assert rest == b""  # the server closed after Connection: close


async def test_chunked_request_body(app: DemoApp) -> None:
    reader, writer = await asyncio.open_connection(*app.address)
    try:
        writer.write(
            b"POST /c HTTP/1.1\r\nhost: x\r\n"
            b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            b"3\r\nabc\r\n4\r\ndefg\r\n0\r\n\r\n"
        )
        resp = await read_response(reader, method="POST")
    finally:
        writer.close()
        await writer.wait_closed()

    assert resp.json()["body_bytes"] == 7


async def test_garbage_only_costs_its_own_connection(app: DemoApp) -> None:
    reader, writer = await asyncio.open_connection(*app.address)
    writer.write(b"NONSENSE\r\n\r\n")
    assert await reader.read() == b""
    writer.close()
    await writer.wait_closed()

    status, _ = await get(app, "/still-up")
    assert status == 200


async def test_shop_fans_out_and_propagates_trace_headers() -> None:
    async with (
        DemoApp(name="catalog-v1") as catalog,
        DemoApp(name="payment-v1") as payment,
    ):
        calls = (
            Target(host="127.0.0.1", port=catalog.port),
            Target(host="127.0.0.1", port=payment.port),
        )
        async with DemoApp(name="order-v1", calls=calls) as order:
            status, body = await get(order, "/shop", **{"x-request-id": "abc", "x-demo-delay": "0"})
            plain, plain_body = await get(order, "/other")

    assert status == 200
    assert [c["served_by"] for c in body["calls"]] == ["catalog-v1", "payment-v1"]
    for call in body["calls"]:
        assert call["status"] == 200
        assert call["body"]["headers"]["x-request-id"] == "abc"
        assert "x-demo-delay" not in call["body"]["headers"]  # knobs are not propagated
    assert plain == 200 and "calls" not in plain_body


async def test_shop_reports_a_failing_call() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    async with DemoApp(name="catalog-v1") as catalog:
        calls = (Target(host="127.0.0.1", port=catalog.port), Target(host="127.0.0.1", port=dead))
        async with DemoApp(name="order-v1", calls=calls) as order:
            status, body = await get(order, "/shop")

    assert status == 502
    ok, failed = body["calls"]
    assert (ok["status"], ok["served_by"]) == (200, "catalog-v1")
    assert failed["status"] is None
    assert failed["error"].startswith("ConnectionRefusedError")


def test_faults_parse_defaults() -> None:
    assert Faults.parse({}, (), path="/p") == Faults(fail_key="/p")


@pytest.mark.parametrize(
    ("name", "version"),
    [("catalog-v2", "v2"), ("frontend", ""), ("my-app-v10", "v10"), ("app-vx", "")],
    ids=str,
)
def test_default_version(name: str, version: str) -> None:
    assert default_version(name) == version


def test_target_parse() -> None:
    assert Target.parse("catalog.shop:9080") == Target(host="catalog.shop", port=9080)
    assert Target.parse("catalog") == Target(host="catalog", port=80)
    with pytest.raises(ValueError, match="host:port"):
        Target.parse("catalog:http")


def test_cli_arguments() -> None:
    args = parse_args(
        ["--name", "order-v1", "--listen", "127.0.0.1:18081", "--proxy", "http://127.0.10.1:15001",
         "--calls", "catalog.shop:9080,payment.shop:9080"]
    )  # fmt: skip

    assert args.listen == ("127.0.0.1", 18081)
    assert args.proxy == ("127.0.10.1", 15001)
    assert [str(t) for t in args.calls] == ["catalog.shop:9080", "payment.shop:9080"]


@pytest.mark.parametrize(
    "argv",
    [["--listen", "nope"], ["--proxy", "https://x:1"], ["--calls", "a:b"]],
    ids=["listen", "proxy", "calls"],
)
def test_cli_rejects(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--name", "x", *argv])
    assert argv[0] in capsys.readouterr().err


async def test_module_runs_and_stops_on_sigterm() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "legation.demo.app", "--name", "cli-v3", "--listen", "127.0.0.1:0",
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
        assert line.startswith("demo.app.listening name=cli-v3 "), line
        port = int(line.rpartition(":")[2])
        resp = await request("127.0.0.1", port, "GET", "/")
        assert (resp.status, resp.json()["version"]) == (200, "v3")
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
    assert code == 0
