"""An emulated kube-apiserver speaking the real HTTP API, for tests of the
Kubernetes source with the official, unmodified `kubernetes` client.

kube-apiserver cannot be installed here, and `kmock` (PyPI) was checked and
does not fit: its lists carry no real resourceVersion, its watches replay every
object as ADDED and ignore resourceVersion, bookmarks, timeoutSeconds and
compaction. So this is a small stdlib emulation (`http.server`, one thread per
connection) in front of an in-memory store (`state.py`).

Covered (what the real server does, as the Kubernetes source relies on it):
- `GET /api/v1/<plural>`, `/api/v1/namespaces/<ns>/<plural>`,
  `/apis/<group>/<version>/[namespaces/<ns>/]<plural>`: a `<Kind>List` with
  `metadata.resourceVersion` = the global revision at the time of the list.
  Items of built-in kinds have no `apiVersion`/`kind` (as the real server sends
  them); items of CRDs do. `GET .../<plural>/<name>` returns one object.
- One global, monotonically increasing resourceVersion (etcd's revision); each
  create/update/delete bumps it; a DELETED event carries the deletion's revision.
- `?watch=1&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T`: HTTP/1.1
  chunked stream of JSON lines `{"type": ADDED|MODIFIED|DELETED|BOOKMARK|ERROR,
  "object": ...}` replaying every event after N from the history, then live
  events; without resourceVersion (or "0"), synthetic ADDED events for the
  current state first. Namespaced watches see only their namespace.
- Compaction (`compact`): a watch from an rv below the compacted revision gets
  200 + one ERROR event with a `Status` of code 410 (reason Expired) and the
  stream ends, as the real server does; `gone_as_http_status=True` answers with
  an HTTP 410 instead (the other form clients must handle). A live watcher that
  has not yet been sent events the compaction removed (see `paused`) also gets
  the ERROR 410; an idle, up-to-date watcher is not disturbed.
- Server-side timeouts: the stream ends cleanly (terminating chunk) after
  timeoutSeconds (`max_watch_timeout_s` caps it to force short sessions).
- Bookmarks: `bookmark()` sends BOOKMARK(current revision) to every watcher that
  asked for them, after anything still queued for it; `bookmark_interval_s`
  sends them to idle watchers periodically, as a real server does.
- Connection failures: `drop_watches()` cuts every watch connection (or ends the
  streams cleanly); `stop()` / `start()` take the whole server down and bring it
  back on the same port, keeping the cluster's state and history (etcd survives
  an apiserver restart); knobs keep working while it is down.
- CRDs: the Istio groups are served at a set of versions per group
  (`set_served`); an unserved group/version answers 404 with a NotFound
  `Status`, and its open watches are cut. Discovery: `/version`, `/api`,
  `/api/v1`, `/apis`, `/apis/<group>`, `/apis/<group>/<version>`.
- `block_lists()` holds list requests of some kinds (a slow initial list);
  `paused()` holds all watch delivery (a watcher that falls behind).

- Writes over HTTP (writes.py) for Secrets and coordination.k8s.io/v1 Leases:
  create (409 AlreadyExists when taken), update (409 Conflict when
  metadata.resourceVersion is stale: optimistic concurrency), get, delete;
  the `status` subresource of custom resources (JSON merge patch); and
  TokenReview (authentication.k8s.io/v1) against tokens registered with
  `add_token`: audiences, pod-bound tokens invalidated with their pod.

- Field selectors on lists and watches: `metadata.name`, `metadata.namespace`
  and a Secret's `type`, with `=`, `==` and `!=`; any other field is a 400
  "field label not supported", as the real server answers.

Not covered: writes of the mesh kinds over HTTP (tests change them through the
Python knobs), authorization (any request is allowed), TLS, label selectors,
other field selectors, `limit`/`continue` pagination (lists are always complete),
`resourceVersionMatch` and list-from-rv semantics (lists are always the current
state), `sendInitialEvents`/watch-list, the 3 s wait and 504 for a watch from a
future resourceVersion, server-side apply, subresources other than custom
resources' status, finalizers/graceful
deletion, generation/managedFields, protobuf encoding, admission, CRD schema
validation and version conversion beyond rewriting `apiVersion`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from .http import HTTPServer, Options, Request, Router
from .resources import ALL_CRD_VERSIONS, by_kind, split_api_version
from .state import ClusterState, TokenInfo


class ApiServer:
    """An emulated API server on 127.0.0.1; use as a context manager or start()/stop()."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        crds: Mapping[str, tuple[str, ...]] | None = None,
        max_watch_timeout_s: float | None = None,
        bookmark_interval_s: float | None = None,
        gone_as_http_status: bool = False,
    ) -> None:
        self._host, self._port = host, port
        self.state = ClusterState(served=ALL_CRD_VERSIONS if crds is None else crds)
        self.options = Options(max_watch_timeout_s=max_watch_timeout_s,
                               bookmark_interval_s=bookmark_interval_s,
                               gone_as_http_status=gone_as_http_status)
        self.requests: list[Request] = []
        self._router = Router(self.state, self.options, self.requests)
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> ApiServer:
        """Listen (again, on the same port after a stop)."""
        if self._server is not None:
            return self
        server = HTTPServer((self._host, self._port), self._router)
        self._port = server.server_address[1]
        self.state.set_accepting(True)
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                                        name=f"apiserver:{self._port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """An outage: stop listening and cut every open connection."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._server = self._thread = None
        self.state.set_accepting(False)
        server.shutdown()
        server.cut_connections()
        server.server_close()
        thread.join()

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- the cluster's objects ---------------------------------------------------------

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create or replace `obj` (by apiVersion, kind, namespace, name); returns it as stored."""
        return self.state.put(obj, must_exist=None)

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self.state.put(obj, must_exist=False)

    def update(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        return self.state.put(obj, must_exist=True)

    def delete(self, api_version: str, kind: str, name: str, namespace: str = "default") -> None:
        self.state.remove(api_version, kind, name, namespace)

    def delete_object(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        self.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace", "default"))

    def objects(self) -> list[dict[str, Any]]:
        """Every object of the cluster now, as a client would read it."""
        return self.state.all_objects()

    def add_token(self, token: str, *, namespace: str, service_account: str,
                  audiences: tuple[str, ...] = ("legation",), pod: str = "") -> TokenInfo:
        """Make TokenReview accept `token` as a projected service-account token of
        `namespace`/`service_account` for `audiences`; with `pod`, bound to that pod as it
        exists now (its uid), so the token stops working once the pod is deleted."""
        uid = ""
        if pod:
            stored = self.state.get(by_kind("", "Pod"), namespace, pod)
            uid = str(stored["metadata"]["uid"]) if stored else ""
        info = TokenInfo(namespace=namespace, service_account=service_account,
                         audiences=audiences, pod=pod, pod_uid=uid)
        with self.state.cond:
            self.state.tokens[token] = info
        return info

    def revoke_token(self, token: str) -> None:
        with self.state.cond:
            self.state.tokens.pop(token, None)

    def get(self, api_version: str, kind: str, name: str,
            namespace: str = "default") -> dict[str, Any] | None:
        """One stored object as a client reads it, or None."""
        group, version = split_api_version(api_version)
        rtype = by_kind(group, kind)
        obj = self.state.get(rtype, namespace if rtype.namespaced else "", name)
        return None if obj is None else self.state.render(rtype, version, obj)

    @property
    def resource_version(self) -> int:
        with self.state.cond:
            return self.state.rv

    # -- failure knobs -------------------------------------------------------------------

    def compact(self, rv: int | None = None, *, cut_behind: bool = True) -> int:
        """Forget the history up to `rv` (default: now); watches from an older rv get 410.
        `cut_behind`: open watchers still holding undelivered events at or below `rv` end
        with an ERROR 410 too. Returns `rv`."""
        return self.state.compact(rv, cut_behind=cut_behind)

    def bookmark(self) -> int:
        """Send BOOKMARK(current rv) to every watcher that allows bookmarks; returns that rv."""
        return self.state.bookmark()

    def drop_watches(self, *, clean: bool = False, group: str | None = None) -> int:
        """Cut (or cleanly end) every open watch, or only those of `group`; returns how many."""
        return self.state.drop_watches(clean=clean, group=group)

    def set_served(self, group: str, versions: tuple[str, ...]) -> None:
        """Serve CRD `group` at `versions` (() = the CRD is absent: 404)."""
        self.state.set_served(group, versions)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Hold all watch delivery: events queue up as for a watcher that fell behind."""
        self.state.set_paused(True)
        try:
            yield
        finally:
            self.state.set_paused(False)

    def block_lists(self, *plurals: str) -> None:
        """Hold list requests of these resources (e.g. "pods") until `unblock_lists()`."""
        self.state.set_list_blocked(set(plurals))

    def unblock_lists(self) -> None:
        self.state.set_list_blocked(set())

    # -- what clients asked ----------------------------------------------------------------

    def lists(self, plural: str) -> list[Request]:
        return [r for r in list(self.requests)
                if r.plural == plural and not r.watch and r.method == "GET"]

    def writes(self, plural: str) -> list[Request]:
        """POST/PUT/DELETE requests for `plural` (e.g. "secrets", "tokenreviews")."""
        return [r for r in list(self.requests) if r.plural == plural and r.method != "GET"]

    def watches(self, plural: str) -> list[Request]:
        return [r for r in list(self.requests) if r.plural == plural and r.watch]

    def watch_count(self) -> int:
        """Open watch connections right now."""
        with self.state.cond:
            return len(self.state.watchers)
