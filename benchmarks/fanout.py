"""Scenario 2: one change, a thousand ADS streams; how long until the last one ACKs it.

Each run happens in a fresh server process (so its memory figures are its
own): the real control plane minus the sources — `MeshStore`, `Pipeline`
(debounce `quiet_s`), `SnapshotCache`, `XdsServer` on 127.0.0.1:0 over real
grpc.aio — serving a synthetic mesh. Client processes (adsclient.py) open one
ADS stream per proxy (SotW or delta) and ACK everything. Once every stream
holds CDS/EDS/LDS/RDS, the run applies changes straight to the store:

- "endpoint": one more endpoint for one service (one ClusterLoadAssignment);
- "cluster": a new Service (one more cluster, CLA, and virtual hosts),

and measures, per proxy, the time from the store change to receiving and to
having ACKed the new version of every type the change touched (the expected
versions are read from the published snapshots; completion is seen on the
server's StatusBoard, the times come from the clients). Analysis of the
records is in fanout_report.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import gc
import multiprocessing
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any

from benchmarks import adsclient, fanout_report, meshgen
from benchmarks.stats import cpu_seconds, load_average, machine_busy_seconds, rss_bytes
from legation.app import GC_THRESHOLDS, compact_heap
from legation.cache import ProxyError, Snapshot, SnapshotCache, short_name
from legation.logs import configure
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import MeshObject
from legation.xds import XdsServer
from legation.xds.status import StatusBoard

CHANGE_SOURCE = "bench:changes"


@dataclass(frozen=True, slots=True, kw_only=True)
class RunSpec:
    proxies: int
    delta: bool
    mesh: meshgen.MeshSpec
    client_procs: int = 2
    streams_per_channel: int = 1
    quiet_s: float = 0.01
    max_delay_s: float = 1.0
    repeats: int = 3
    kinds: tuple[str, ...] = ("endpoint", "cluster")  # the changes measured, in order
    connect_timeout_s: float = 240.0
    change_timeout_s: float = 60.0
    settle_s: float = 0.3
    profile_path: str = ""  # write cProfile stats of the server's changes here (main thread)

    @property
    def mode(self) -> str:
        return "delta" if self.delta else "sotw"

    def bound_s(self) -> float:
        """How long the whole run may take before the parent gives up on it."""
        return self.connect_timeout_s + 2 * self.repeats * (self.change_timeout_s + 5) + 120


class TimedCache(SnapshotCache):
    """A real SnapshotCache that says when a publication has reached every watched node."""

    def __init__(self) -> None:
        super().__init__()
        self._waiting: set[str] = set()
        self.published = asyncio.Event()
        self.published_at = 0.0

    def expect(self, nodes: list[str]) -> None:
        self._waiting = set(nodes)
        self.published.clear()

    def set(self, node_id: str, entry: Snapshot | ProxyError) -> None:
        super().set(node_id, entry)
        if node_id in self._waiting:
            self._waiting.discard(node_id)
            if not self._waiting:
                self.published_at = time.monotonic()
                self.published.set()


@dataclass(slots=True)
class _Clients:
    """The client processes of a run and their pipes."""

    procs: list[Any] = field(default_factory=list)
    conns: list[Connection] = field(default_factory=list)

    async def ask(self, command: str, arg: object = None, *, timeout: float = 60.0) -> list[Any]:
        for conn in self.conns:
            conn.send((command, arg))
        return await asyncio.gather(*(_recv(c, timeout) for c in self.conns))

    async def stop(self) -> list[Any]:
        try:
            replies = await self.ask("stop", timeout=30)
        except (EOFError, OSError, TimeoutError):
            replies = []
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.terminate()
                p.join(5)
        return replies


async def _recv(conn: Connection, timeout: float) -> Any:
    def wait() -> Any:
        if not conn.poll(timeout):
            raise TimeoutError(f"a client process did not answer within {timeout}s")
        return conn.recv()

    return await asyncio.to_thread(wait)


@dataclass(frozen=True, slots=True, kw_only=True)
class FanoutConfig:
    proxies: tuple[int, ...]
    modes: tuple[str, ...]
    mesh: meshgen.MeshSpec
    client_procs: int
    repeats: int
    quiet_s: float = 0.01
    profile_dir: str = ""
    kinds: tuple[str, ...] = ("endpoint", "cluster")

    @classmethod
    def make(
        cls,
        *,
        quick: bool,
        client_procs: int = 2,
        profile_dir: str = "",
        services: int = 0,
        endpoints: int = 0,
        proxies: tuple[int, ...] = (),
        modes: tuple[str, ...] = (),
        repeats: int = 0,
        kinds: tuple[str, ...] = (),
    ) -> FanoutConfig:
        """The size users run (1,000 services x 2 endpoints, 1,000 proxies) unless told."""
        if quick:
            mesh = meshgen.MeshSpec(services=10, namespaces=2, min_endpoints=3, max_endpoints=3)
            return cls(proxies=(10, 20), modes=("sotw", "delta"), mesh=mesh, client_procs=1,
                       repeats=1, profile_dir=profile_dir)
        n, eps = services or 1000, endpoints or 2
        mesh = meshgen.MeshSpec(services=n, namespaces=max(1, n // 100),
                                min_endpoints=eps, max_endpoints=eps)
        return cls(proxies=proxies or (1000,), modes=modes or ("sotw", "delta"), mesh=mesh,
                   client_procs=client_procs, repeats=repeats or 5, profile_dir=profile_dir,
                   kinds=kinds or ("endpoint", "cluster"))

    def specs(self) -> list[RunSpec]:
        def profile(mode: str, n: int) -> str:
            return f"{self.profile_dir}/server-{mode}-{n}.prof" if self.profile_dir else ""

        return [
            RunSpec(
                proxies=n, delta=mode == "delta", mesh=self.mesh, client_procs=self.client_procs,
                repeats=self.repeats, quiet_s=self.quiet_s, profile_path=profile(mode, n),
                kinds=self.kinds,
            )
            for n in self.proxies
            for mode in self.modes
        ]


def run(config: FanoutConfig, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    from benchmarks import floor

    runs, floors = [], []
    for spec in config.specs():
        progress(f"fanout: {spec.mode}, {spec.proxies} proxies")
        runs.append(run_in_process(spec))
        progress(f"fanout floor (bare grpc.aio): {spec.mode}, {spec.proxies} proxies")
        floors.append(run_in_process(replace(spec, mesh=floor.mesh_for(spec.proxies),
                                             profile_path=""), floor.run, "floor"))
    return {
        "config": {"proxies": list(config.proxies), "modes": list(config.modes),
                   "mesh": asdict(config.mesh), "client_procs": config.client_procs,
                   "repeats": config.repeats, "debounce_quiet_s": config.quiet_s},
        "runs": runs,
        "floor": floors,
        "summary": {**fanout_report.summarise(runs), "floor": floor.summary(floors)},
    }


ServerRun = Callable[[RunSpec], Coroutine[Any, Any, dict[str, Any]]]


def run_in_process(spec: RunSpec, server: ServerRun | None = None,
                   name: str = "server") -> dict[str, Any]:
    """Run one measurement (`server`, by default Legation's fan-out `_run`) in a fresh
    server process; its result. `server` must be a module-level coroutine function."""
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_server_main, args=(child, spec, server or _run),
                       name=f"bench-{name}-{spec.mode}")
    proc.start()
    child.close()
    try:
        if not parent.poll(spec.bound_s()):
            return {"error": f"{name} run did not finish within {spec.bound_s():.0f}s"}
        result: dict[str, Any] = parent.recv()
        return result
    except EOFError:
        return {"error": f"{name} process died (exit code {proc.exitcode})"}
    finally:
        proc.join(30)
        if proc.is_alive():
            proc.terminate()
            proc.join(5)


def _server_main(conn: Connection, spec: RunSpec, server: ServerRun) -> None:
    configure(level="warning")
    try:
        result = asyncio.run(server(spec))
    except Exception as exc:
        result = {"error": repr(exc), "traceback": traceback.format_exc()}
    conn.send(result)


async def _run(spec: RunSpec) -> dict[str, Any]:
    store, cache, status, metrics = MeshStore(), TimedCache(), StatusBoard(), Metrics()
    loaded = meshgen.load(store, meshgen.mesh_files(spec.mesh))
    pipeline = Pipeline(store, cache, metrics, quiet=spec.quiet_s, max_delay=spec.max_delay_s)
    server = XdsServer(cache, status, metrics, address="127.0.0.1:0")
    await server.start()
    task = asyncio.create_task(pipeline.run())
    clients = _Clients()
    try:
        result: dict[str, Any] = {"spec": _spec_dict(spec), "mesh_objects": loaded.objects,
                                  "load_average_at_start": load_average()}
        nodes = _choose(spec.mesh.node_ids(), spec.proxies)
        result["rss_before_bytes"] = rss_bytes()
        gc.set_threshold(*GC_THRESHOLDS)  # as `legation serve` (app.tune_gc)
        with _profiled(spec, "connect"):
            result["connect"] = await _connect(spec, server.port, nodes, clients)
        result["rss_connected_bytes"] = rss_bytes()  # with the connect burst's buffers
        await asyncio.sleep(2.0)  # writes complete: what stays is what a stream costs
        compact_heap()  # as `legation serve` does once loaded (app.tune_gc)
        result["rss_settled_bytes"] = rss_bytes()
        result["rss_per_proxy_bytes"] = (
            result["rss_settled_bytes"] - result["rss_before_bytes"]
        ) / max(1, len(nodes))
        if result["connect"]["ready"] < len(nodes):
            result["error"] = "not every stream became ready"
            return result
        run = _Changer(spec, store, cache, status, metrics, clients, nodes)
        with _profiled(spec, "changes"):
            result["changes"] = await run.all_changes()
        with _profiled(spec, "storm"):
            result["storm"] = await _storm(spec, status, cache, clients, nodes)
        return result
    finally:
        await clients.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await server.stop(grace=0.5)


@contextlib.contextmanager
def _profiled(spec: RunSpec, phase: str) -> Iterator[None]:
    """cProfile the server's main thread during one phase, when asked to."""
    if not spec.profile_path:
        yield
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()
        profiler.dump_stats(spec.profile_path.replace(".prof", f"-{phase}.prof"))


async def _storm(
    spec: RunSpec, status: StatusBoard, cache: SnapshotCache, clients: _Clients,
    nodes: list[str],
) -> dict[str, Any]:
    """Every proxy drops its connection and dials again at once, stating what it holds
    (as Envoy does after a network blip or a control-plane restart): how long until
    every node has a new stream that ACKed the current version of every type."""
    await asyncio.sleep(spec.settle_s)
    want = {}
    for n in nodes:
        entry = cache.get(n)
        assert isinstance(entry, Snapshot), n
        want[n] = {short_name(t): entry.version(t) for t in adsclient.types_for(spec.delta)}
    server_cpu, busy = cpu_seconds(), machine_busy_seconds()
    t0, wall0 = time.monotonic(), time.time()
    await clients.ask("reconnect")
    pending = set(nodes)
    deadline = t0 + spec.connect_timeout_s
    while pending and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        fresh = {s.node_id: s for s in status.all() if s.connected_at >= wall0}
        pending = {n for n in pending
                   if (s := fresh.get(n)) is None
                   or any(s.type(t).acked_version != v for t, v in want[n].items())}
    server_cpu = cpu_seconds() - server_cpu
    return {
        "wall_s": time.monotonic() - t0,
        "resynced": len(nodes) - len(pending),
        "server_cpu_s": server_cpu,
        "others_cpu_s": machine_busy_seconds() - busy - server_cpu,
    }


def _choose(node_ids: list[str], count: int) -> list[str]:
    """`count` node ids spread evenly over the mesh (so over every namespace)."""
    if count >= len(node_ids):
        return node_ids
    step = len(node_ids) / count
    return [node_ids[int(i * step)] for i in range(count)]


def _spec_dict(spec: RunSpec) -> dict[str, Any]:
    out = asdict(spec)
    out["mode"] = spec.mode
    return out


async def _connect(
    spec: RunSpec, port: int, nodes: list[str], clients: _Clients
) -> dict[str, Any]:
    """Start the client processes; wait until every stream has ACKed every type."""
    ctx = multiprocessing.get_context("spawn")
    indexed = list(enumerate(nodes))
    procs = max(1, min(spec.client_procs, len(nodes)))
    server_cpu, started, busy = cpu_seconds(), time.monotonic(), machine_busy_seconds()
    for k in range(procs):
        parent, child = ctx.Pipe()
        plan = adsclient.ClientPlan(
            target=f"127.0.0.1:{port}",
            nodes=tuple(indexed[k::procs]),
            delta=spec.delta,
            streams_per_channel=spec.streams_per_channel,
        )
        proc = ctx.Process(target=adsclient.main, args=(child, plan), name=f"bench-clients-{k}")
        proc.start()
        child.close()
        clients.procs.append(proc)
        clients.conns.append(parent)
    replies = await clients.ask(
        "ready", spec.connect_timeout_s, timeout=spec.connect_timeout_s + 60
    )
    server_cpu = cpu_seconds() - server_cpu
    clients_cpu = sum(r["cpu_s"] for r in replies)  # includes process start-up
    return {
        "wall_s": time.monotonic() - started,
        "ready": sum(r["ready"] for r in replies),
        "errors": sum(r["errors"] for r in replies),
        "error_examples": [e for r in replies for e in r["error_examples"]][:5],
        "server_cpu_s": server_cpu,
        "clients_cpu_s": clients_cpu,
        "others_cpu_s": machine_busy_seconds() - busy - server_cpu - clients_cpu,
        "client_procs": procs,
    }


class _Changer:
    """Applies one change to the store and measures its way to every proxy."""

    def __init__(
        self,
        spec: RunSpec,
        store: MeshStore,
        cache: TimedCache,
        status: StatusBoard,
        metrics: Metrics,
        clients: _Clients,
        nodes: list[str],
    ) -> None:
        self.spec, self.store, self.cache, self.metrics = spec, store, cache, metrics
        self.clients, self.nodes = clients, nodes
        self.by_node = {s.node_id: s for s in status.all()}

    async def all_changes(self) -> list[dict[str, Any]]:
        """Every change of the run, in order; stops at the first that never got published."""
        out: list[dict[str, Any]] = []
        for kind in self.spec.kinds:
            for i in range(self.spec.repeats):
                try:
                    out.append(await self.change(kind, i))
                except TimeoutError:
                    out.append({"kind": kind, "index": i, "error": "not published within "
                                f"{self.spec.change_timeout_s}s"})
                    return out
        return out

    def _objects(self, kind: str, index: int) -> tuple[MeshObject, ...]:
        if kind == "endpoint":
            return meshgen.extra_endpoint(self.spec.mesh, index=index)
        return meshgen.added_service(self.spec.mesh, index=index)

    async def change(self, kind: str, index: int) -> dict[str, Any]:
        objects = self._objects(kind, index)
        await asyncio.sleep(self.spec.settle_s)
        before = {n: self.cache.get(n) for n in self.nodes}
        client_cpu = [r["cpu_s"] for r in await self.clients.ask("record")]
        translated = self._translation_sum()
        self.cache.expect(self.nodes)
        busy = machine_busy_seconds()
        server_cpu, t0 = cpu_seconds(), time.monotonic()
        for obj in objects:
            self.store.upsert(CHANGE_SOURCE, obj)
        expected = await self._published(before)
        done = await self._acked(expected)
        server_cpu = cpu_seconds() - server_cpu
        busy = machine_busy_seconds() - busy
        replies = await self.clients.ask("collect")
        return fanout_report.analyse(
            kind=kind,
            index=index,
            t0=t0,
            published_at=self.cache.published_at,
            server_done_at=done,
            nodes=self.nodes,
            expected=expected,
            records=[rec for r in replies for rec in r["records"]],
            server_cpu_s=server_cpu,
            clients_cpu_s=sum(r["cpu_s"] for r in replies) - sum(client_cpu),
            machine_busy_s=busy,
            translation_s=self._translation_sum() - translated,
            debounce_quiet_s=self.spec.quiet_s,
        )

    def _translation_sum(self) -> float:
        value = self.metrics.registry.get_sample_value("legation_translation_seconds_sum")
        return float(value or 0.0)

    async def _published(self, before: dict[str, Any]) -> dict[str, dict[str, str]]:
        """Wait for the new snapshots; per node, the versions of the types that changed."""
        async with asyncio.timeout(self.spec.change_timeout_s):
            await self.cache.published.wait()
        expected: dict[str, dict[str, str]] = {}
        for node in self.nodes:
            old, new = before[node], self.cache.get(node)
            assert isinstance(old, Snapshot) and isinstance(new, Snapshot), node
            expected[node] = {
                t: new.version(t) for t in adsclient.TYPES if new.version(t) != old.version(t)
            }
        return expected

    async def _acked(self, expected: dict[str, dict[str, str]]) -> float:
        """Poll the StatusBoard until every node ACKed its expected versions; when."""
        pending = {n for n, types in expected.items() if types}
        deadline = time.monotonic() + self.spec.change_timeout_s
        while pending and time.monotonic() < deadline:
            pending = {
                n for n in pending
                if any(
                    self.by_node[n].type(short_name(t)).acked_version != v
                    for t, v in expected[n].items()
                )
            }  # fmt: skip
            if pending:
                await asyncio.sleep(0.02)
        return time.monotonic()
