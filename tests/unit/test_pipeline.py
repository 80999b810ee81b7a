"""Pipeline: store -> translators -> snapshots, with debounce and sharing."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import structlog

from legation.cache import CLUSTER, ENDPOINT, ProxyError, Snapshot, SnapshotCache
from legation.mesh.analyze import analyze
from legation.mesh.memo import Memo
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.sources.convert import convert_text

SHOP = Path(__file__).resolve().parents[2] / "examples" / "shop"


def load_shop(store: MeshStore) -> None:
    for path in sorted(SHOP.glob("*.yaml")):
        result = convert_text(path.read_text(), file=str(path))
        store.replace_source(f"file:{path}", result.objects, result.diagnostics)


class Recorder(SnapshotCache):
    """A real SnapshotCache that also remembers every publication."""

    def __init__(self) -> None:
        super().__init__()
        self.published: list[tuple[str, Snapshot | ProxyError]] = []

    def set(self, node_id: str, entry: Snapshot | ProxyError) -> None:
        self.published.append((node_id, entry))
        super().set(node_id, entry)


@contextlib.asynccontextmanager
async def shop_pipeline(**options: Any) -> AsyncIterator[tuple[MeshStore, Recorder, Pipeline]]:
    """The shop in a store, a Pipeline with `options` running over it."""
    store, cache = MeshStore(), Recorder()
    load_shop(store)
    pipeline = Pipeline(store, cache, Metrics(), **options)
    task = asyncio.create_task(pipeline.run())
    try:
        yield store, cache, pipeline
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


@pytest.fixture
async def running() -> AsyncIterator[tuple[MeshStore, Recorder]]:
    async with shop_pipeline(quiet=0.05, max_delay=0.5) as (store, cache, _):
        yield store, cache


async def wait_published(cache: Recorder, count: int) -> None:
    async with asyncio.timeout(5):
        while len(cache.published) < count:
            await asyncio.sleep(0.01)


async def test_connect_publishes_snapshot_and_unknown_node_gets_not_found(
    running: tuple[MeshStore, Recorder],
) -> None:
    _, cache = running
    with cache.watch("order-v1.shop"), cache.watch("ghost.shop"):
        await wait_published(cache, 2)
        good = cache.get("order-v1.shop")
        bad = cache.get("ghost.shop")
    assert isinstance(good, Snapshot)
    assert "outbound|9080||catalog.shop.svc.cluster.local" in good.of_type(CLUSTER)
    assert isinstance(bad, ProxyError) and bad.code == "NOT_FOUND" and "ghost.shop" in bad.message


async def test_burst_of_changes_is_one_push(running: tuple[MeshStore, Recorder]) -> None:
    store, cache = running
    with cache.watch("order-v1.shop"):
        await wait_published(cache, 1)
        before = len(cache.published)
        objs = dict(store.objects(f"file:{SHOP / 'workloads.yaml'}"))
        for _ in range(20):  # remove and re-add a workload, 20 times, in one burst
            store.replace_source(f"file:{SHOP / 'workloads.yaml'}", [])
            store.replace_source(f"file:{SHOP / 'workloads.yaml'}", objs.values())
        store.replace_source(
            f"file:{SHOP / 'workloads.yaml'}", [o for k, o in objs.items() if k[2] != "catalog-v2"]
        )
        await wait_published(cache, before + 1)
        await asyncio.sleep(0.3)  # nothing else may follow: the burst was coalesced
        assert len(cache.published) == before + 1
        snap = cache.get("order-v1.shop")
    assert isinstance(snap, Snapshot)
    cla = snap.of_type(ENDPOINT)["outbound|9080||catalog.shop.svc.cluster.local"]
    assert b"127.0.10.4" not in cla.body  # catalog-v2's address is gone
    assert b"127.0.10.3" in cla.body


async def test_proxies_share_serialized_resources(running: tuple[MeshStore, Recorder]) -> None:
    _, cache = running
    with cache.watch("order-v1.shop"), cache.watch("catalog-v1.shop"):
        await wait_published(cache, 2)
        a, b = cache.get("order-v1.shop"), cache.get("catalog-v1.shop")
    assert isinstance(a, Snapshot) and isinstance(b, Snapshot)
    name = "outbound|9080||payment.shop.svc.cluster.local"
    assert a.of_type(CLUSTER)[name] is b.of_type(CLUSTER)[name]


def test_versions_are_content_hashes_stable_across_instances() -> None:
    snaps = []
    for _ in range(2):
        store = MeshStore()
        load_shop(store)
        snaps.append(Pipeline(store, SnapshotCache(), Metrics()).snapshot_for("order-v1.shop"))
    a, b = snaps
    assert isinstance(a, Snapshot) and isinstance(b, Snapshot)
    assert a.versions == b.versions


def test_analyze_reports_converter_and_translator_findings(tmp_path: Path) -> None:
    store = MeshStore()
    text = (SHOP / "services.yaml").read_text().replace("port: 9080", "port: abc", 1)
    result = convert_text(text, file="services.yaml")
    store.replace_source("x", result.objects, result.diagnostics)
    codes = {d.code for d in analyze(store.snapshot())}
    assert any(c.startswith("service.") for c in codes), codes


def test_the_serve_log_and_analyze_point_to_the_same_line() -> None:
    """One rule everywhere (issue 10): the field's line when known, else the object's.
    (Before: the serve log named the object's first line, analyze the field's.)"""
    store = MeshStore()
    text = (SHOP / "services.yaml").read_text().replace("port: 9080", "port: abc", 1)
    result = convert_text(text, file="services.yaml")
    store.replace_source("x", result.objects, result.diagnostics)
    pipeline = Pipeline(store, SnapshotCache(), Metrics())
    found = [d for d in analyze(store.snapshot()) if d.code.startswith("service.")]
    assert found and all(d.line > d.ref.line for d in found)  # a field inside the object
    with structlog.testing.capture_logs() as logs:
        pipeline._report(Memo.of(store.snapshot()))
    logged = {(e["code"], e["where"]) for e in logs if e["event"] == "config.diagnostic"}
    for d in found:
        assert (d.code, f"services.yaml:{d.as_dict()['line']}") in logged
        assert d.format().startswith(f"services.yaml:{d.line}: ")


async def test_concurrent_connects_and_reads_during_rebuilds() -> None:
    """Build state has one owner at a time (issue 10: `snapshot_for` read the memo on the
    loop while the worker thread mutated it). Proxies connect and go while the mesh
    keeps changing and another thread keeps asking what proxies would get; afterwards
    every connected proxy holds, byte for byte, what a build from scratch gives, and
    every answer the other thread got was right for the mesh it asked about."""
    from test_pipeline_reuse import from_scratch, served

    store, cache = MeshStore(), Recorder()
    load_shop(store)
    pipeline = Pipeline(store, cache, Metrics(), quiet=0.001, max_delay=0.01)
    task = asyncio.create_task(pipeline.run())
    nodes = ["frontend.shop", "order-v1.shop", "catalog-v1.shop", "catalog-v2.shop",
             "payment-v1.shop", "ghost.shop"]
    first = store.snapshot()
    stop, answers = threading.Event(), []

    def ask() -> None:
        while not stop.is_set() and len(answers) < 30 * len(nodes):
            for n in nodes:
                answers.append((n, pipeline.snapshot_of(first, n)))
            stop.wait(0.005)

    reader = threading.Thread(target=ask)
    reader.start()
    source = f"file:{SHOP / 'workloads.yaml'}"
    objs = list(store.objects(source).values())
    try:
        with contextlib.ExitStack() as held:
            for i in range(40):
                store.replace_source(source, objs[: 2 + i % len(objs)])  # endpoints move
                if i % 3 == 0:
                    held.enter_context(cache.watch(nodes[i % len(nodes)]))
                if i % 7 == 6:
                    held.close()  # they all go, and come back below
                await asyncio.sleep(0.002)
            store.replace_source(source, objs)
            for n in nodes:
                held.enter_context(cache.watch(n))
            mesh = store.snapshot()
            async with asyncio.timeout(10):
                while not all(served(cache.get(n)) == served(from_scratch(mesh, n))
                              for n in nodes if n != "ghost.shop"):
                    await asyncio.sleep(0.02)
            ghost = cache.get("ghost.shop")
            assert isinstance(ghost, ProxyError) and ghost.code == "NOT_FOUND"
    finally:
        stop.set()
        reader.join()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert len(answers) > len(nodes)
    for n, got in answers:
        want = from_scratch(first, n)
        assert served(got) == served(want) if want is not None else isinstance(got, ProxyError)


async def test_a_bug_building_one_proxy_fails_only_that_proxy(
    running: tuple[MeshStore, Recorder], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A translator that raises (issue 13: a bug took the control plane down) ends that
    proxy's stream with INTERNAL; the pipeline and the other proxies go on."""
    import legation.mesh.pipeline as pipeline_module

    real = pipeline_module.build_snapshot

    def flaky(memo: Memo, node: str, **kw: object) -> object:
        if node == "payment-v1.shop":
            raise RuntimeError("boom")
        return real(memo, node, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(pipeline_module, "build_snapshot", flaky)
    _, cache = running
    with structlog.testing.capture_logs() as logs, cache.watch("order-v1.shop"), \
            cache.watch("payment-v1.shop"):
        await wait_published(cache, 2)
        good, bad = cache.get("order-v1.shop"), cache.get("payment-v1.shop")
    assert isinstance(good, Snapshot)
    assert isinstance(bad, ProxyError) and bad.code == "INTERNAL" and "RuntimeError" in bad.message
    assert [e["node"] for e in logs if e["event"] == "pipeline.build-failed"] == [
        "payment-v1.shop"]


async def test_a_vanished_workload_keeps_its_proxy_served_for_a_grace_period() -> None:
    """Issue 14: a pod deleted and recreated under its name (here: its WorkloadEntry taken
    away and put back) keeps its stream and config; gone for longer than the grace, the
    proxy is told NOT_FOUND, as an unknown node is."""
    shop = {f"file:{p}": convert_text(p.read_text(), file=str(p)) for p in SHOP.glob("*.yaml")}
    workloads = next(k for k in shop if k.endswith("workloads.yaml"))
    without = tuple(o for o in shop[workloads].objects
                    if getattr(o, "name", "") != "payment-v1")
    async with shop_pipeline(quiet=0.01, max_delay=0.05, vanish_grace_s=0.5) as (
            store, cache, _):
        with cache.watch("payment-v1.shop"):
            await wait_published(cache, 1)
            served = cache.get("payment-v1.shop")
            assert isinstance(served, Snapshot)

            store.replace_source(workloads, without, ())  # gone for a moment ...
            await asyncio.sleep(0.2)
            assert cache.get("payment-v1.shop") is served
            store.replace_source(workloads, shop[workloads].objects, ())  # ... and back
            await asyncio.sleep(0.8)  # past the grace: nothing was refused meanwhile
            assert all(not isinstance(e, ProxyError) for _, e in cache.published)
            assert isinstance(cache.get("payment-v1.shop"), Snapshot)

            store.replace_source(workloads, without, ())  # gone for good
            await asyncio.sleep(0.2)
            assert isinstance(cache.get("payment-v1.shop"), Snapshot)  # still held

            async def refused() -> None:
                while not isinstance(cache.get("payment-v1.shop"), ProxyError):
                    await asyncio.sleep(0.02)

            async with asyncio.timeout(3):
                await refused()
            gone = cache.get("payment-v1.shop")
            assert isinstance(gone, ProxyError) and gone.code == "NOT_FOUND"


async def test_a_proxy_with_a_large_configuration_is_warned_about() -> None:
    """Issue 13: a configuration over --warn-proxy-config-size is a warning naming the
    proxy and its size; it goes when the proxy leaves."""
    async with shop_pipeline(quiet=0.01, max_delay=0.05, warn_config_bytes=1000) as (
            _, cache, pipeline):
        with cache.watch("order-v1.shop"):
            await wait_published(cache, 1)
            served = cache.get("order-v1.shop")
            assert isinstance(served, Snapshot)
            assert served.size() == sum(len(r.body) for rs in served.resources.values()
                                        for r in rs.values()) > 1000
            (d,) = [d for d in pipeline.diagnostics if d.code == "proxy.config-large"]
            assert d.ref.name == "order-v1.shop" and d.severity == "warning"
            assert "MiB" in d.message and "Sidecar" in d.message
        assert not [d for d in pipeline.diagnostics if d.code == "proxy.config-large"]
