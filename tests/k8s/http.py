"""The emulated API server's HTTP side: routing of the Kubernetes REST paths,
JSON list/get responses, and chunked watch streams (stdlib `http.server`);
writes (POST/PUT/DELETE of the writable kinds, TokenReview) are in writes.py.

One thread per connection (`ThreadingHTTPServer`); HTTP/1.1 keep-alive like a
real server. Every accepted socket is tracked so that an outage can cut them all.
"""

from __future__ import annotations

import contextlib
import functools
import json
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import resources as res
from .state import ClusterState, Watcher
from .writes import patch_status, write


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """One request the server answered (for assertions)."""

    path: str
    query: dict[str, str]
    method: str = "GET"
    plural: str = ""
    version: str = ""
    namespace: str | None = None
    watch: bool = False
    authorization: str = ""  # the Authorization header, as sent


@dataclass(slots=True, kw_only=True)
class Options:
    default_watch_timeout_s: float = 1800.0  # when the client sends no timeoutSeconds
    max_watch_timeout_s: float | None = None  # cap on timeoutSeconds (forces short watches)
    bookmark_interval_s: float | None = None  # None: bookmarks only when the test asks
    gone_as_http_status: bool = False  # answer a too-old watch with HTTP 410, not an ERROR event


class HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: Router) -> None:
        self.api = api
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self._conns_lock:
            conns = list(self._conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HTTPServer

    def do_GET(self) -> None:
        self.server.api.handle(self)

    # writable kinds only, PATCH for the status subresource only: see writes.py
    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


def send_json(h: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    data = json.dumps(body).encode()
    h.send_response(code)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(data)))
    h.end_headers()
    h.wfile.write(data)


def _not_found(h: BaseHTTPRequestHandler, what: str) -> None:
    message = f"the server could not find the requested resource ({what})"
    send_json(h, 404, res.status(404, "NotFound", message))


class Router:
    """Answers one request against a `ClusterState`."""

    def __init__(self, state: ClusterState, options: Options, log: list[Request]) -> None:
        self.state = state
        self.options = options
        self.log = log
        self.log_lock = threading.Lock()

    def handle(self, h: _Handler) -> None:
        url = urlsplit(h.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = [p for p in url.path.split("/") if p]
        if parts == ["version"]:
            send_json(h, 200, {"major": "1", "minor": "31", "gitVersion": "v1.31.0-emulated"})
            return
        if not parts or parts[0] not in ("api", "apis"):
            _not_found(h, url.path)
            return
        if parts[0] == "api":
            group, rest = "", parts[1:]
            if not rest:
                host, port = h.server.server_address[:2]
                send_json(h, 200, res.api_versions(f"{host!s}:{port}"))
                return
        else:
            if len(parts) == 1:
                send_json(h, 200, res.api_group_list(self._served_groups()))
                return
            group, rest = parts[1], parts[2:]
            if not rest:
                versions = self._served_groups().get(group, ())
                if not versions:
                    _not_found(h, url.path)
                    return
                send_json(h, 200, res.api_group(group, versions))
                return
        self._resource(h, url.path, query, group, rest[0], rest[1:])

    def _served_groups(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, tuple[str, ...]] = {}
        for rt in res.RESOURCE_TYPES:
            if rt.group:
                vs = self.state.served_versions(rt)
                out[rt.group] = tuple(dict.fromkeys(out.get(rt.group, ()) + vs))
        return out

    def _resource(self, h: _Handler, path: str, query: dict[str, str], group: str, version: str,
                  rest: list[str]) -> None:
        if not rest:
            types = self.state.served_types(group, version)
            if not types:
                _not_found(h, path)
                return
            send_json(h, 200, res.api_resource_list(group, version, types))
            return
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        rtype = res.by_plural(group, rest[0])
        watch = query.get("watch") in ("1", "true")
        with self.log_lock:  # every request for a resource, answered or not
            self.log.append(Request(path=path, query=query, method=h.command, plural=rest[0],
                                    version=version, namespace=namespace, watch=watch,
                                    authorization=h.headers.get("Authorization", "")))
        body = _read_body(h)
        if (rtype is not None and len(rest) == 3 and rest[2] == "status" and rtype.crd
                and version in self.state.served_versions(rtype)):
            code, reply = patch_status(self.state, h.command, h.headers.get("Content-Type", ""),
                                       rtype, version, namespace, rest[1], body)
            send_json(h, code, reply)
            return
        if (rtype is None or len(rest) > 2 or version not in self.state.served_versions(rtype)
                or (namespace is not None and not rtype.namespaced)):
            _not_found(h, path)
            return
        if h.command == "PATCH":
            send_json(h, 405, res.status(405, "MethodNotAllowed",
                                         "the emulator patches the status subresource only"))
            return
        if h.command != "GET" or rtype.virtual:
            if h.command == "GET":
                send_json(h, 405,
                          res.status(405, "MethodNotAllowed", f"{rtype.plural}: create only"))
                return
            code, reply = write(self.state, h.command, rtype, version, namespace,
                                rest[1] if len(rest) == 2 else None, body)
            send_json(h, code, reply)
            return
        if len(rest) == 2:
            obj = self.state.get(rtype, namespace or "", rest[1])
            if obj is None:
                message = f'{rtype.plural} "{rest[1]}" not found'
                send_json(h, 404, res.status(404, "NotFound", message))
            else:
                send_json(h, 200, self.state.render(rtype, version, obj))
        elif (terms := _field_selector(query, rtype.plural)) is None:
            send_json(h, 400, res.status(
                400, "BadRequest",
                f"field label not supported: {query['fieldSelector'].split('=')[0]}"))
        elif watch:
            self._watch(h, rtype, version, namespace, query, terms)
        else:
            rv, items = self.state.list_objects(rtype, version, namespace, terms)
            send_json(h, 200, {
                "kind": f"{rtype.kind}List",
                "apiVersion": rtype.api_version(version),
                "metadata": {"resourceVersion": str(rv)},
                "items": items,
            })

    def _watch(self, h: _Handler, rtype: res.ResourceType, version: str, namespace: str | None,
               query: dict[str, str], fields: tuple[tuple[str, bool, str], ...] = ()) -> None:
        rv_text = query.get("resourceVersion")
        if rv_text not in (None, "") and not rv_text.isdigit():
            send_json(h, 400, res.status(400, "BadRequest", f"invalid resourceVersion {rv_text!r}"))
            return
        w = Watcher(rtype=rtype, version=version, namespace=namespace, fields=fields,
                    bookmarks=query.get("allowWatchBookmarks") in ("1", "true"))
        self.state.open_watch(w, rv_text)
        try:
            if w.gone and self.options.gone_as_http_status:
                send_json(h, 410, res.status(410, "Expired", w.gone))
                return
            self._stream(h, w, self._deadline(query))
        finally:
            self.state.close_watch(w)

    def _deadline(self, query: dict[str, str]) -> float:
        text = query.get("timeoutSeconds", "")
        timeout = float(text) if text.isdigit() else self.options.default_watch_timeout_s
        if self.options.max_watch_timeout_s is not None:
            timeout = min(timeout, self.options.max_watch_timeout_s)
        return time.monotonic() + timeout

    def _stream(self, h: _Handler, w: Watcher, deadline: float) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        try:
            every = self.options.bookmark_interval_s
            alive = functools.partial(_client_alive, h.connection)
            while (batch := self.state.next_batch(w, deadline, every, alive)) is not None:
                for item in batch:
                    _chunk(h, self.state.encode(w, item))
            if w.gone:
                # What a real server does for a watch it cannot serve: 200, then one ERROR event.
                event = {"type": "ERROR", "object": res.status(410, "Expired", w.gone)}
                _chunk(h, json.dumps(event).encode() + b"\n")
            if w.dropped and not w.drop_clean:
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            h.wfile.write(b"0\r\n\r\n")
        except OSError:  # the client went away
            h.close_connection = True


# What a real server indexes for field selectors: every kind's metadata.name and
# metadata.namespace, and some kinds' own fields (a Secret's type).
_FIELDS = {"secrets": ("type",)}


def _field_selector(query: dict[str, str], plural: str
                    ) -> tuple[tuple[str, bool, str], ...] | None:
    """The terms of `fieldSelector` ((field, equal, value)), or None when one names a field
    the server does not support. Operators `=`, `==` and `!=`, terms joined by commas."""
    terms = []
    for term in filter(None, query.get("fieldSelector", "").split(",")):
        if "!=" in term:
            field, _, value = term.partition("!=")
            equal = False
        else:
            field, _, value = term.partition("==") if "==" in term else term.partition("=")
            equal = True
        if field not in ("metadata.name", "metadata.namespace", *_FIELDS.get(plural, ())):
            return None
        terms.append((field, equal, value))
    return tuple(terms)


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    length = h.headers.get("Content-Length", "")
    return h.rfile.read(int(length)) if length.isdigit() else b""


def _client_alive(conn: socket.socket) -> bool:
    """Like a real (Go) server's request context: notice a client that hung up."""
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def _chunk(h: BaseHTTPRequestHandler, data: bytes) -> None:
    h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
