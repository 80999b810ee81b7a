"""The demo HTTP/1.1 client: framing of what real servers (Envoy's admin included) send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from legation.demo.http import HttpError, header_pairs, read_head, request


class Canned:
    """One-shot servers that record each request head and answer with canned bytes."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        self._servers: list[asyncio.Server] = []

    async def __call__(self, raw: bytes) -> tuple[str, int]:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.seen.append(await reader.readuntil(b"\r\n\r\n"))
            writer.write(raw)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        self._servers.append(server)
        return "127.0.0.1", server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        for server in self._servers:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def serve() -> AsyncIterator[Canned]:
    canned = Canned()
    yield canned
    await canned.close()


async def test_chunked_response(serve: Canned) -> None:
    host, port = await serve(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nX-A: 1\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\ntrailer: x\r\n\r\n"
    )

    resp = await request(host, port, "GET", "/config_dump")

    assert (resp.status, resp.reason, resp.body) == (200, "OK", b"hello!")
    assert resp.header("x-a") == "1"
    head = serve.seen[0].decode()
    assert head.startswith("GET /config_dump HTTP/1.1\r\n")
    assert f"host: {host}:{port}" in head
    assert "connection: close" in head


async def test_response_until_eof_and_absolute_form(serve: Canned) -> None:
    host, port = await serve(b"HTTP/1.1 503 Service Unavailable\r\n\r\nno framing")

    resp = await request(
        host, port, "GET", "http://catalog.shop:9080/x", headers={"Host": "catalog.shop:9080"}
    )

    assert (resp.status, resp.text()) == (503, "no framing")
    head = serve.seen[0].decode()
    assert head.startswith("GET http://catalog.shop:9080/x HTTP/1.1\r\n")
    assert head.count("host:") == 1 and "host: catalog.shop:9080" in head


@pytest.mark.parametrize(
    "raw",
    [b"", b"SPDY/3 200 OK\r\n\r\n", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"],
    ids=["closed", "not-http", "truncated"],
)
async def test_garbage_raises_http_error(serve: Canned, raw: bytes) -> None:
    host, port = await serve(raw)

    with pytest.raises(HttpError):
        await request(host, port)


async def test_head_rejects_malformed_header_line() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")

    with pytest.raises(HttpError, match="malformed header"):
        await read_head(reader)


def test_header_pairs_lowercases_names() -> None:
    assert header_pairs({"X-Y": "Z"}) == (("x-y", "Z"),)
    assert header_pairs([("A", "1"), ("a", "2")]) == (("a", "1"), ("a", "2"))
