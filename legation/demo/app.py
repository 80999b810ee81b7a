"""The demo workload: a tiny asyncio HTTP/1.1 server behind each sidecar.

Every request is answered with JSON describing what arrived (workload name,
version, method, path, query, headers) and the header `x-served-by: <name>`,
so a test or a person can see which workload a request reached and what the
sidecars did to it. Standard library only.

Fault knobs, each as a query parameter or an `x-demo-*` request header:

- `status=503` / `x-demo-status`: answer with that status (200-599).
- `delay=0.5` / `x-demo-delay`: wait that many seconds first (at most 60).
- `fail_first=2` / `x-demo-fail-first`: the first 2 requests with the same
  `fail_key` (default: the path) answer 503 (or `status`), later ones 200;
  the answer carries `attempt`. Counters live in this instance.

With `calls`, a request to `/shop` also calls `/shop` on each listed service
(through the sidecar's HTTP proxy when `proxy` is set, otherwise directly)
and answers with their results under `calls`: 200 if every call answered
2xx, else 502. Trace and routing headers are propagated (`PROPAGATED`).

Run one: `python -m legation.demo.app --name catalog-v2 --listen 127.0.0.1:18082
[--proxy http://127.0.10.1:15001] [--calls catalog.shop:9080,payment.shop:9080]`;
in-process: `async with DemoApp(name=..., port=0) as app: ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from legation.demo.http import (
    HeaderPairs,
    HttpError,
    HttpResponse,
    encode_head,
    first,
    read_body,
    read_head,
    request,
)

PROPAGATED = (
    "x-request-id",
    "x-canary",  # the demo's canary route (examples/shop/traffic.yaml) follows the request
    "end-user",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
)
_DESCRIPTION = "The Legation demo workload: an HTTP echo server with fault knobs."
MAX_DELAY = 60.0
MAX_FAIL_KEYS = 4096
_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    """The fault knobs of one request."""

    status: int | None = None
    delay: float = 0.0
    fail_first: int = 0
    fail_key: str = ""

    @classmethod
    def parse(cls, query: dict[str, list[str]], headers: HeaderPairs, *, path: str) -> Faults:
        """Knobs from the query string, else from `x-demo-*` headers; ValueError if invalid."""

        def knob(name: str) -> str | None:
            if name in query:
                return query[name][-1]
            return first(headers, "x-demo-" + name.replace("_", "-"))

        status = knob("status")
        delay = knob("delay")
        fail_first = knob("fail_first")
        faults = cls(
            status=int(status) if status is not None else None,
            delay=float(delay) if delay is not None else 0.0,
            fail_first=int(fail_first) if fail_first is not None else 0,
            fail_key=knob("fail_key") or path,
        )
        if faults.status is not None and not 200 <= faults.status <= 599:
            raise ValueError(f"status must be 200-599, got {faults.status}")
        if not 0.0 <= faults.delay <= MAX_DELAY:
            raise ValueError(f"delay must be 0-{MAX_DELAY:g} seconds, got {faults.delay}")
        if faults.fail_first < 0:
            raise ValueError(f"fail_first must be >= 0, got {faults.fail_first}")
        return faults


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """A service the app calls on /shop: `host:port` as the mesh names it."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Target:
        host, sep, port = text.strip().rpartition(":")
        if not sep:
            return cls(host=text.strip(), port=80)
        if not host or not port.isdigit():
            raise ValueError(f"expected host:port, got {text!r}")
        return cls(host=host, port=int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def default_version(name: str) -> str:
    """`catalog-v2` -> `v2`; names without a version suffix have none."""
    suffix = name.rpartition("-")[2]
    return suffix if re.fullmatch(r"v\d+", suffix) else ""


class DemoApp:
    """One workload: an HTTP/1.1 server (keep-alive) with the knobs above."""

    def __init__(
        self,
        *,
        name: str,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str | None = None,
        proxy: tuple[str, int] | None = None,
        calls: Sequence[Target] = (),
        call_timeout: float = 5.0,
    ) -> None:
        self.name = name
        self.version = default_version(name) if version is None else version
        self.proxy = proxy
        self.calls = tuple(calls)
        self.call_timeout = call_timeout
        self.requests_served = 0
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self._attempts: dict[str, int] = {}

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) it listens on; the real port once started with port=0."""
        return (self._host, self._port)

    @property
    def port(self) -> int:
        return self._port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connection, self._host, self._port)
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and close every open connection."""
        if self._server is None:
            return
        self._server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def __aenter__(self) -> DemoApp:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (HttpError, ConnectionError):
            pass  # a broken peer only loses its own connection
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; False when the connection should close."""
        head = await read_head(reader)
        if head is None:
            return False
        start, headers = head
        parts = start.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(f"malformed request line {start!r}")
        method, target, version = parts
        body = await read_body(reader, headers)
        status, payload = await self.handle(method, target, headers, body)
        self.requests_served += 1
        keep = version == "HTTP/1.1" and (first(headers, "connection") or "").lower() != "close"
        identity = served_identity(headers)
        data = b"" if method == "HEAD" or status == 204 else json.dumps(payload).encode() + b"\n"
        out = [
            ("content-type", "application/json"),
            ("content-length", str(len(data))),
            ("x-served-by", self.name),
        ]
        if identity:
            out.append(("x-served-identity", identity))
        if not keep:
            out.append(("connection", "close"))
        reason = _REASONS.get(status, "Status")
        writer.write(encode_head(f"HTTP/1.1 {status} {reason}", out) + data)
        await writer.drain()
        return keep

    async def handle(
        self, method: str, target: str, headers: HeaderPairs, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON payload) for one request."""
        url = urlsplit(target)
        path = url.path or "/"
        query = parse_qs(url.query)
        payload: dict[str, Any] = {
            "workload": self.name,
            "version": self.version,
            "method": method,
            "path": path,
            "query": {k: v[-1] for k, v in sorted(query.items())},
            "headers": _header_dict(headers),
            "body_bytes": len(body),
        }
        try:
            faults = Faults.parse(query, headers, path=path)
        except ValueError as e:
            return 400, {**payload, "error": str(e)}
        if faults.delay:
            await asyncio.sleep(faults.delay)
        status = 200
        if faults.fail_first:
            attempt = self._count(faults.fail_key)
            payload["attempt"] = attempt
            if attempt <= faults.fail_first:
                return faults.status or 503, payload
        elif faults.status is not None:
            status = faults.status
        if path == "/shop" and self.calls:
            results = await asyncio.gather(*(self._call(t, headers) for t in self.calls))
            payload["calls"] = results
            if status == 200 and not all(200 <= (r["status"] or 0) < 300 for r in results):
                status = 502
        return status, payload

    def _count(self, key: str) -> int:
        n = self._attempts.pop(key, 0) + 1
        self._attempts[key] = n  # re-inserted: the dict stays in least-recently-used order
        if len(self._attempts) > MAX_FAIL_KEYS:
            del self._attempts[next(iter(self._attempts))]
        return n

    async def _call(self, target: Target, headers: HeaderPairs) -> dict[str, Any]:
        forward = [(k, v) for k, v in headers if k in PROPAGATED]
        forward.insert(0, ("host", str(target)))
        result: dict[str, Any] = {"target": str(target), "status": None, "served_by": None}
        # Through a proxy: absolute-form URI; directly: origin-form. Host names the service.
        host, port = self.proxy or (target.host, target.port)
        uri = f"http://{target}/shop" if self.proxy else "/shop"
        try:
            resp = await request(host, port, "GET", uri, headers=forward, timeout=self.call_timeout)
        except (OSError, TimeoutError, HttpError) as e:
            result["error"] = f"{type(e).__name__}: {e}"
            return result
        result.update(status=resp.status, served_by=resp.header("x-served-by"),
                      identity=resp.header("x-served-identity"), body=_body(resp))
        return result


def served_identity(headers: HeaderPairs) -> str:
    """The SPIFFE ID this workload's sidecar presented to the caller: the `By=` element of
    the x-forwarded-client-cert header it adds on mTLS (empty without mTLS)."""
    for name, value in headers:
        if name == "x-forwarded-client-cert":
            last = value.split(",")[-1]  # the hop that reached us
            for part in last.split(";"):
                key, _, val = part.partition("=")
                if key.strip().lower() == "by":
                    return val.strip().strip('"')
    return ""


def _header_dict(headers: HeaderPairs) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in headers:
        out[k] = f"{out[k]},{v}" if k in out else v
    return out


def _body(resp: HttpResponse) -> Any:
    try:
        return resp.json()
    except ValueError:
        return resp.text()


def _host_port(text: str, *, flag: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"{flag}: expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _listen(text: str) -> tuple[str, int]:
    return _host_port(text, flag="--listen")


def _proxy(text: str) -> tuple[str, int]:
    url = urlsplit(text if "//" in text else "http://" + text)
    if url.scheme != "http" or not url.hostname:
        raise argparse.ArgumentTypeError(f"--proxy: expected http://HOST:PORT, got {text!r}")
    return url.hostname, url.port or 80


def _targets(text: str) -> tuple[Target, ...]:
    try:
        return tuple(Target.parse(t) for t in text.split(",") if t.strip())
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--calls: {e}") from e


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m legation.demo.app", description=_DESCRIPTION)
    p.add_argument("--name", required=True, help="workload name, echoed and sent as x-served-by")
    p.add_argument("--listen", type=_listen, default="127.0.0.1:8080", help="HOST:PORT to serve on")
    p.add_argument("--version", default=None, help="default: the -vN suffix of --name")
    p.add_argument("--proxy", type=_proxy, default=None, help="sidecar HTTP proxy for --calls")
    p.add_argument("--calls", type=_targets, default=(), help="host:port,... called on /shop")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    """Run until SIGINT or SIGTERM."""
    host, port = args.listen
    app = DemoApp(
        name=args.name,
        host=host,
        port=port,
        version=args.version,
        proxy=args.proxy,
        calls=args.calls,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with app:
        print(
            f"demo.app.listening name={app.name} address={host}:{app.port}",
            file=sys.stderr,
            flush=True,
        )
        await stop.wait()


def main(argv: Sequence[str] | None = None) -> None:
    asyncio.run(serve(parse_args(argv)))


if __name__ == "__main__":
    main()
