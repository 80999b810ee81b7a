from __future__ import annotations

import asyncio

import pytest

from legation.mesh.store import MeshStore
from legation.model import Namespace, Service, SourceRef


def _svc(name: str, file: str = "a.yaml") -> Service:
    return Service(
        ref=SourceRef(kind="Service", namespace="ns", name=name, file=file, line=1),
        name=name,
        namespace="ns",
    )


def test_replace_source_swaps_objects_and_bumps_version() -> None:
    store = MeshStore()
    store.replace_source("file:a", [_svc("x"), _svc("y")])
    v1 = store.version
    assert [s.name for s in store.snapshot().services] == ["x", "y"]
    store.replace_source("file:a", [_svc("y")])
    assert store.version == v1 + 1
    assert [s.name for s in store.snapshot().services] == ["y"]


def test_identical_replace_does_not_bump() -> None:
    store = MeshStore()
    store.replace_source("file:a", [_svc("x")])
    v = store.version
    store.replace_source("file:a", [_svc("x")])
    assert store.version == v


def test_duplicate_object_first_source_wins_with_warning() -> None:
    store = MeshStore()
    store.replace_source("file:b", [_svc("x", "b.yaml")])
    store.replace_source("file:a", [_svc("x", "a.yaml")])
    snap = store.snapshot()
    assert [s.ref.file for s in snap.services] == ["a.yaml"]
    assert [d.code for d in snap.diagnostics] == ["object.duplicate"]
    assert "a.yaml" in snap.diagnostics[0].message


def test_upsert_delete_and_namespaces() -> None:
    store = MeshStore()
    ns = Namespace(ref=SourceRef(kind="Namespace", namespace="", name="ns"), name="ns")
    store.upsert("k8s", ns)
    store.upsert("k8s", _svc("x"))
    assert store.snapshot().namespaces == (ns,)
    store.delete("k8s", ("Service", "ns", "x"))
    assert store.snapshot().services == ()


def test_ready_waits_for_expected_sources() -> None:
    store = MeshStore()
    store.expect_source("file:a")
    assert not store.ready
    store.replace_source("file:a", [])
    assert store.ready


async def test_wait_changed_wakes_on_change() -> None:
    store = MeshStore()
    v = store.version
    waiter = asyncio.create_task(store.wait_changed(v))
    await asyncio.sleep(0)
    assert not waiter.done()
    store.upsert("k8s", _svc("x"))
    async with asyncio.timeout(5):
        assert await waiter == v + 1


@pytest.mark.parametrize("n", [1, 5], ids=["one", "five"])
def test_snapshot_is_cached_until_change(n: int) -> None:
    store = MeshStore()
    for i in range(n):
        store.upsert("k8s", _svc(f"s{i}"))
    assert store.snapshot() is store.snapshot()
