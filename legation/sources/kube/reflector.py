"""One kind in one scope, listed then watched, in its own thread (the official
client blocks). A reflector turns API objects into `Change`s for the
`KubernetesSource`, which applies them to the store on the event loop.

It keeps no raw API objects: only (namespace, name) -> (resourceVersion, store
key), which is what a re-list needs to emit exactly the upserts of objects that
changed and the deletions of objects that vanished. Conversion (pure) runs here,
off the event loop, and only for objects whose resourceVersion changed.

Protocol (https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes):
LIST, then WATCH from the list's resourceVersion with allowWatchBookmarks and a
server-side timeoutSeconds; BOOKMARK moves the resourceVersion; a watch that
ends cleanly is resumed from the last resourceVersion; 410 Gone (an HTTP 410 or
an ERROR event with code 410) means that resourceVersion was compacted: re-list.
Any other failure backs off (exponential, full jitter) and re-lists. A 404 on
every version of a kind means its CRD is not installed: reported, retried later.

After an API-server outage the reflectors recover together: the first whose list
succeeds again beats the shared `Pulse`, which wakes every other reflector out of
its backoff to re-list at once, instead of each waiting out its own delay (up to
`backoff_cap_s`: kinds used to come back 12-20 s apart).
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

from legation.model import Diagnostic, MeshObject, ObjectKey, Severity, SourceRef, object_key
from legation.sources.convert import convert_object
from legation.sources.kube.kinds import WatchedKind, list_call

_log = structlog.get_logger("legation.sources.kubernetes")

Ident = tuple[str, str]  # (namespace, name) of an API object


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    watch_timeout_s: float = 300.0  # each watch asks for [t, 2t) seconds, as client-go does
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    crd_retry_s: float = 30.0
    connect_timeout_s: float = 10.0
    request_timeout_s: float = 60.0  # read timeout of a list; a watch allows its own length + this


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """What one API object means for the store: delete `drop`, then upsert `put`."""

    ident: Ident
    put: MeshObject | None = None
    drop: ObjectKey | None = None
    diagnostics: tuple[Diagnostic, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Listed:
    """A (re-)list finished: the diff against what this reflector held before."""

    changes: tuple[Change, ...]
    missing: Diagnostic | None = None  # set when the kind is not served (CRD absent)


Message = Change | Listed


class _Gone(Exception):
    """The watch's resourceVersion was compacted (410): re-list."""


class _Missing(Exception):
    """No version of this kind is served (404)."""


class _WatchError(Exception):
    """The server ended a watch with an ERROR event other than 410."""


class Pulse:
    """Shared by a source's reflectors: "the API server answers again" (module doc)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._beats = 0

    @property
    def beats(self) -> int:
        return self._beats

    def beat(self) -> None:
        with self._cond:
            self._beats += 1
            self._cond.notify_all()

    def wait(self, timeout: float, *, since: int, stop: threading.Event) -> None:
        """Until `timeout` passes, a beat after `since`, or `stop`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._beats == since and not stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                self._cond.wait(min(left, 0.25))


_TRANSIENT = (k8s.ApiException, urllib3.exceptions.HTTPError, OSError, ValueError, _WatchError)


class Reflector:
    def __init__(
        self,
        *,
        api: Any,
        kind: WatchedKind,
        namespace: str | None,
        post: Callable[[Message], bool],
        timing: Timing,
        rng: random.Random,
        pulse: Pulse | None = None,
    ) -> None:
        self.kind = kind
        self._pulse = pulse or Pulse()
        self._failing = False  # the last attempt failed: a success now means recovery
        self.namespace = namespace
        self._api = api
        self._post = post  # False once the receiver is gone
        self._timing = timing
        self._rng = rng
        self._known: dict[Ident, tuple[str, ObjectKey | None]] = {}
        self._rv = ""  # "": must (re-)list
        self._progress = False  # the current watch delivered something
        self._version = ""
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._resp: Any = None
        self._log = _log.bind(kind=kind.kind, namespace=namespace or "*")

    # -- control (any thread) -----------------------------------------------------------

    def stop(self) -> None:
        """Stop at once, interrupting a blocked read."""
        self._stop.set()
        with self._lock:
            resp = self._resp
        if resp is not None:
            _interrupt(resp)

    # read from other threads for status only (plain attribute reads)
    @property
    def resource_version(self) -> str:
        return self._rv

    @property
    def served_version(self) -> str:
        return self._version

    @property
    def object_count(self) -> int:
        return len(self._known)

    # -- the thread --------------------------------------------------------------------

    def run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._progress = False
            try:
                fresh = not self._rv
                if fresh:
                    self._list()
                    if self._failing:  # the server is back: wake the others now
                        self._failing = False
                        self._pulse.beat()
                self._watch(fresh=fresh)
                attempt = 0  # the watch ended cleanly (server-side timeout): resume it
            except _Gone:
                self._log.info("k8s.relist", reason="gone", rv=self._rv)
                self._rv = ""
            except _Missing:
                self._rv = ""
                self._stop.wait(self._timing.crd_retry_s)
            except _TRANSIENT as exc:
                if self._stop.is_set():
                    break
                self._rv = ""  # resync: re-list (and diff) once the server answers again
                beats = self._pulse.beats
                self._failing = True
                attempt = 0 if self._progress else attempt
                delay = self._rng.uniform(0, min(self._timing.backoff_cap_s,
                                                 self._timing.backoff_base_s * 2**attempt))
                attempt += 1
                self._log.warning("k8s.backoff", delay_s=round(delay, 3), attempt=attempt,
                                  error=_describe(exc))
                self._pulse.wait(delay, since=beats, stop=self._stop)

    def _list(self) -> None:
        body, version = self._list_served()
        metadata = body.get("metadata")
        rv = str(metadata.get("resourceVersion") or "") if isinstance(metadata, dict) else ""
        items = body.get("items") or []
        if not rv or not isinstance(items, list):
            raise ValueError("the list response has no metadata.resourceVersion or items")
        api_version = body.get("apiVersion") or self.kind.api_version(version)
        changes = self._diff(items, api_version)
        self._version, self._rv = version, rv
        self._log.info("k8s.listed", count=len(self._known), changes=len(changes), rv=self._rv,
                       version=version)
        self._send(Listed(changes=tuple(changes)))

    def _list_served(self) -> tuple[Mapping[str, Any], str]:
        """The list at the first served version; raises `_Missing` if none is."""
        for version in self.kind.versions:
            try:
                resp = self._call(version, _request_timeout=self._timeouts(0))
                with self._holding(resp, reuse=True):
                    body = json.loads(resp.data)
            except k8s.ApiException as exc:
                if exc.status == 404:
                    continue
                raise
            if not isinstance(body, dict):
                raise ValueError("the list response is not a JSON object")
            return body, version
        self._log.warning("k8s.kind_missing", versions=",".join(self.kind.versions),
                          retry_s=self._timing.crd_retry_s)
        self._send(Listed(changes=(), missing=self._missing_diagnostic()))
        raise _Missing

    def _watch(self, *, fresh: bool) -> None:
        """Watch from the current rv until the stream ends cleanly."""
        timeout = max(1, round(self._timing.watch_timeout_s * (1 + self._rng.random())))
        events = 0
        try:
            resp = self._call(self._version, watch=True, resource_version=self._rv,
                              allow_watch_bookmarks=True, timeout_seconds=timeout,
                              _request_timeout=self._timeouts(timeout))
            with self._holding(resp, reuse=False):
                for line in iter_resp_lines(resp):
                    if self._stop.is_set():
                        return
                    self._on_event(line)
                    events += 1
                    self._progress = True
        except (_Gone, k8s.ApiException) as exc:
            gone = isinstance(exc, _Gone) or exc.status == 410
            if gone and fresh and not events:  # compacted right after our list: back off
                raise _WatchError("410 Gone right after a fresh list") from exc
            if gone:
                raise _Gone from exc
            raise
        self._log.info("k8s.watch_restart", reason="ended", rv=self._rv, events=events)

    def _on_event(self, line: str) -> None:
        event = json.loads(line)
        kind = event.get("type") if isinstance(event, dict) else None
        obj = event.get("object") if isinstance(event, dict) else None
        if not isinstance(obj, dict):
            raise ValueError("a watch event without an object")
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone
            raise _WatchError(f"watch ERROR {obj.get('code')}: {obj.get('message')}")
        metadata = obj.get("metadata")
        if not isinstance(metadata, dict):
            metadata = {}
        rv = str(metadata.get("resourceVersion") or "")
        if kind in ("ADDED", "MODIFIED"):
            ident = _ident(metadata)
            prev = self._known.get(ident)
            if prev is None or prev[0] != rv or not rv:
                change, key = self._convert(obj, ident, prev)
                self._known[ident] = (rv, key)
                self._send(change)
        elif kind == "DELETED":
            ident = _ident(metadata)
            prev = self._known.pop(ident, None)
            if prev is not None:
                self._send(Change(ident=ident, drop=prev[1]))
        elif kind != "BOOKMARK":
            self._log.debug("k8s.unknown_event", type=kind)
        if rv:
            self._rv = rv

    # -- helpers -----------------------------------------------------------------------

    def _diff(self, items: list[Any], api_version: str) -> list[Change]:
        seen: dict[Ident, tuple[str, ObjectKey | None]] = {}
        changes: list[Change] = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("metadata"), dict):
                continue
            item.setdefault("apiVersion", api_version)  # built-in list items carry no TypeMeta
            item.setdefault("kind", self.kind.kind)
            ident = _ident(item["metadata"])
            rv = str(item["metadata"].get("resourceVersion") or "")
            prev = self._known.get(ident)
            if prev is not None and rv and prev[0] == rv:
                seen[ident] = prev
                continue
            change, key = self._convert(item, ident, prev)
            seen[ident] = (rv, key)
            changes.append(change)
        changes += [Change(ident=i, drop=k) for i, (_, k) in self._known.items() if i not in seen]
        self._known = seen
        return changes

    def _convert(self, data: dict[str, Any], ident: Ident,
                 prev: tuple[str, ObjectKey | None] | None) -> tuple[Change, ObjectKey | None]:
        try:
            obj, bad_key, diags = convert_object(data)
        except Exception:  # a converter bug must not stop the whole kind
            self._log.exception("k8s.convert_failed", object="/".join(ident))
            return Change(ident=ident, diagnostics=(self._crash_diagnostic(ident),)), (
                prev[1] if prev else None)
        if obj is not None:
            return Change(ident=ident, put=obj, diagnostics=tuple(diags)), object_key(obj)
        if bad_key is not None:  # invalid: the store keeps its last good version
            return Change(ident=ident, diagnostics=tuple(diags)), bad_key
        # skipped on purpose (e.g. a pod without an IP): whatever we had for it goes
        return Change(ident=ident, drop=prev[1] if prev else None, diagnostics=tuple(diags)), None

    def _call(self, version: str, **kwargs: Any) -> Any:
        fn = list_call(self._api, self.kind, version, self.namespace)
        if self.kind.field_selector:
            kwargs["field_selector"] = self.kind.field_selector
        return fn(_preload_content=False, **kwargs)

    def _timeouts(self, watch_s: int) -> tuple[float, float]:
        return (self._timing.connect_timeout_s, watch_s + self._timing.request_timeout_s)

    @contextlib.contextmanager
    def _holding(self, resp: Any, *, reuse: bool) -> Iterator[None]:
        """Make `resp` interruptible by stop(); afterwards return its connection to the
        pool (`reuse`, a fully read list) or close it (a watch: the server must see us go)."""
        with self._lock:
            self._resp = resp
        if self._stop.is_set():  # stop() ran before we published resp: interrupt it ourselves
            _interrupt(resp)
        try:
            yield
        finally:
            with self._lock:
                self._resp = None
            with contextlib.suppress(Exception):
                if reuse and not self._stop.is_set():
                    resp.release_conn()
                else:
                    resp.close()

    def _send(self, message: Message) -> None:
        if not self._post(message):
            self._stop.set()

    def _missing_diagnostic(self) -> Diagnostic:
        versions = ", ".join(self.kind.versions)
        return Diagnostic(
            ref=SourceRef(kind="CustomResourceDefinition" if self.kind.crd else "APIResource",
                          namespace="", name=self.kind.resource),
            field="",
            code="kubernetes.crd-missing" if self.kind.crd else "kubernetes.api-missing",
            message=f"the API server serves {self.kind.kind} ({self.kind.resource}) at none of "
            f"the versions {versions}; {self.kind.kind} objects are not read until it does "
            f"(checked again every {self._timing.crd_retry_s:g}s; objects already read are kept).",
            severity=Severity.WARNING,
        )

    def _crash_diagnostic(self, ident: Ident) -> Diagnostic:
        return Diagnostic(
            ref=SourceRef(kind=self.kind.kind, namespace=ident[0], name=ident[1]),
            field="",
            code="kubernetes.convert-failed",
            message="Legation failed to convert this object (an internal error, see the log); "
            "its last good version is kept.",
        )


def _interrupt(resp: Any) -> None:
    """Unblock a read of `resp` in another thread (urllib3 >= 2.3; else close its socket)."""
    try:
        resp.shutdown()
    except Exception:
        with contextlib.suppress(Exception):
            resp.connection.sock.shutdown(socket.SHUT_RDWR)


def _ident(metadata: Mapping[str, Any]) -> Ident:
    return (str(metadata.get("namespace") or ""), str(metadata.get("name") or ""))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, k8s.ApiException):
        return f"HTTP {exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
