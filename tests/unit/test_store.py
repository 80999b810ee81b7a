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


def _vs_text(name: str, timeout: str) -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            f"metadata: {{name: {name}, namespace: ns}}\n"
            f"spec:\n  hosts: [x]\n  http:\n  - timeout: {timeout}\n"
            f"    route: [{{destination: {{host: x}}}}]\n")


def _objects(text: str) -> list[object]:
    from legation.sources.convert import convert_text

    return list(convert_text(text, file="vs.yaml").objects)


def test_a_rejected_version_is_held_back_until_the_object_changes() -> None:
    """NACK containment (issue 13): the version Envoy rejected gives way to the previous
    one (or to nothing when new), with an error naming Envoy's message, until a source
    writes another version."""
    store = MeshStore()
    store.replace_source("file:svc", [_svc("x")])
    store.replace_source("file:vs", _objects(_vs_text("a", "1s")))  # type: ignore[arg-type]
    store.snapshot()
    store.replace_source("file:vs", _objects(  # type: ignore[arg-type]
        _vs_text("a", "2s") + "---\n" + _vs_text("b", "3s")))
    store.snapshot()
    a, b = ("VirtualService", "ns", "a"), ("VirtualService", "ns", "b")
    assert store.reject([a, b], node="web.ns", type_name="rds", message="bad regex") == [a, b]
    assert store.reject([a, b], node="other.ns", type_name="rds", message="bad regex") == []
    snap = store.snapshot()
    assert [(v.name, v.http[0].timeout_ms) for v in snap.virtual_services] == [("a", 1000)]
    found = {d.ref.name: d for d in snap.diagnostics if d.code == "envoy.rejected"}
    assert sorted(found) == ["a", "b"] and found["a"].severity == "error"
    assert "(proxy web.ns): bad regex" in found["a"].message
    assert "previous version stays in force" in found["a"].message
    assert "left out" in found["b"].message and "VirtualService ns/a" in found["b"].message
    # a new version of a is tried again; b stays held
    store.replace_source("file:vs", _objects(  # type: ignore[arg-type]
        _vs_text("a", "4s") + "---\n" + _vs_text("b", "3s")))
    snap = store.snapshot()
    assert [(v.name, v.http[0].timeout_ms) for v in snap.virtual_services] == [("a", 4000)]
    assert [d.ref.name for d in snap.diagnostics if d.code == "envoy.rejected"] == ["b"]


def test_a_released_version_is_tried_again() -> None:
    """NACK bisection: released keys serve their current version again (a new change)."""
    store = MeshStore()
    store.replace_source("file:svc", [_svc("x")])
    store.replace_source("file:vs", _objects(_vs_text("a", "1s")))  # type: ignore[arg-type]
    store.snapshot()
    store.replace_source("file:vs", _objects(_vs_text("a", "2s")))  # type: ignore[arg-type]
    store.snapshot()
    a = ("VirtualService", "ns", "a")
    assert store.reject([a], node="n", type_name="rds", message="m") == [a]
    assert store.snapshot().virtual_services[0].http[0].timeout_ms == 1000
    version = store.version
    assert store.release([a, ("VirtualService", "ns", "never-held")]) == [a]
    snap = store.snapshot()
    assert snap.virtual_services[0].http[0].timeout_ms == 2000 and store.version > version
    assert store.changed_since(version, store.version) == [a]
    assert not [d for d in snap.diagnostics if d.code == "envoy.rejected"]
