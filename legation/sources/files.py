"""The watched-directory source: YAML manifests on disk -> MeshStore.

Every `*.yaml` / `*.yml` under the configured directories (recursively,
skipping hidden files and directories and editor leftovers) is one store
source, `file:<absolute path>`, replaced as a whole whenever the file changes.
Bad input never takes the mesh down (DESIGN.md §3): per file, the last good
version of each object is remembered; an object that stops converting keeps
its last good version, and a file that stops parsing keeps all of its objects,
until fixed. Watching uses inotify through `watchfiles`; a change reaches the
store within tens of milliseconds (`debounce_ms`) plus the settle window.

Half-written files (issue 13). A file is read once its size and modification
time have not changed for `settle_s` (100 ms), and each file is read and
parsed in its own task, off the event loop, so a huge file never delays a
change elsewhere. A writer may still pause longer than that mid-file: a file
rewritten *in place* (same inode) within the last `hold_s` (5 s) that lost
objects is taken as still being written: what it adds or changes applies at
once, but the objects it lost stay (an INFO says so) until it has been quiet
for `hold_s`, when it is read again and they go if they are still missing.
A file replaced by a rename is complete by construction and applies at once,
deletions included: writing a temporary file in the same directory and
`mv`-ing it over the manifest (what Kubernetes ConfigMap volumes, `kubectl
cp` to a temp name plus `mv`, and most editors do) is the recommended way.
A file with more than `warn_objects` objects gets a warning.

`load_dirs` is the one-shot variant for `legation analyze` / `bootstrap`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
import watchfiles

from legation.mesh.store import MeshStore
from legation.model import (
    Diagnostic,
    MeshConfig,
    MeshObject,
    ObjectKey,
    Severity,
    SourceRef,
    duplicate_definition,
    object_key,
)
from legation.sources.convert import ConvertResult, convert_text
from legation.sources.convert.meshconfig import convert_mesh_config_text

_log = structlog.get_logger("legation.sources.files")

SUFFIXES = (".yaml", ".yml")
_STEP_MS = 10  # how long the watcher waits for the next event before yielding a batch
_POLL_MS = 200  # only when inotify is unavailable: still well within a second


class SourceError(Exception):
    """A configured directory cannot be used; the message is one line for the user."""


# -- scanning -----------------------------------------------------------------


def check_dir(path: Path) -> Path:
    """The absolute, resolved directory; SourceError when missing or unreadable."""
    if not path.exists():
        raise SourceError(f"config directory {path} does not exist")
    if not path.is_dir():
        raise SourceError(f"config directory {path} is not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise SourceError(f"config directory {path} is not readable (permission denied)")
    return path.resolve()


def is_manifest_name(name: str) -> bool:
    """A YAML file that is not hidden and not an editor's backup or swap file."""
    return (
        not name.startswith((".", "#", "~"))
        and name.lower().endswith(SUFFIXES)
    )


def scan(root: Path) -> list[Path]:
    """Every manifest file under `root`, sorted; hidden directories are skipped."""
    found: list[Path] = []
    visited: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=_walk_error):
        real = os.path.realpath(dirpath)
        if real in visited:  # a symlink loop
            dirnames[:] = []
            continue
        visited.add(real)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath, name)
            if is_manifest_name(name) and path.is_file():
                found.append(path)
    return sorted(found)


def _walk_error(exc: OSError) -> None:
    _log.warning("files.unreadable-dir", path=exc.filename, error=exc.strerror)


# -- reading ------------------------------------------------------------------


def read_and_convert(
    path: Path, display: str, known_digest: bytes | None = None
) -> tuple[bytes | None, ConvertResult | None]:
    """(content digest, result); result is None when the digest equals `known_digest`.

    FileNotFoundError propagates (the file is gone); other read errors and
    undecodable bytes become a broken result with one diagnostic.
    """
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, _broken(display, 0, "file.unreadable",
                             f"cannot read the file ({reason}); nothing in it was read.")
    digest = hashlib.sha256(raw).digest()
    if digest == known_digest:
        return digest, None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        return digest, _broken(display, line, "file.not-utf8",
                               "the file is not UTF-8 text; nothing in it was read.")
    return digest, convert_text(text, file=display)


def _broken(display: str, line: int, code: str, message: str) -> ConvertResult:
    ref = SourceRef(kind="File", namespace="", name=Path(display).name, file=display, line=line)
    diag = Diagnostic(ref=ref, field="", code=code, message=message, line=line)
    return ConvertResult(objects=(), failed_keys=(), diagnostics=(diag,), broken=True)


def keep_last_good(
    previous: Mapping[ObjectKey, MeshObject], result: ConvertResult
) -> tuple[dict[ObjectKey, MeshObject], tuple[Diagnostic, ...]]:
    """The objects a file contributes now, given its last good objects, and the diagnostics.

    Broken file: all previous objects stay. Invalid object: its previous version
    stays. Either way the error says so.
    """
    if result.broken:
        if not previous:
            return {}, result.diagnostics
        note = (f" The {len(previous)} object(s) last read from this file stay in force "
                "until it is fixed.")
        return dict(previous), _annotate(result.diagnostics, note, None)
    objects = {object_key(o): o for o in result.objects}
    kept = {k for k in result.failed_keys if k not in objects and k in previous}
    for key in kept:
        objects[key] = previous[key]
    note = " The last good version of this object stays in force until this is fixed."
    return objects, _annotate(result.diagnostics, note, kept)


def _annotate(
    diagnostics: Iterable[Diagnostic], note: str, keys: set[ObjectKey] | None
) -> tuple[Diagnostic, ...]:
    def touched(d: Diagnostic) -> bool:
        if d.severity is not Severity.ERROR:
            return False
        return keys is None or (d.ref.kind, d.ref.namespace, d.ref.name) in keys

    return tuple(
        dataclasses.replace(d, message=d.message + note) if touched(d) else d for d in diagnostics
    )


# -- one-shot -----------------------------------------------------------------


def load_dirs(dirs: Sequence[Path], *, files_too: bool = False) -> ConvertResult:
    """Read every manifest under `dirs` once (and, with `files_too`, manifest files named
    directly). Raises SourceError for a bad directory.

    An object defined in two files is taken from the first file by absolute
    path (as the MeshStore orders file sources) with an `object.duplicate` warning.
    """
    files: dict[Path, str] = {}
    for d in dirs:
        if files_too and d.is_file():
            files.setdefault(d.resolve(), str(d))
            continue
        root = check_dir(d)
        for path in scan(root):
            files.setdefault(path, str(d / path.relative_to(root)))
    objects: dict[ObjectKey, MeshObject] = {}
    failed: list[ObjectKey] = []
    diagnostics: list[Diagnostic] = []
    broken = False
    for path in sorted(files, key=str):
        try:
            _, result = read_and_convert(path, files[path])
        except FileNotFoundError:
            continue
        assert result is not None  # no known digest was given
        broken = broken or result.broken
        diagnostics.extend(result.diagnostics)
        failed.extend(k for k in result.failed_keys if k not in objects)
        for obj in result.objects:
            key = object_key(obj)
            if key in objects:
                diagnostics.append(
                    duplicate_definition(obj, objects[key], elsewhere="another file"))
            else:
                objects[key] = obj
    return ConvertResult(
        objects=tuple(objects.values()),
        failed_keys=tuple(dict.fromkeys(failed)),
        diagnostics=tuple(diagnostics),
        broken=broken,
    )



# -- watching -----------------------------------------------------------------


@dataclass(slots=True)
class _FileState:
    digest: bytes | None  # of the content last converted; None after a read error
    good: dict[ObjectKey, MeshObject]  # what the file contributes to the store now
    inode: int = 0  # of the file last read: another one means it was replaced whole
    held: frozenset[ObjectKey] = frozenset()  # lost while being written: kept for now


SETTLE_S = 0.1  # a file is read once it has not changed for this long
SETTLE_MAX_S = 5.0  # ... or after this long, changing or not
HOLD_S = 5.0  # objects lost by a file rewritten in place this recently are kept this long
WARN_OBJECTS = 10_000  # a file holding more objects than this gets a warning


class FileSource:
    """Keeps the store in step with the manifests under `dirs` (see module docstring)."""

    def __init__(self, dirs: Sequence[Path], store: MeshStore, *, debounce_ms: int = 50,
                 settle_s: float = SETTLE_S, hold_s: float = HOLD_S,
                 warn_objects: int = WARN_OBJECTS) -> None:
        self._roots: dict[Path, Path] = {}  # resolved root -> directory as the user gave it
        for d in dirs:
            self._roots.setdefault(check_dir(d), d)
        self._store = store
        self._debounce_ms = max(1, debounce_ms)
        self._settle_s, self._hold_s, self._warn_objects = settle_s, hold_s, warn_objects
        self._files: dict[Path, _FileState] = {}
        self._tasks: dict[Path, asyncio.Task[None]] = {}  # one reader per file at a time
        self._again: set[Path] = set()  # changed while its reader ran: read once more
        self._pending: set[str] = set()
        self._wake = asyncio.Event()
        self._scan_source = "files:initial-scan:" + ",".join(str(r) for r in self._roots)
        store.expect_source(self._scan_source)  # not ready until the initial scan is in

    async def run(self) -> None:
        """Initial scan, then watch forever; cancel to stop."""
        for root, given in self._roots.items():
            if not root.is_dir():
                raise SourceError(f"config directory {given} does not exist")
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._watch())
            # The watcher task's first step sets up inotify synchronously, before its
            # first await: yielding once means no change after this point is missed.
            await asyncio.sleep(0)
            await self._initial_scan()
            try:
                while True:
                    await self._wake.wait()
                    self._wake.clear()
                    batch, self._pending = self._pending, set()
                    await self._apply(batch)
            finally:
                for task in self._tasks.values():
                    task.cancel()

    async def _initial_scan(self) -> None:
        files = [f for root in self._roots for f in await asyncio.to_thread(scan, root)]
        files = list(dict.fromkeys(files))  # nested roots list a file twice
        for path in files:
            self._store.expect_source(_source(path))
        for path in files:
            await self._load(path)
        for path in files:
            if path not in self._files:  # vanished during the scan: settle its readiness
                self._store.replace_source(_source(path), ())
        self._store.replace_source(self._scan_source, ())
        _log.info("files.scanned", dirs=[str(d) for d in self._roots.values()], files=len(files))

    async def _watch(self) -> None:
        try:
            await self._consume(polling=False)
        except (OSError, RuntimeError) as exc:  # e.g. the inotify watch limit is reached
            _log.warning("files.watch-fallback", error=str(exc), mode="polling",
                         poll_ms=_POLL_MS)
        # Rescan everything: changes made while switching must not be lost.
        self._pending.update(str(root) for root in self._roots)
        self._wake.set()
        try:
            await self._consume(polling=True)
        except (OSError, RuntimeError) as exc:
            dirs = ", ".join(str(d) for d in self._roots.values())
            raise SourceError(f"cannot watch config directories {dirs}: {exc}") from exc

    async def _consume(self, *, polling: bool) -> None:
        async for changes in watchfiles.awatch(
            *self._roots,
            watch_filter=None,
            debounce=self._debounce_ms,
            step=min(_STEP_MS, self._debounce_ms),
            ignore_permission_denied=True,
            force_polling=True if polling else None,  # None: watchfiles decides (WSL, env)
            poll_delay_ms=_POLL_MS,
        ):
            self._pending.update(path for _, path in changes)
            self._wake.set()

    async def _apply(self, changes: set[str]) -> None:
        rescan: set[Path] = set()
        targets: set[Path] = set()
        for raw in changes:
            path = Path(raw)
            root = self._root_of(path)
            if root is None:
                continue
            parts = path.relative_to(root).parts
            if any(p.startswith("..") for p in parts):
                rescan.add(root)  # Kubernetes ConfigMap volumes swap a hidden `..data` symlink
            elif not any(p.startswith(".") for p in parts):
                targets.add(path)
        for root in sorted(rescan):
            await self._refresh_dir(root)
        for path in sorted(targets):
            await self._refresh(path)

    async def _refresh(self, path: Path) -> None:
        if path.is_dir():  # created (or moved in) after we started: scan what it holds
            await self._refresh_dir(path)
        elif path.is_file():
            if is_manifest_name(path.name):
                self._load_soon(path)
        elif not path.exists():
            for known in self._known_under(path):
                self._load_soon(known)  # its reader finds it gone
            if path in self._roots:  # inotify cannot follow a directory re-created later
                _log.warning("files.dir-removed", dir=str(self._roots[path]))

    async def _refresh_dir(self, directory: Path) -> None:
        found = await asyncio.to_thread(scan, directory)
        for path in {*found, *self._known_under(directory)}:
            self._load_soon(path)

    def _load_soon(self, path: Path) -> None:
        """Read `path` in its own task (once more if one is running): a slow file never
        holds up another."""
        if path in self._tasks:
            self._again.add(path)
            return
        self._tasks[path] = asyncio.create_task(self._reader(path))

    async def _reader(self, path: Path) -> None:
        try:
            while True:
                self._again.discard(path)
                await self._settled(path)
                await self._load(path, watched=True)
                if path not in self._again:
                    return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not stop the other files
            _log.error("files.reader-failed", file=self._display(path), error=repr(exc),
                       exc_info=exc)
        finally:
            self._tasks.pop(path, None)

    async def _settled(self, path: Path) -> None:
        """Return once `path` has not changed for the settle window (or is gone)."""
        waited = 0.0
        before = _stat(path)
        while before is not None and waited < SETTLE_MAX_S:
            await asyncio.sleep(self._settle_s)
            waited += self._settle_s
            now = _stat(path)
            if now == before:
                return
            before = now

    async def _load(self, path: Path, *, watched: bool = False) -> None:
        state = self._files.get(path)
        display = self._display(path)
        if watched and not path.is_file():
            self._remove(path)
            return
        info = _stat(path)
        try:
            digest, result = await asyncio.to_thread(
                read_and_convert, path, display,
                state.digest if state and not state.held else None
            )
        except FileNotFoundError:  # deleted between the event and the read
            self._remove(path)
            return
        if result is None:
            return  # unchanged content
        previous = state.good if state else {}
        good, diagnostics = keep_last_good(previous, result)
        lost = frozenset(previous) - frozenset(good)
        held: frozenset[ObjectKey] = frozenset()
        if (watched and lost and state is not None and info is not None
                and info.inode == state.inode and info.age_s < self._hold_s):
            held = lost  # rewritten in place a moment ago: maybe still being written
            good.update((k, previous[k]) for k in lost)
            diagnostics = (*diagnostics, self._held(display, lost))
            asyncio.get_running_loop().call_later(self._hold_s, self._load_soon, path)
        if len(result.objects) > self._warn_objects:
            diagnostics = (*diagnostics, self._large(display, len(result.objects)))
        self._files[path] = _FileState(digest=digest, good=good,
                                       inode=info.inode if info else 0, held=held)
        self._store.replace_source(_source(path), good.values(), diagnostics)
        errors = sum(d.severity is Severity.ERROR for d in diagnostics)
        _log.info("files.loaded", file=display, objects=len(good), errors=errors,
                  broken=result.broken, held=len(held))

    def _held(self, display: str, lost: frozenset[ObjectKey]) -> Diagnostic:
        names = ", ".join(f"{k} {ns + '/' if ns else ''}{n}" for k, ns, n in sorted(lost)[:5])
        more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        ref = SourceRef(kind="File", namespace="", name=Path(display).name, file=display)
        return Diagnostic(
            ref=ref, field="", code="file.deletions-held", severity=Severity.INFO,
            message=(f"{names}{more} left this file while it was being rewritten in place; "
                     f"they stay until the file has not changed for {self._hold_s:g} s, then "
                     "go if still missing. Replace files with a rename (write a temporary "
                     "file, then mv it over this one) to apply deletions at once."))

    def _large(self, display: str, count: int) -> Diagnostic:
        ref = SourceRef(kind="File", namespace="", name=Path(display).name, file=display)
        return Diagnostic(
            ref=ref, field="", code="file.large", severity=Severity.WARNING,
            message=(f"the file holds {count} objects, over {self._warn_objects}: every change "
                     "re-reads all of it. Split it into several files."))

    def _remove(self, path: Path) -> None:
        if self._files.pop(path, None) is None:
            return
        self._store.replace_source(_source(path), ())
        _log.info("files.removed", file=self._display(path))

    def _known_under(self, path: Path) -> list[Path]:
        return [f for f in self._files if f == path or path in f.parents]

    def _root_of(self, path: Path) -> Path | None:
        for root in self._roots:
            if path == root or root in path.parents:
                return root
        return None

    def _display(self, path: Path) -> str:
        root = self._root_of(path)
        if root is None:
            return str(path)
        return str(self._roots[root] / path.relative_to(root))


def _source(path: Path) -> str:
    return f"file:{path}"


@dataclass(frozen=True, slots=True)
class _Stat:
    inode: int
    size: int
    mtime_ns: int
    age_s: float = dataclasses.field(compare=False)  # since the last modification


def _stat(path: Path) -> _Stat | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return _Stat(inode=st.st_ino, size=st.st_size, mtime_ns=st.st_mtime_ns,
                 age_s=max(0.0, time.time() - st.st_mtime_ns / 1e9))


# -- the --mesh-config file ---------------------------------------------------------


class MeshConfigFile:
    """Keeps the store's MeshConfig in step with one watched file (`--mesh-config`).

    The file's directory is watched, not the file: editors and Kubernetes ConfigMap
    volumes replace files (a rename, a swapped ``..data`` symlink) rather than write
    them in place. A missing file is Istio's defaults; an invalid one keeps the last
    good MeshConfig in force, with the error on the admin API and in the log.
    """

    def __init__(self, path: Path, store: MeshStore, *, debounce_ms: int = 50) -> None:
        self._path = path
        self._store = store
        self._debounce_ms = max(1, debounce_ms)
        self._source = f"mesh-config:{path}"
        self._digest: bytes | None = None
        self._good: MeshConfig | None = None
        store.expect_source(self._source)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            changed = asyncio.Event()
            tg.create_task(self._watch(changed))
            await asyncio.sleep(0)  # the watcher is set up before the first read
            while True:
                await asyncio.to_thread(self.load)
                await changed.wait()
                changed.clear()

    async def _watch(self, changed: asyncio.Event) -> None:
        async for changes in watchfiles.awatch(
            self._path.parent, watch_filter=None, debounce=self._debounce_ms,
            step=min(_STEP_MS, self._debounce_ms), ignore_permission_denied=True,
            poll_delay_ms=_POLL_MS,
        ):
            names = {Path(p).name for _, p in changes}
            if self._path.name in names or any(n.startswith("..") for n in names):
                changed.set()

    def load(self) -> None:
        """Read the file now and publish what it means (synchronous: also at start-up)."""
        display = str(self._path)
        try:
            raw = self._path.read_bytes()
        except FileNotFoundError:
            raw = b""
        except OSError as exc:
            self._publish(None, [_broken(display, 0, "file.unreadable",
                                         f"cannot read the MeshConfig ({exc.strerror or exc})."
                                         ).diagnostics[0]])
            return
        digest = hashlib.sha256(raw).digest()
        if digest == self._digest:
            return
        self._digest = digest
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            self._publish(None, [_broken(display, 0, "file.not-utf8",
                                         "the MeshConfig is not UTF-8 text.").diagnostics[0]])
            return
        config, diagnostics, _ = convert_mesh_config_text(text, file=display)
        self._publish(config, diagnostics)

    def _publish(self, config: MeshConfig | None, diagnostics: list[Diagnostic]) -> None:
        if config is not None:
            self._good = config
        elif self._good is not None:
            note = " The last good MeshConfig stays in force until this is fixed."
            diagnostics = [dataclasses.replace(d, message=d.message + note)
                           if d.severity is Severity.ERROR else d for d in diagnostics]
        kept = (self._good,) if self._good is not None else ()
        self._store.replace_source(self._source, kept, tuple(diagnostics))
        _log.info("files.mesh-config", file=str(self._path),
                  mode=self._good.outbound_policy.value if self._good else "default",
                  errors=sum(d.severity is Severity.ERROR for d in diagnostics))
