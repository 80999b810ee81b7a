"""A minimal HTTP/1.1 codec and client on asyncio streams (standard library only).

Just enough HTTP for the demo workloads, for talking to Envoy's admin API and
for sending test requests through a sidecar: request/response heads,
Content-Length and chunked bodies, one request per client connection. Not a
general-purpose HTTP library: no redirects, no TLS, no pipelining.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 1024 * 1024

HeaderPairs = tuple[tuple[str, str], ...]  # (lower-cased name, value), in wire order
HeadersIn = Mapping[str, str] | Iterable[tuple[str, str]]


class HttpError(Exception):
    """The peer sent something that is not HTTP/1.1 we understand, or closed early."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpResponse:
    status: int
    reason: str
    headers: HeaderPairs
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        name = name.lower()
        return next((v for k, v in self.headers if k == name), None)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def header_pairs(headers: HeadersIn) -> HeaderPairs:
    items = headers.items() if isinstance(headers, Mapping) else headers
    return tuple((k.lower(), v) for k, v in items)


def first(headers: HeaderPairs, name: str) -> str | None:
    return next((v for k, v in headers if k == name), None)


async def read_head(reader: asyncio.StreamReader) -> tuple[str, HeaderPairs] | None:
    """The start line and headers of one message; None on a clean EOF before it."""
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if not e.partial.strip():
            return None
        raise HttpError("connection closed inside a message head") from e
    except asyncio.LimitOverrunError as e:
        raise HttpError("message head too large") from e
    if len(raw) > MAX_HEAD:
        raise HttpError("message head too large")
    lines = raw.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise HttpError(f"malformed header line {line!r}")
        headers.append((name.lower(), value.strip()))
    return lines[0], tuple(headers)


async def read_body(
    reader: asyncio.StreamReader, headers: HeaderPairs, *, until_eof: bool = False
) -> bytes:
    """A message body framed by chunked encoding or Content-Length.

    Without either, a request has no body; a response (`until_eof=True`) runs
    to the end of the connection.
    """
    encoding = (first(headers, "transfer-encoding") or "").lower()
    if "chunked" in encoding:
        return await _read_chunked(reader)
    length = first(headers, "content-length")
    if length is not None:
        if not length.isdigit() or int(length) > MAX_BODY:
            raise HttpError(f"bad content-length {length!r}")
        try:
            return await reader.readexactly(int(length))
        except asyncio.IncompleteReadError as e:
            raise HttpError("connection closed inside a body") from e
    if until_eof:
        return await _read_to_eof(reader)
    return b""


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    while chunk := await reader.read(64 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            raise HttpError("body too large")
    return bytes(body)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    body = bytearray()
    try:
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers: ignored
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise HttpError("chunked body too large")
            body += await reader.readexactly(size)
            await reader.readexactly(2)
    except (ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        raise HttpError("malformed chunked body") from e


def encode_head(start_line: str, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [start_line, *(f"{k}: {v}" for k, v in headers), "", ""]
    return "\r\n".join(lines).encode("latin-1")


async def request(
    host: str,
    port: int,
    method: str = "GET",
    target: str = "/",
    *,
    headers: HeadersIn = (),
    body: bytes = b"",
    timeout: float = 10.0,
    local_host: str | None = None,
) -> HttpResponse:
    """Send one request on a fresh connection and read the whole response.

    `target` is origin-form (`/path?q`) or absolute-form (`http://svc:9080/`,
    for an HTTP proxy). A Host header is added unless given. `local_host`
    binds the client side of the connection (a workload's own address).
    Raises OSError/TimeoutError on connection problems, HttpError on garbage.
    """
    pairs = list(header_pairs(headers))
    names = {k for k, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("host", _host_header(host, port)))
    if body or method in ("POST", "PUT", "PATCH"):
        pairs.append(("content-length", str(len(body))))
    pairs.append(("connection", "close"))
    async with asyncio.timeout(timeout):
        local = (local_host, 0) if local_host else None
        reader, writer = await asyncio.open_connection(host, port, local_addr=local, limit=MAX_HEAD)
        try:
            writer.write(encode_head(f"{method} {target} HTTP/1.1", pairs) + body)
            await writer.drain()
            return await read_response(reader, method=method)
        finally:
            writer.close()
            with contextlib.suppress(OSError):  # a reset on a connection we are done with
                await writer.wait_closed()


async def read_response(reader: asyncio.StreamReader, *, method: str = "GET") -> HttpResponse:
    head = await read_head(reader)
    if head is None:
        raise HttpError("connection closed before a response")
    start, headers = head
    version, _, rest = start.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise HttpError(f"malformed status line {start!r}")
    status = int(code)
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await read_body(reader, headers, until_eof=True)
    return HttpResponse(status=status, reason=reason, headers=headers, body=body)


def _host_header(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
