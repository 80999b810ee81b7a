"""The emulated cluster's storage: objects, the global resourceVersion, the event
history (what etcd's revision log gives a real API server), compaction, and the
per-connection watcher queues that fan events out.

Thread-safe: HTTP handler threads and the test's thread share one `Condition`.
Stored objects never carry `apiVersion`/`kind` (they are added when rendered,
for the version a client asked for) and are never mutated after they are stored.
"""

from __future__ import annotations

import bisect
import copy
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .resources import RESOURCE_TYPES, ResourceType, by_kind, split_api_version

Key = tuple[tuple[str, str], str, str]  # (resource ident, namespace, name)
CREATION_TIMESTAMP = "2024-01-01T00:00:00Z"
_CLIENT_POLL_S = 0.05  # how often a waiting watch checks that its client is still there


class NotFound(KeyError):
    """The object does not exist (HTTP 404 NotFound)."""


class AlreadyExists(KeyError):
    """A create found the name taken (HTTP 409 AlreadyExists)."""


class Conflict(Exception):
    """An update's metadata.resourceVersion is not the stored one (HTTP 409 Conflict)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenInfo:
    """A token the emulated TokenReview API recognises (a projected service-account token)."""

    namespace: str
    service_account: str
    audiences: tuple[str, ...]
    pod: str = ""  # bound to this pod (name, in `namespace`): invalid once it is gone
    pod_uid: str = ""  # the pod's uid when the token was issued ("" : any)

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.service_account}"


@dataclass(frozen=True, slots=True)
class Event:
    rv: int
    rtype: ResourceType
    namespace: str
    type: str  # ADDED | MODIFIED | DELETED
    obj: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Bookmark:
    rv: int


@dataclass(eq=False, slots=True, kw_only=True)
class Watcher:
    """One open watch connection: its filter and its queue of undelivered events."""

    rtype: ResourceType
    version: str
    namespace: str | None  # None: all namespaces
    bookmarks: bool
    fields: tuple[tuple[str, bool, str], ...] = ()  # fieldSelector: (field, equal, value)
    queue: deque[Event | Bookmark] = field(default_factory=deque)
    gone: str = ""  # the message of the 410 this watcher must end with
    dropped: bool = False
    drop_clean: bool = False  # end the stream properly instead of cutting the connection
    last_sent: float = field(default_factory=time.monotonic)

    def matches(self, ev: Event) -> bool:
        return (ev.rtype is self.rtype
                and (self.namespace is None or ev.namespace == self.namespace)
                and fields_match(ev.obj, self.fields))


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, Mapping):
        return patch
    out = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def fields_match(obj: Mapping[str, Any], terms: tuple[tuple[str, bool, str], ...]) -> bool:
    """A field selector's terms (field path, `=` or `!=`, value) all hold for `obj`."""
    for path, equal, value in terms:
        found: Any = obj
        for part in path.split("."):
            found = found.get(part) if isinstance(found, Mapping) else None
        if (str(found or "") == value) is not equal:
            return False
    return True


class ClusterState:
    def __init__(self, *, served: Mapping[str, tuple[str, ...]], start_rv: int = 1000) -> None:
        self.cond = threading.Condition()
        self.rv = start_rv
        self.compacted = 0  # watches from an rv below this get 410 Gone
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: list[Event] = []
        self.watchers: set[Watcher] = set()
        self.served: dict[str, tuple[str, ...]] = dict(served)
        self.paused = False
        self.accepting = False  # False while the HTTP server is stopped
        self.blocked_lists: set[str] = set()
        self.tokens: dict[str, TokenInfo] = {}
        self.token_reviews: list[dict[str, Any]] = []  # the spec of every TokenReview received
        self._uids = 0

    # -- what is served ------------------------------------------------------------

    def served_versions(self, rtype: ResourceType) -> tuple[str, ...]:
        if not rtype.crd:
            return rtype.versions
        return tuple(v for v in self.served.get(rtype.group, ()) if v in rtype.versions)

    def served_types(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in RESOURCE_TYPES
                if rt.group == group and version in self.served_versions(rt)]

    # -- writes (the test's knobs) -------------------------------------------------

    def put(self, obj: Mapping[str, Any], *, must_exist: bool | None,
            precondition: bool = False) -> dict[str, Any]:
        """Create (must_exist=False), replace (True) or either (None); returns the stored object.
        `precondition`: a replace whose metadata.resourceVersion is set must name the stored
        version (optimistic concurrency, as the real server's update)."""
        rtype, version = self._type_of(obj)
        data = copy.deepcopy(dict(obj))
        data.pop("apiVersion", None)
        data.pop("kind", None)
        meta = data.setdefault("metadata", {})
        name = meta.get("name")
        if not isinstance(name, str) or not name:
            raise ValueError("metadata.name is required")
        namespace = meta.setdefault("namespace", "default") if rtype.namespaced else ""
        if not rtype.namespaced:
            meta.pop("namespace", None)
        key: Key = (rtype.ident, namespace, name)
        with self.cond:
            self._require_served(rtype, version)
            old = self.objects.get(key)
            if must_exist is True and old is None:
                raise NotFound(f"{rtype.kind} {namespace}/{name} does not exist")
            if must_exist is False and old is not None:
                raise AlreadyExists(f"{rtype.kind} {namespace}/{name} already exists")
            wanted = meta.get("resourceVersion")
            if precondition and old is not None and wanted and (
                    wanted != old["metadata"]["resourceVersion"]):
                raise Conflict(f"{rtype.kind} {namespace}/{name} is at resourceVersion "
                               f"{old['metadata']['resourceVersion']}, not {wanted}")
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            meta["creationTimestamp"] = CREATION_TIMESTAMP
            meta["uid"] = old["metadata"]["uid"] if old else self._next_uid()
            # metadata.generation: 1 on create, +1 when anything but metadata and status
            # changes (the real server's rule for custom resources and most built-ins)
            meta["generation"] = 1 if old is None else (
                int(old["metadata"].get("generation", 1))
                + (_spec_of(old) != _spec_of(data)))
            self.objects[key] = data
            self._emit(Event(self.rv, rtype, namespace, "MODIFIED" if old else "ADDED", data))
        return self.render(rtype, version, data)

    def patch_status(self, rtype: ResourceType, namespace: str, name: str,
                     patch: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386) of the `status` subresource: only `status`
        changes (the rest of the patch is ignored, as the real server does for a CRD
        with the status subresource); a new resourceVersion and a MODIFIED event."""
        key: Key = (rtype.ident, namespace if rtype.namespaced else "", name)
        with self.cond:
            old = self.objects.get(key)
            if old is None:
                raise NotFound(f"{rtype.kind} {namespace}/{name} does not exist")
            data = copy.deepcopy(old)
            if "status" in patch:
                merged = merge_patch(data.get("status", {}), patch["status"])
                if merged is None:
                    data.pop("status", None)
                else:
                    data["status"] = merged
            self.rv += 1
            data["metadata"]["resourceVersion"] = str(self.rv)
            self.objects[key] = data
            self._emit(Event(self.rv, rtype, key[1], "MODIFIED", data))
            return data

    def remove(self, api_version: str, kind: str, name: str, namespace: str) -> None:
        rtype = by_kind(split_api_version(api_version)[0], kind)
        key: Key = (rtype.ident, namespace if rtype.namespaced else "", name)
        with self.cond:
            old = self.objects.pop(key, None)
            if old is None:
                raise NotFound(f"{kind} {namespace}/{name} does not exist")
            self.rv += 1
            # A real server's DELETED event carries the revision of the deletion.
            gone = {**old, "metadata": {**old["metadata"], "resourceVersion": str(self.rv)}}
            self._emit(Event(self.rv, rtype, key[1], "DELETED", gone))

    def compact(self, rv: int | None, *, cut_behind: bool) -> int:
        with self.cond:
            upto = self.rv if rv is None else rv
            self.compacted = max(self.compacted, upto)
            cut = bisect.bisect_right(self.history, upto, key=lambda e: e.rv)
            del self.history[:cut]
            for w in self.watchers if cut_behind else ():
                if any(isinstance(e, Event) and e.rv <= upto for e in w.queue):
                    w.queue.clear()
                    w.gone = f"too old resource version: behind compacted revision {upto}"
            self.cond.notify_all()
            return upto

    def bookmark(self) -> int:
        with self.cond:
            for w in self.watchers:
                if w.bookmarks:
                    w.queue.append(Bookmark(self.rv))
            self.cond.notify_all()
            return self.rv

    def drop_watches(self, *, clean: bool, group: str | None = None) -> int:
        with self.cond:
            hit = [w for w in self.watchers if group is None or w.rtype.group == group]
            for w in hit:
                w.dropped, w.drop_clean = True, clean
            self.cond.notify_all()
            return len(hit)

    def set_served(self, group: str, versions: tuple[str, ...]) -> None:
        with self.cond:
            self.served[group] = versions
            for w in self.watchers:
                if w.rtype.group == group and w.version not in versions:
                    w.dropped, w.drop_clean = True, False
            self.cond.notify_all()

    def set_paused(self, paused: bool) -> None:
        with self.cond:
            self.paused = paused
            self.cond.notify_all()

    def set_accepting(self, accepting: bool) -> None:
        with self.cond:
            self.accepting = accepting
            if not accepting:
                for w in self.watchers:
                    w.dropped, w.drop_clean = True, False
            self.cond.notify_all()

    def set_list_blocked(self, plurals: set[str]) -> None:
        with self.cond:
            self.blocked_lists = set(plurals)
            self.cond.notify_all()

    # -- reads (the HTTP side) -----------------------------------------------------

    def list_objects(self, rtype: ResourceType, version: str, namespace: str | None,
                     fields: tuple[tuple[str, bool, str], ...] = (),
                     ) -> tuple[int, list[dict[str, Any]]]:
        with self.cond:
            while rtype.plural in self.blocked_lists and self.accepting:
                self.cond.wait()
            items = [
                # Real servers drop apiVersion/kind from the items of built-in lists.
                self.render(rtype, version, obj) if rtype.crd else obj
                for obj in self._matching(rtype, namespace) if fields_match(obj, fields)
            ]
            return self.rv, items

    def all_objects(self) -> list[dict[str, Any]]:
        """Every stored object, rendered at its type's first served (else first) version."""
        with self.cond:
            out = []
            for rtype in RESOURCE_TYPES:
                version = (self.served_versions(rtype) or rtype.versions)[0]
                out += [self.render(rtype, version, o) for o in self._matching(rtype, None)]
            return out

    def get(self, rtype: ResourceType, namespace: str, name: str) -> Mapping[str, Any] | None:
        with self.cond:
            return self.objects.get((rtype.ident, namespace, name))

    def open_watch(self, w: Watcher, rv_text: str | None) -> None:
        """Register `w`, queueing what it must replay; sets `w.gone` when `rv_text` is compacted."""
        with self.cond:
            if not self.accepting:
                w.dropped = True
                return
            if rv_text in (None, "", "0"):  # "start at most recent": synthetic ADDED of the state
                for obj in self._matching(w.rtype, w.namespace):
                    if not fields_match(obj, w.fields):
                        continue
                    rv = int(obj["metadata"]["resourceVersion"])
                    ns = obj["metadata"].get("namespace", "")
                    w.queue.append(Event(rv, w.rtype, ns, "ADDED", obj))
            else:
                start = int(rv_text)
                if start < self.compacted:
                    w.gone = f"too old resource version: {start} ({self.compacted})"
                else:
                    at = bisect.bisect_right(self.history, start, key=lambda e: e.rv)
                    w.queue.extend(e for e in self.history[at:] if w.matches(e))
            self.watchers.add(w)

    def close_watch(self, w: Watcher) -> None:
        with self.cond:
            self.watchers.discard(w)

    def next_batch(self, w: Watcher, deadline: float, bookmark_every: float | None,
                   client_alive: Callable[[], bool]) -> list[Event | Bookmark] | None:
        """Block until `w` has something to send; None when the stream must end (see `w`)."""
        with self.cond:
            while True:
                if w.dropped or w.gone or not client_alive():
                    return None
                if w.queue and not self.paused:
                    batch = list(w.queue)
                    w.queue.clear()
                    w.last_sent = time.monotonic()
                    return batch
                now = time.monotonic()
                if now >= deadline:
                    return None
                wait = deadline - now
                if bookmark_every is not None and w.bookmarks and not w.queue and not self.paused:
                    due = w.last_sent + bookmark_every
                    if now >= due:
                        w.last_sent = now
                        return [Bookmark(self.rv)]
                    wait = min(wait, due - now)
                self.cond.wait(min(wait, _CLIENT_POLL_S))

    # -- rendering -----------------------------------------------------------------

    @staticmethod
    def render(rtype: ResourceType, version: str, obj: Mapping[str, Any]) -> dict[str, Any]:
        return {"apiVersion": rtype.api_version(version), "kind": rtype.kind, **obj}

    @staticmethod
    def encode(w: Watcher, item: Event | Bookmark) -> bytes:
        if isinstance(item, Bookmark):
            obj: dict[str, Any] = {
                "apiVersion": w.rtype.api_version(w.version),
                "kind": w.rtype.kind,
                "metadata": {"resourceVersion": str(item.rv)},
            }
            return json.dumps({"type": "BOOKMARK", "object": obj}).encode() + b"\n"
        event = {"type": item.type, "object": ClusterState.render(w.rtype, w.version, item.obj)}
        return json.dumps(event).encode() + b"\n"

    # -- internals -----------------------------------------------------------------

    def _type_of(self, obj: Mapping[str, Any]) -> tuple[ResourceType, str]:
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            raise ValueError("apiVersion and kind are required")
        group, version = split_api_version(api_version)
        rtype = by_kind(group, kind)
        if version not in rtype.versions:
            raise ValueError(f"{kind} has no version {version}")
        return rtype, version

    def _require_served(self, rtype: ResourceType, version: str) -> None:
        if version not in self.served_versions(rtype):
            raise LookupError(f"{rtype.api_version(version)} {rtype.kind} is not served "
                              "(its CRD is not installed at that version)")

    def _matching(self, rtype: ResourceType, namespace: str | None) -> Iterator[dict[str, Any]]:
        for (ident, ns, _), obj in sorted(self.objects.items()):
            if ident == rtype.ident and (namespace is None or ns == namespace):
                yield obj

    def _emit(self, ev: Event) -> None:
        self.history.append(ev)
        for w in self.watchers:
            if w.matches(ev):
                w.queue.append(ev)
        self.cond.notify_all()

    def _next_uid(self) -> str:
        self._uids += 1
        return f"{self._uids:08x}-0000-4000-8000-{self._uids:012x}"


def _spec_of(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What counts for metadata.generation: everything but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status")}
