"""Snapshot: the complete set of resources one proxy must have, per type.

Most of a proxy's resources are shared by every proxy built from the same
mesh version (outbound clusters, ClusterLoadAssignments), so the pipeline
indexes them once in a `SnapshotBase` and builds each proxy's snapshot on
it from the proxy's own few resources. A type the proxy adds nothing to
reuses the base's mapping and version as they are; otherwise the type's
version, still `version_of` the whole set, is hashed from the base's
pre-encoded entries with the proxy's spliced in, so no shared entry is
re-encoded or re-sorted per proxy. Same content, same version, however the
resources were split between base and proxy.

Mappings held by a snapshot may be shared with other snapshots: read only.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from legation.cache.resources import PUSH_ORDER, Resource, version_entry, version_of

# Merged mappings a base remembers per type (see `_TypeIndex.with_extra`); past this,
# further distinct combinations are computed each time instead of remembered.
MERGED_KEPT = 1024


@dataclass(frozen=True, slots=True)
class _TypeIndex:
    """The resources of one type in a base, with `version_of`'s input pre-encoded."""

    resources: dict[str, Resource]  # never mutated once built: snapshots share it
    names: tuple[str, ...]  # sorted, as `version_of` hashes them
    encoded: bytes  # the concatenated `version_entry` of every name, in that order
    offsets: tuple[int, ...]  # where each name's entry starts in `encoded`, then its length
    version: str  # version_of(resources)
    # extra resources (by object identity, in order) -> (merged mapping, its version)
    merged: dict[tuple[int, ...], tuple[dict[str, Resource], str]]
    blobs: dict[str, bytes]  # "sotw" / "delta" -> every entry, in name order (`entries`)
    held: dict[str, dict[str, str]]  # "" -> name -> version of every resource (`versions`)
    sizes: dict[str, int]  # "" -> the bytes of every resource's body (`size`), once

    @classmethod
    def of(cls, resources: dict[str, Resource]) -> _TypeIndex:
        names = tuple(sorted(resources))
        entries = [version_entry(n, resources[n].version) for n in names]
        offsets = [0]
        for e in entries:
            offsets.append(offsets[-1] + len(e))
        encoded = b"".join(entries)
        version = hashlib.sha256(encoded).hexdigest()[:16]
        return cls(resources, names, encoded, tuple(offsets), version, {}, {}, {}, {})

    def blob(self, kind: str) -> bytes:
        """Every resource's encoded response entry (wire.py), concatenated once and then
        written as it is to every stream that is sent the whole set."""
        found = self.blobs.get(kind)
        if found is None:
            rs = self.resources
            found = self.blobs[kind] = b"".join(
                rs[n].sotw_entry if kind == "sotw" else rs[n].delta_entry for n in self.names)
        return found

    def size(self) -> int:
        """The bytes of every resource's body, summed once (shared by its snapshots)."""
        found = self.sizes.get("")
        if found is None:
            found = self.sizes[""] = sum(len(r.body) for r in self.resources.values())
        return found

    def versions(self) -> dict[str, str]:
        """name -> version of every resource, built once: what a client that was sent the
        whole set holds (delta streams share it until theirs diverges). Read only."""
        found = self.held.get("")
        if found is None:
            found = self.held[""] = {n: r.version for n, r in self.resources.items()}
        return found

    def with_extra(self, extra: dict[str, Resource]) -> tuple[dict[str, Resource], str]:
        """The base's resources with `extra` added (replacing same-named ones), and
        `version_of` of the result.

        Proxies often add the very same objects (the interned inbound cluster, their
        namespace's route configuration), so the result is remembered by the
        identity of `extra`'s resources: the remembered mapping holds them, so
        their ids cannot be reused while it is kept. Nothing is remembered for an
        empty base, where merging costs no more than looking up.
        """
        if not self.resources:
            return self._merge(extra)
        key = tuple(map(id, extra.values()))
        found = self.merged.get(key)
        if found is None:
            found = self._merge(extra)
            if len(self.merged) < MERGED_KEPT:
                self.merged[key] = found
        return found

    def _merge(self, extra: dict[str, Resource]) -> tuple[dict[str, Resource], str]:
        """Merge, and hash by splicing `extra`'s entries into the base's encoded ones."""
        merged = dict(self.resources)
        merged.update(extra)
        h = hashlib.sha256()
        view = memoryview(self.encoded)
        names, offsets, done = self.names, self.offsets, 0
        for name in sorted(extra):
            i = bisect_left(names, name)
            start = offsets[i]
            if start > done:
                h.update(view[done:start])
            h.update(version_entry(name, extra[name].version))
            done = offsets[i + 1] if i < len(names) and names[i] == name else start
        h.update(view[done:])
        return merged, h.hexdigest()[:16]


# (serial, type_url -> names of that type that changed from the base before it)
_Change = tuple[int, Mapping[str, frozenset[str]]]


@dataclass(frozen=True, slots=True)
class SnapshotBase:
    """Resources common to many snapshots, indexed once (see the module docstring).

    A base built from another (`of(..., parent=)`) belongs to its lineage and
    remembers, for its last `HISTORY_KEPT` ancestors, which names changed
    between each and the next, so a stream can find what changed between the
    base it last diffed and this one without comparing every resource
    (`changed_since`). Immutable: streams read it on the event loop while
    the pipeline builds the next one in its worker thread.
    """

    types: Mapping[str, _TypeIndex]  # PUSH_ORDER first, then others as first seen
    lineage: object = None  # a token shared by a base and every base built from it
    serial: int = 0
    history: tuple[_Change, ...] = ()  # oldest first; the last is this base's own change

    @classmethod
    def of(cls, resources: Iterable[Resource], *, parent: SnapshotBase | None = None
           ) -> SnapshotBase:
        """The last resource of a (type, name) wins, as in `Snapshot.build`."""
        by_type = _by_type(resources, {t: {} for t in PUSH_ORDER})
        if parent is None:
            return cls({t: _TypeIndex.of(rs) for t, rs in by_type.items()}, object(), 0, ())
        types: dict[str, _TypeIndex] = {}
        changes: dict[str, frozenset[str]] = {}
        for t, rs in by_type.items():
            before = parent.types.get(t)
            names = _changed_names(before.resources if before else {}, rs)
            if names:
                types[t], changes[t] = _TypeIndex.of(rs), names
            else:
                # Unchanged: the parent's index, and what it remembers, serve on.
                assert before is not None or not rs
                types[t] = before if before is not None else _TypeIndex.of(rs)
        for t, before in parent.types.items():
            if t not in types and before.resources:
                changes[t] = frozenset(before.resources)
        serial = parent.serial + 1
        history = (*parent.history[-(HISTORY_KEPT - 1):], (serial, changes))
        return cls(types, parent.lineage, serial, history)

    def changed_since(self, older: SnapshotBase, type_url: str) -> set[str] | None:
        """Names of `type_url` that may differ between `older` and this base; None when
        unknown (another lineage, or too long ago): then compare everything."""
        if older is self:
            return set()
        if older.lineage is not self.lineage or older.serial > self.serial:
            return None
        history = self.history
        if not history or history[0][0] > older.serial + 1:
            return None
        names: set[str] = set()
        for serial, changes in history:
            if serial > older.serial:
                names.update(changes.get(type_url, ()))
        return names


# Changes a base remembers; a stream further behind compares everything once.
HISTORY_KEPT = 64


def _changed_names(a: Mapping[str, Resource], b: Mapping[str, Resource]) -> frozenset[str]:
    out = {n for n, r in b.items() if (o := a.get(n)) is not r
           and (o is None or o.version != r.version)}
    out.update(n for n in a if n not in b)
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Snapshot:
    resources: Mapping[str, Mapping[str, Resource]]  # type_url -> name -> Resource
    versions: Mapping[str, str]  # type_url -> version of the whole set
    changed_at: float = 0.0  # time.monotonic() when the change behind it was seen
    base: SnapshotBase | None = field(default=None, compare=False, repr=False)
    # type_url -> what this snapshot adds to (or replaces in) its base
    extra: Mapping[str, Mapping[str, Resource]] = field(
        default_factory=dict, compare=False, repr=False)
    given: tuple[Resource, ...] = field(default=(), compare=False, repr=False)  # `build` input
    # Types whose base resources a client gets only by naming them (on-demand: a
    # wildcard subscription of such a type covers the snapshot's own resources only).
    by_name: frozenset[str] = frozenset()

    @classmethod
    def build(
        cls,
        resources: Iterable[Resource],
        *,
        changed_at: float = 0.0,
        base: SnapshotBase | None = None,
        prior: Snapshot | None = None,
        by_name: frozenset[str] = frozenset(),
    ) -> Snapshot:
        """The snapshot of `base`'s resources followed by `resources`: the last
        resource of a (type, name) wins. Equal to building from the concatenation.

        `prior`: this proxy's previous snapshot; a type whose base index and own
        resources are the very same objects keeps its mapping and version."""
        types = base.types if base is not None else _EMPTY.types
        given = tuple(resources)
        own = _by_type(given, {})
        extra = dict(own)
        by_type: dict[str, Mapping[str, Resource]] = {}
        versions: dict[str, str] = {}
        before: Mapping[str, _TypeIndex] = {}
        if prior is not None and prior.base is not None and _same_objects(given, prior.given):
            before = prior.base.types
        for t, index in types.items():
            mine = extra.pop(t, None)
            if before.get(t) is index:
                assert prior is not None
                by_type[t], versions[t] = prior.resources[t], prior.versions[t]
            elif mine:
                by_type[t], versions[t] = index.with_extra(mine)
            else:
                by_type[t], versions[t] = index.resources, index.version
        for t, mine in extra.items():  # types the base has none of
            by_type[t], versions[t] = mine, version_of(mine)
        return cls(by_type, versions, changed_at, base, own, given, by_name)

    def of_type(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, {})

    def changed_since(self, older: Snapshot, type_url: str) -> set[str] | None:
        """Names of `type_url` whose resource may differ between `older` and this
        snapshot (a superset), found from their bases' history and their own few
        resources; None when that is unknown: then compare everything."""
        mine, theirs = self.of_type(type_url), older.of_type(type_url)
        if mine is theirs:
            return set()
        if self.base is None or older.base is None:
            return None
        names = self.base.changed_since(older.base, type_url)
        if names is None:
            return None
        for extra in (self.extra.get(type_url, {}), older.extra.get(type_url, {})):
            names.update(n for n in extra if mine.get(n) is not theirs.get(n))
        return names

    def entries(self, type_url: str, resources: Mapping[str, Resource], kind: str) -> list[bytes]:
        """The encoded response entries of `resources` (wire.py; kind "sotw" or "delta").
        When they are this snapshot's whole set of the type, the base's part is one
        shared blob (`_TypeIndex.blob`) and only this proxy's own are added."""
        base = self.base
        if resources is self.resources.get(type_url) and base is not None:
            index = base.types.get(type_url)
            extra = self.extra.get(type_url, {})
            if index is not None and extra.keys().isdisjoint(index.resources):
                own = [extra[n] for n in sorted(extra)]
                return [index.blob(kind), *(r.sotw_entry if kind == "sotw" else r.delta_entry
                                           for r in own)]
        if kind == "sotw":
            return [resources[n].sotw_entry for n in sorted(resources)]
        return [resources[n].delta_entry for n in sorted(resources)]

    def versions_of(self, type_url: str) -> Mapping[str, str] | None:
        """name -> version of the type's whole set when it is exactly its base's (shared by
        every snapshot on that base, read only); None otherwise."""
        base = self.base
        if base is None:
            return None
        index = base.types.get(type_url)
        if index is None or self.resources.get(type_url) is not index.resources:
            return None
        return index.versions()

    def without(self, type_url: str, names: Iterable[str]) -> Snapshot:
        """This snapshot less some resources of one type (all from `extra`); the rest,
        base and history included, is shared."""
        gone = set(names)
        base = self.base
        if base is not None and not gone.isdisjoint(base.types.get(type_url, _EMPTY_INDEX).names):
            kept = [r for t, rs in self.resources.items() for n, r in rs.items()
                    if t != type_url or n not in gone]
            return Snapshot.build(kept, changed_at=self.changed_at, by_name=self.by_name)
        kept = [r for t, rs in self.extra.items() for n, r in rs.items()
                if t != type_url or n not in gone]
        return Snapshot.build(kept, changed_at=self.changed_at, base=base, by_name=self.by_name)

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, _EMPTY_VERSION)

    def size(self) -> int:
        """The bytes of every resource body this snapshot holds: its base's sizes (summed
        once per base) adjusted by its own resources, so a fleet on one base costs one
        sum, not one per proxy."""
        total = 0
        for type_url, resources in self.resources.items():
            index = self.base.types.get(type_url) if self.base is not None else None
            if index is None:
                total += sum(len(r.body) for r in resources.values())
                continue
            total += index.size()
            for name, r in self.extra.get(type_url, {}).items():
                replaced = index.resources.get(name)
                total += len(r.body) - (len(replaced.body) if replaced is not None else 0)
        return total


def _same_objects(a: tuple[Resource, ...], b: tuple[Resource, ...]) -> bool:
    return len(a) == len(b) and all(x is y for x, y in zip(a, b, strict=True))


def _by_type(
    resources: Iterable[Resource], into: dict[str, dict[str, Resource]]
) -> dict[str, dict[str, Resource]]:
    for r in resources:
        into.setdefault(r.type_url, {})[r.name] = r
    return into


@dataclass(frozen=True, slots=True)
class ProxyError:
    """Why a proxy gets no config: ends its streams with this gRPC status."""

    code: str  # a grpc.StatusCode name, e.g. "NOT_FOUND"
    message: str


_EMPTY = SnapshotBase.of(())
_EMPTY_INDEX = _TypeIndex.of({})
_EMPTY_VERSION = version_of({})
