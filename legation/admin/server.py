"""Admin HTTP: /healthz /readyz /metrics /debug/proxies /debug/syncz /debug/changes
/debug/config_dump /debug/diagnostics /debug/ca, and one operator action, POST
/ca/rotate-root.

A deliberately small HTTP/1.1 server on asyncio streams (one request per
connection): the admin port is for probes, Prometheus and operators, not for
traffic. GET handlers are plain functions (or coroutines, when they must wait for a
worker thread) returning `(status, content_type, body)`; they read state
through `AdminView`.

POST /ca/rotate-root starts a root CA rotation (legation/security/rotation.py;
`legation ca rotate-root` calls it): 202 with the new root's fingerprint once
it is staged, 409 while a rotation is in progress, on a replica that is not
the Lease holder, or for an operator-provided (Istio plug-in) CA, 404 without
a CA. It is an operator action: the admin port binds to loopback by default,
and a request that carries a browser's `Origin` or `Sec-Fetch-Site` header is
refused (403), so a web page cannot trigger it. Anyone who can reach a
non-loopback `--admin-address` can; keep it on a trusted network.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import structlog
from envoy.config.cluster.v3 import cluster_pb2  # noqa: F401  (registers types for Any decoding)
from envoy.config.endpoint.v3 import endpoint_pb2  # noqa: F401
from envoy.config.listener.v3 import listener_pb2  # noqa: F401
from envoy.config.route.v3 import route_pb2  # noqa: F401
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2  # noqa: F401
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from legation.cache import PUSH_ORDER, SECRET, ProxyError, Snapshot, short_name
from legation.metrics import Metrics
from legation.model import Diagnostic
from legation.security.rotation_state import Outcome, Refusal
from legation.xds.status import StatusBoard, sync_state

_log = structlog.get_logger("legation.admin")

Response = tuple[int, str, bytes]
_REASONS = {
    200: "OK",
    202: "Accepted",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_JSON = "application/json"
_MAX_HEADERS = 100
_MAX_BODY = 64 * 1024
_NO_CA = b"security is off: no CA runs here (start legation serve with --ca-dir DIR)\n"


class AdminView(Protocol):
    """What the admin API reads; implemented by the app."""

    def ready(self) -> tuple[bool, str]: ...
    def diagnostics(self) -> list[Diagnostic]: ...
    async def snapshot_for(self, node_id: str) -> Snapshot | ProxyError: ...


class CAControl(Protocol):
    """The CA's root rotation (legation/security/rotation.py), for /debug/ca and the POST."""

    def debug(self) -> dict[str, Any]: ...
    async def request(self) -> Outcome: ...


@dataclass(slots=True)
class Admin:
    view: AdminView
    status: StatusBoard
    metrics: Metrics
    ca: CAControl | None = None
    replica: str = ""  # this control plane replica's name (proxy-status shows it)

    def routes(
        self,
    ) -> dict[str, Callable[[dict[str, list[str]]], Response | Awaitable[Response]]]:
        return {
            "/healthz": lambda q: (200, "text/plain", b"ok\n"),
            "/readyz": self._readyz,
            "/metrics": lambda q: (
                200,
                CONTENT_TYPE_LATEST,
                generate_latest(self.metrics.registry),
            ),
            "/debug/proxies": lambda q: _json([s.as_dict() for s in self.status.all()]),
            "/debug/syncz": self._syncz,
            "/debug/changes": lambda q: _json(self.status.changes.recent()),
            "/debug/config_dump": self._config_dump,
            "/debug/diagnostics": lambda q: _json([d.as_dict() for d in self.view.diagnostics()]),
            "/debug/ca": self._debug_ca,
        }

    def post_routes(self) -> dict[str, Callable[[dict[str, list[str]]], Awaitable[Response]]]:
        return {"/ca/rotate-root": self._rotate_root}

    def _debug_ca(self, q: dict[str, list[str]]) -> Response:
        if self.ca is None:
            return 404, "text/plain", _NO_CA
        return _json(self.ca.debug())

    async def _rotate_root(self, q: dict[str, list[str]]) -> Response:
        if self.ca is None:
            return 404, "text/plain", _NO_CA
        outcome = await self.ca.request()
        if outcome.refused is None:
            _log.info("admin.root-rotation-requested", root=outcome.fingerprint)
            return _json({"status": "accepted", "fingerprint": outcome.fingerprint,
                          "phase": "distributing", "progress": "GET /debug/ca"}, status=202)
        code = 500 if outcome.refused is Refusal.FAILED else 409
        return _json({"status": "refused", "reason": str(outcome.refused),
                      "message": outcome.message}, status=code)

    def _readyz(self, q: dict[str, list[str]]) -> Response:
        ok, why = self.view.ready()
        return (200 if ok else 503), "text/plain", (why + "\n").encode()

    async def _syncz(self, q: dict[str, list[str]]) -> Response:
        """Per connected stream and type: SYNCED / NOT SENT / STALE / NACKED against the
        version its current snapshot holds (what `legation proxy-status` shows); the
        last NACK's message; `replica`: which control plane answers."""
        rows = []
        wanted = (q.get("proxy") or [""])[0]
        for st in self.status.all():
            if wanted and st.node_id != wanted:
                continue
            entry = await self.view.snapshot_for(st.node_id)
            types: dict[str, Any] = {}
            for type_url in PUSH_ORDER:
                short = short_name(type_url)
                ts = st.types.get(short)
                if ts is None:
                    continue
                expected = entry.version(type_url) if isinstance(entry, Snapshot) else ""
                nack = ts.last_nack
                types[short] = {
                    "status": sync_state(ts, expected), "sent": ts.sent_version,
                    "acked": ts.acked_version, "expected": expected,
                    "nack": None if nack is None else {"version": nack.version,
                                                       "message": nack.message, "at": nack.at},
                }
            rows.append({"node": st.node_id, "stream": st.stream, "peer": st.peer,
                         "replica": self.replica, "types": types})
        if wanted and not rows:
            return 404, "text/plain", f"no connected proxy {wanted}\n".encode()
        return _json(rows)

    async def _config_dump(self, q: dict[str, list[str]]) -> Response:
        node = (q.get("proxy") or [""])[0]
        if not node:
            return 400, "text/plain", b"missing ?proxy=<node id>\n"
        entry = await self.view.snapshot_for(node)
        if isinstance(entry, ProxyError):
            return 404, "text/plain", (entry.message + "\n").encode()
        return _json(config_dump(node, entry))


def config_dump(node_id: str, snapshot: Snapshot) -> dict[str, Any]:
    """The resources a proxy receives, decoded to JSON; private keys redacted."""
    out: dict[str, Any] = {"node": node_id, "versions": {}, "resources": {}}
    for type_url in PUSH_ORDER:
        short = short_name(type_url)
        out["versions"][short] = snapshot.version(type_url)
        items = []
        for name, res in sorted(snapshot.of_type(type_url).items()):
            body = json_format.MessageToDict(res.any, preserving_proto_field_name=True)
            if type_url == SECRET:
                _redact(body)
            items.append({"name": name, "version": res.version, "resource": body})
        out["resources"][short] = items
    return out


def _redact(obj: Any) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == "private_key":
                obj[key] = "[redacted]"
            else:
                _redact(value)
    elif isinstance(obj, list):
        for value in obj:
            _redact(value)


def _json(value: Any, *, status: int = 200) -> Response:
    return status, _JSON, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()


class AdminServer:
    def __init__(self, admin: Admin, *, host: str, port: int) -> None:
        self._routes = admin.routes()
        self._post = admin.post_routes()
        self._host, self._port = host, port
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "start() first"
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self._host, self._port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(10):
                status, ctype, body = await self._respond(reader)
            head = (
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception:  # a bug in a handler must not kill the admin server
            _log.exception("admin.handler_error")
        finally:
            writer.close()

    async def _respond(self, reader: asyncio.StreamReader) -> Response:
        request_line = (await reader.readline()).decode("latin-1").split()
        headers = await _headers(reader)
        if len(request_line) < 2 or headers is None:
            return 400, "text/plain", b"bad request\n"
        method, target = request_line[0], request_line[1]
        url = urlsplit(target)
        path = url.path.rstrip("/") or "/"
        if method == "POST" and path in self._post:
            if "origin" in headers or "sec-fetch-site" in headers:
                return 403, "text/plain", b"operator actions are not accepted from browsers\n"
            length = headers.get("content-length", "0")
            if not length.isdigit() or int(length) > _MAX_BODY:
                return 400, "text/plain", b"bad Content-Length\n"
            await reader.readexactly(int(length))  # no body is needed; drain it
            return await self._post[path](parse_qs(url.query))
        if method not in ("GET", "HEAD") or path in self._post:
            allowed = "POST" if path in self._post else "GET"
            return 405, "text/plain", f"only {allowed}\n".encode()
        handler = self._routes.get(path)
        if handler is None:
            return (
                404,
                "text/plain",
                ("unknown path; try: " + " ".join(sorted(self._routes)) + "\n").encode(),
            )
        response = handler(parse_qs(url.query))
        return await response if inspect.isawaitable(response) else response


async def _headers(reader: asyncio.StreamReader) -> dict[str, str] | None:
    """The request's headers, names lower-cased; None when there are too many."""
    out: dict[str, str] = {}
    for _ in range(_MAX_HEADERS):
        line = await reader.readline()
        if line in (b"\r\n", b"\n", b""):
            return out
        name, _, value = line.decode("latin-1").partition(":")
        out[name.strip().lower()] = value.strip()
    return None
