"""The watched-directory source against a real MeshStore and real inotify."""

from __future__ import annotations

import asyncio
import os
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import watchfiles

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, MeshSnapshot, Service, ServicePort, Severity, SourceRef
from legation.sources.convert import ConvertResult
from legation.sources.files import FileSource, SourceError, keep_last_good, load_dirs

HANG_GUARD_S = 5.0  # a hang guard for awaiting the store, not a performance assertion


def svc(name: str, port: int | str = 80, *, ns: str = "default", ip: str = "") -> str:
    return textwrap.dedent(f"""\
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}, namespace: {ns}}}
        spec:
          clusterIP: "{ip}"
          ports:
          - name: http
            port: {port}
        """)


def write(path: Path, *docs: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("---\n".join(docs))


def services(snap: MeshSnapshot) -> dict[str, Service]:
    return {s.name: s for s in snap.services}


async def settle(store: MeshStore, done: Callable[[MeshSnapshot], bool]) -> MeshSnapshot:
    async with asyncio.timeout(HANG_GUARD_S):
        version = store.version
        while not done(store.snapshot()):
            version = await store.wait_changed(version)
    return store.snapshot()


HOLD_S = 0.5  # deletions by in-place rewrites wait this long here (5 s by default)


@asynccontextmanager
async def running(dirs: list[Path], store: MeshStore, **kw: Any) -> AsyncIterator[FileSource]:
    source = FileSource(dirs, store, hold_s=kw.pop("hold_s", HOLD_S), **kw)
    assert not store.ready  # readiness waits for the initial scan
    task = asyncio.create_task(source.run())
    try:
        await settle(store, lambda _: store.ready or task.done())
        if task.done():
            task.result()
        yield source
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_initial_scan(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", svc("a"), svc("b"))
    write(tmp_path / "sub" / "deeper" / "c.yml", svc("c"))
    write(tmp_path / ".hidden.yaml", svc("hidden1"))
    write(tmp_path / ".git" / "x.yaml", svc("hidden2"))
    write(tmp_path / "notes.txt", svc("text"))
    write(tmp_path / "a.yaml~", svc("backup"))
    write(tmp_path / "#a.yaml#", svc("autosave"))
    store = MeshStore()
    async with running([tmp_path], store):
        assert sorted(services(store.snapshot())) == ["a", "b", "c"]
        assert set(store.objects(f"file:{tmp_path / 'a.yaml'}")) == {
            ("Service", "default", "a"), ("Service", "default", "b")
        }
        c = services(store.snapshot())["c"]
        assert c.ref.file == str(tmp_path / "sub" / "deeper" / "c.yml") and c.ref.line == 1


async def test_edit_delete_and_new_directory(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", svc("a", 80))
    store = MeshStore()
    async with running([tmp_path], store):
        write(tmp_path / "a.yaml", svc("a", 8080))
        snap = await settle(store, lambda s: services(s)["a"].ports[0].port == 8080)
        assert len(snap.services) == 1

        write(tmp_path / "later" / "deep" / "b.yaml", svc("b"))
        await settle(store, lambda s: "b" in services(s))

        (tmp_path / "a.yaml").unlink()
        snap = await settle(store, lambda s: "a" not in services(s))
        assert list(services(snap)) == ["b"]
        assert store.objects(f"file:{tmp_path / 'a.yaml'}") == {}


async def test_editor_style_atomic_save(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", svc("a", 80))
    store = MeshStore()
    async with running([tmp_path], store):
        tmp = tmp_path / ".a.yaml.swp"
        write(tmp, svc("a", 81))
        os.replace(tmp, tmp_path / "a.yaml")
        await settle(store, lambda s: services(s)["a"].ports[0].port == 81)


async def test_broken_edit_keeps_all_last_good_objects(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    write(path, svc("a"), svc("b"))
    store = MeshStore()
    async with running([tmp_path], store):
        path.write_text(svc("a") + "---\napiVersion: v1\nkind: [Service\n")  # half-written
        snap = await settle(store, lambda s: any(d.code == "yaml.syntax" for d in s.diagnostics))
        assert sorted(services(snap)) == ["a", "b"]
        (diag,) = snap.diagnostics
        assert diag.ref.file == str(path) and diag.line == 12  # where libyaml gave up
        assert "flow sequence started on line 11" in diag.message
        assert "2 object(s) last read from this file stay in force" in diag.message

        write(path, svc("a"))  # the writer finishes: the new content applies, and b, gone
        # from a file rewritten in place a moment ago, goes once it has been quiet
        snap = await settle(store, lambda s: "b" not in services(s))
        assert list(services(snap)) == ["a"] and snap.diagnostics == ()


async def test_invalid_object_keeps_last_good_while_sibling_applies(tmp_path: Path) -> None:
    path = tmp_path / "a.yaml"
    write(path, svc("a", 80), svc("b", ip="10.0.0.1"))
    store = MeshStore()
    async with running([tmp_path], store):
        write(path, svc("a", "abc"), svc("b", ip="10.0.0.2"))
        snap = await settle(store, lambda s: services(s)["b"].cluster_ip == "10.0.0.2")
        assert services(snap)["a"].ports[0].port == 80  # last good version
        (diag,) = snap.diagnostics
        assert (diag.code, diag.ref.name, diag.field) == (
            "service.port-invalid", "a", "spec.ports[0].port"
        )
        assert "last good version of this object stays in force" in diag.message

        write(path, svc("a", "abc"), svc("b", ip="10.0.0.3"))  # still bad: still kept
        snap = await settle(store, lambda s: services(s)["b"].cluster_ip == "10.0.0.3")
        assert services(snap)["a"].ports[0].port == 80

        write(path, svc("a", 81), svc("b", ip="10.0.0.3"))
        snap = await settle(store, lambda s: services(s)["a"].ports[0].port == 81)
        assert snap.diagnostics == ()


async def test_invalid_new_object_is_simply_absent(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", svc("a", "abc"))
    store = MeshStore()
    async with running([tmp_path], store):
        snap = store.snapshot()
        assert snap.services == ()
        (diag,) = snap.diagnostics
        assert diag.severity is Severity.ERROR and "last good" not in diag.message


async def test_configmap_volume_symlink_swap(tmp_path: Path) -> None:
    """Kubernetes mounts ConfigMaps as `name -> ..data/name`, `..data -> ..<timestamp>`."""
    (tmp_path / "..v1").mkdir()
    write(tmp_path / "..v1" / "mesh.yaml", svc("a", 80))
    (tmp_path / "..data").symlink_to("..v1")
    (tmp_path / "mesh.yaml").symlink_to("..data/mesh.yaml")
    store = MeshStore()
    async with running([tmp_path], store):
        assert services(store.snapshot())["a"].ports[0].port == 80
        (tmp_path / "..v2").mkdir()
        write(tmp_path / "..v2" / "mesh.yaml", svc("a", 81))
        (tmp_path / "..data_tmp").symlink_to("..v2")
        os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
        await settle(store, lambda s: services(s)["a"].ports[0].port == 81)


async def test_falls_back_to_polling_when_inotify_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_awatch = watchfiles.awatch
    modes: list[object] = []

    def awatch(*paths: Path, **kwargs: Any) -> Any:
        modes.append(kwargs["force_polling"])
        if not kwargs["force_polling"]:
            raise OSError("OS file watch limit reached")
        return real_awatch(*paths, **kwargs)

    monkeypatch.setattr(watchfiles, "awatch", awatch)  # files.py looks it up per call
    write(tmp_path / "a.yaml", svc("a", 80))
    store = MeshStore()
    async with running([tmp_path], store):
        write(tmp_path / "a.yaml", svc("a", 81))
        await settle(store, lambda s: services(s)["a"].ports[0].port == 81)
    assert modes == [None, True]


def test_missing_directory_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=f"^config directory {tmp_path / 'nope'} does not exist$"):
        FileSource([tmp_path / "nope"], MeshStore())
    (tmp_path / "file").write_text("")
    with pytest.raises(SourceError, match="is not a directory"):
        load_dirs([tmp_path / "file"])


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any directory")
def test_unreadable_directory_is_a_source_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    try:
        with pytest.raises(SourceError, match="not readable"):
            load_dirs([locked])
    finally:
        locked.chmod(0o700)


def test_load_dirs(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one / "a.yaml", svc("a", ip="10.0.0.1"), svc("bad", "x"))
    write(two / "b.yaml", svc("a", ip="10.0.0.2"), svc("b"))
    write(two / "broken.yaml", "a: [\n")
    result = load_dirs([one, two])
    assert sorted((o.name, o.ref.file) for o in result.objects if isinstance(o, Service)) == [
        ("a", str(one / "a.yaml")), ("b", str(two / "b.yaml"))
    ]
    assert result.failed_keys == (("Service", "default", "bad"),)
    assert result.broken
    codes = sorted((d.code, Path(d.ref.file).name) for d in result.diagnostics)
    assert codes == [
        ("object.duplicate", "b.yaml"), ("service.port-invalid", "a.yaml"),
        ("yaml.syntax", "broken.yaml"),
    ]


def test_load_dirs_reports_undecodable_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"a: 1\nb: \xff\xfe\n")
    (diag,) = load_dirs([tmp_path]).diagnostics
    assert (diag.code, diag.line) == ("file.not-utf8", 2)


# -- keep_last_good (pure) ------------------------------------------------------


def _service(name: str, port: int = 80) -> Service:
    return Service(
        ref=SourceRef(kind="Service", namespace="default", name=name),
        name=name, namespace="default", ports=(ServicePort(name="", port=port, target_port=port),),
    )


def _error(name: str) -> Diagnostic:
    return Diagnostic(ref=SourceRef(kind="Service", namespace="default", name=name), field="",
                      code="service.port-invalid", message="bad.")


def test_keep_last_good_table() -> None:
    a1, a2, b1 = _service("a", 1), _service("a", 2), _service("b", 1)
    key_a, key_b = ("Service", "default", "a"), ("Service", "default", "b")
    prev = {key_a: a1, key_b: b1}
    err_a = _error("a")

    # valid new version replaces, objects removed from the file disappear
    objs, diags = keep_last_good(prev, ConvertResult(objects=(a2,), failed_keys=(),
                                                     diagnostics=()))
    assert objs == {key_a: a2} and diags == ()

    # invalid a keeps a1; b is gone from the file
    objs, diags = keep_last_good(prev, ConvertResult(objects=(), failed_keys=(key_a,),
                                                     diagnostics=(err_a,)))
    assert objs == {key_a: a1}
    assert diags[0].message.startswith("bad. The last good version")

    # invalid with no previous version: absent, message unchanged
    objs, diags = keep_last_good({}, ConvertResult(objects=(), failed_keys=(key_a,),
                                                   diagnostics=(err_a,)))
    assert objs == {} and diags == (err_a,)

    # broken: everything stays
    broken = ConvertResult(objects=(), failed_keys=(), diagnostics=(err_a,), broken=True)
    objs, diags = keep_last_good(prev, broken)
    assert objs == prev and "2 object(s)" in diags[0].message


async def test_a_writer_pausing_mid_file_deletes_nothing(tmp_path: Path) -> None:
    """Issue 13: a half-written manifest deleted the objects of its missing part, and the
    deletion reached Envoy. In place, a moment ago: the lost objects stay until the file
    is quiet; the writer finishing brings nothing back because nothing went."""
    path = tmp_path / "a.yaml"
    write(path, svc("a"), svc("b"), svc("c"))
    store = MeshStore()
    async with running([tmp_path], store, hold_s=3.0):
        with path.open("r+") as f:  # truncate and write the first part, then pause
            f.truncate(0)
            f.write(svc("a") + "---\n")
            f.flush()
            snap = await settle(store, lambda s: any(
                d.code == "file.deletions-held" for d in s.diagnostics))
            assert sorted(services(snap)) == ["a", "b", "c"]  # nothing deleted
            (d,) = [d for d in snap.diagnostics if d.code == "file.deletions-held"]
            assert "Service default/b, Service default/c left this file" in d.message
            assert "mv it over this one" in d.message
            await asyncio.sleep(1.0)  # the writer pauses (longer than the settle window)
            assert sorted(services(store.snapshot())) == ["a", "b", "c"]
            f.write(svc("b") + "---\n" + svc("c"))
        snap = await settle(store, lambda s: not s.diagnostics)
        assert sorted(services(snap)) == ["a", "b", "c"]


async def test_a_cut_that_parses_is_held_then_applied_and_a_rename_applies_at_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.yaml"
    write(path, svc("a"), svc("b"))
    store = MeshStore()
    async with running([tmp_path], store):
        write(path, svc("a"))  # in place: b is held, then goes (the cut was final)
        snap = await settle(store, lambda s: any(
            d.code == "file.deletions-held" for d in s.diagnostics))
        assert sorted(services(snap)) == ["a", "b"]
        snap = await settle(store, lambda s: "b" not in services(s))
        assert not snap.diagnostics
        tmp = tmp_path / ".a.yaml.tmp"  # the recommended way: write elsewhere, then mv
        tmp.write_text(svc("c"))
        os.replace(tmp, path)
        snap = await settle(store, lambda s: "c" in services(s))
        assert sorted(services(snap)) == ["c"]  # a went at once, no hold
        assert not [d for d in snap.diagnostics if d.code == "file.deletions-held"]


async def test_a_slow_file_does_not_delay_another(tmp_path: Path) -> None:
    """Each file is read in its own task: one still settling (a writer appending without
    pause) does not hold up a change to another file."""
    slow, quick = tmp_path / "slow.yaml", tmp_path / "quick.yaml"
    write(slow, svc("s"))
    write(quick, svc("q"))
    store = MeshStore()
    async with running([tmp_path], store):
        stop = asyncio.Event()

        async def keep_writing() -> None:
            n = 0
            while not stop.is_set():
                n += 1
                write(slow, svc("s"), *(svc(f"s{i}") for i in range(n)))
                await asyncio.sleep(0.03)  # never quiet for the 100 ms settle window

        writer = asyncio.create_task(keep_writing())
        try:
            await asyncio.sleep(0.3)
            write(quick, svc("q", 81))
            snap = await settle(store, lambda s: services(s)["q"].ports[0].port == 81)
            assert not stop.is_set()
            assert "s" in services(snap)
        finally:
            stop.set()
            await writer


async def test_a_file_with_very_many_objects_gets_a_warning(tmp_path: Path) -> None:
    write(tmp_path / "big.yaml", *(svc(f"s{i}") for i in range(30)))
    store = MeshStore()
    async with running([tmp_path], store, warn_objects=20):
        write(tmp_path / "big.yaml", *(svc(f"s{i}") for i in range(31)))
        snap = await settle(store, lambda s: len(s.services) == 31)
        (d,) = [d for d in snap.diagnostics if d.code == "file.large"]
        assert "31 objects, over 20" in d.message and d.severity is Severity.WARNING
