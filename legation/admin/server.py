"""Admin HTTP: /healthz /readyz /metrics /debug/proxies /debug/syncz /debug/changes
/debug/config_dump /debug/diagnostics /debug/ca, and one operator action, POST
/ca/rotate-root.

An aiohttp server (`AdminServer`): the admin port is for probes, Prometheus
and operators, not for traffic. GET handlers are plain functions (or
coroutines, when they must wait for a worker thread) returning `(status,
content_type, body)`; they read state through `AdminView`.

POST /ca/rotate-root starts a root CA rotation (legation/security/rotation.py;
`legation ca rotate-root` calls it): 202 with the new root's fingerprint once
it is staged, 409 while a rotation is in progress (it is never restarted), on
a replica that is not the Lease holder, or for an operator-provided (Istio
plug-in) CA, 404 without a CA. It is an operator action: it needs the token
`legation serve` keeps in ``<ca-dir>/admin-token`` (mode 0600: whoever can
read the CA's directory) as ``Authorization: Bearer`` (401 without it), one
is taken a minute (429), and a request that carries a browser's `Origin` or
`Sec-Fetch-Site` header is refused (403), so a web page cannot trigger it.
"""

from __future__ import annotations

import hmac
import inspect
import json
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs

import structlog
from aiohttp import web
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
_MAX_BODY = 64 * 1024
POST_INTERVAL_S = 60.0  # operator actions: at most one a minute
ADMIN_TOKEN_FILE = "admin-token"  # in --ca-dir
_NO_CA = b"security is off: no CA runs here (start legation serve with --ca-dir DIR)\n"


class AdminView(Protocol):
    """What the admin API reads; implemented by the app."""

    def ready(self) -> tuple[bool, str]: ...
    def diagnostics(self) -> list[Diagnostic]: ...
    def bootstrap_for(self, node_id: str) -> dict[str, Any] | None: ...
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
            "/debug/bootstrap": self._bootstrap,
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

    def _bootstrap(self, q: dict[str, list[str]]) -> Response:
        """The bootstrap `legation bootstrap` writes for a proxy (no credential)."""
        node = (q.get("proxy") or [""])[0]
        if not node:
            return 400, "text/plain", b"missing ?proxy=<node id>\n"
        boot = self.view.bootstrap_for(node)
        if boot is None:
            return 404, "text/plain", f"node id {node!r} names no workload\n".encode()
        return _json(boot)

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
    """The admin API over HTTP/1.1 (aiohttp): request lines, headers and bodies are
    bounded by the library (8 KiB lines and fields, `_MAX_BODY` bodies), keep-alive
    works, and a client that goes away mid-response is nobody's error.

    POST routes are operator actions: refused from browsers (403), and, when the server
    has a `token` (`legation serve --ca-dir` writes one to ``<ca-dir>/admin-token``,
    mode 0600), they require ``Authorization: Bearer <token>`` (401) and are taken at
    most once per `post_interval_s` (429 with Retry-After)."""

    def __init__(self, admin: Admin, *, host: str, port: int, token: str | None = None,
                 post_interval_s: float = POST_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._routes = admin.routes()
        self._post = admin.post_routes()
        self._host, self._port = host, port
        self._token = token
        self._interval = post_interval_s
        self._clock = clock
        self._last_post: float | None = None
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        assert self._runner is not None, "start() first"
        return int(self._runner.addresses[0][1])

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_BODY)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        try:
            status, ctype, body, headers = await self._respond(request)
        except Exception:  # a bug in a handler must not kill the admin server
            _log.exception("admin.handler_error", path=request.path[:200])
            status, ctype, body, headers = 500, "text/plain", b"internal error\n", {}
        return web.Response(status=status, body=body,
                            headers={"Content-Type": ctype, **headers})

    async def _respond(self, request: web.Request
                       ) -> tuple[int, str, bytes, dict[str, str]]:
        path = request.path.rstrip("/") or "/"
        query = parse_qs(request.query_string)
        if request.method == "POST" and path in self._post:
            refused = self._refuse_post(request)
            if refused is not None:
                return refused
            await request.read()  # no body is needed; bounded by client_max_size
            self._last_post = self._clock()
            return (*await self._post[path](query), {})
        if request.method not in ("GET", "HEAD") or path in self._post:
            allowed = "POST" if path in self._post else "GET"
            return 405, "text/plain", f"only {allowed}\n".encode(), {"Allow": allowed}
        handler = self._routes.get(path)
        if handler is None:
            return (404, "text/plain",
                    ("unknown path; try: " + " ".join(sorted(self._routes)) + "\n").encode(), {})
        response = handler(query)
        out = await response if inspect.isawaitable(response) else response
        return (*out, {})

    def _refuse_post(self, request: web.Request) -> tuple[int, str, bytes, dict[str, str]] | None:
        headers = request.headers
        if "Origin" in headers or "Sec-Fetch-Site" in headers:
            return 403, "text/plain", b"operator actions are not accepted from browsers\n", {}
        if self._token is not None:
            given = headers.get("Authorization", "")
            scheme, _, token = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(
                    token.strip().encode(), self._token.encode()):
                return (401, "text/plain",
                        b"operator actions need Authorization: Bearer <the token in "
                        b"<ca-dir>/admin-token> (legation ca ... --ca-dir DIR sends it)\n",
                        {"WWW-Authenticate": 'Bearer realm="legation-admin"'})
        if self._last_post is not None:
            wait = self._interval - (self._clock() - self._last_post)
            if wait > 0:
                return (429, "text/plain",
                        f"one operator action per {self._interval:.0f} s; try again in "
                        f"{wait:.0f} s\n".encode(), {"Retry-After": str(max(1, round(wait)))})
        return None


def load_or_create_token(path: Path) -> str:
    """The admin token in `path`, created (32 random bytes, hex, mode 0600) if missing."""
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    token = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
