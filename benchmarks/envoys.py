"""Scenario 3: a YAML file written to the watched directory, until every real Envoy has it.

The whole `App` runs in-process (file source with inotify, store, pipeline,
xDS server on 127.0.0.1:0, debounce `quiet_s`); a handful of real Envoy
sidecars (legation.demo.envoy, bootstraps from legation.bootstrap) connect
over ADS, SotW or delta, as workloads of a small synthetic mesh. A change is
a new file, moved into the directory in one step (`os.replace`), as an
editor or `kubectl`-style tool would leave it:

- "endpoint": one more WorkloadEntry for a service (every Envoy's EDS changes);
- "cluster": a new Service (a new cluster, its endpoints, and virtual hosts).

Each Envoy's admin `/config_dump` is polled (every `poll_s`) until it shows
the new endpoint address, or the new cluster among the active (warmed)
clusters and in its route configuration. Reported: the time from the file
write to the store seeing it, and to each Envoy showing it.

On delta, one more sidecar asks for on-demand config
(`sidecar.legation.io/on-demand`): it starts with no outbound virtual hosts
or clusters, and a request for each of `on_demand_hosts` services is timed
through it twice (the first fetches the virtual host over VHDS and the
cluster over on-demand CDS, the second finds them) and once through an eager
sidecar. Nothing listens behind the services, so every answer is Envoy's 503
after a refused connection: the same work on every path but the fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import meshgen
from benchmarks.stats import ms, spread, table
from legation.app import App
from legation.bootstrap import build_bootstrap
from legation.demo.envoy import Envoy, EnvoyError, envoy_binary
from legation.demo.http import request
from legation.settings import HostPort, Settings

_SIDECAR_PORTS = (15001, meshgen.PORT)  # what a sidecar binds on its workload address


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvoyConfig:
    envoys: int
    repeats: int
    modes: tuple[str, ...] = ("sotw", "delta")
    quiet_s: float = 0.01
    poll_s: float = 0.02
    start_timeout_s: float = 30.0
    change_timeout_s: float = 20.0
    on_demand_hosts: int = 5
    mesh: meshgen.MeshSpec = field(
        default_factory=lambda: meshgen.MeshSpec(services=10, namespaces=2)
    )

    @classmethod
    def make(cls, *, quick: bool) -> EnvoyConfig:
        if quick:
            return cls(envoys=2, repeats=1, modes=("sotw",))
        return cls(envoys=8, repeats=3)


async def run(config: EnvoyConfig) -> dict[str, Any]:
    try:
        binary = envoy_binary()
    except EnvoyError as exc:
        return {"skipped": str(exc)}
    out: dict[str, Any] = {"config": _config_dict(config), "envoy": str(binary), "runs": []}
    with tempfile.TemporaryDirectory(prefix="legation-bench-") as tmp:
        for mode in config.modes:
            try:
                out["runs"].append(await _one_mode(config, mode, Path(tmp) / mode))
            except (EnvoyError, OSError, TimeoutError) as exc:
                out["runs"].append({"mode": mode, "error": repr(exc)})
    out["summary"] = _summarise(out["runs"])
    return out


def _config_dict(config: EnvoyConfig) -> dict[str, Any]:
    return {"envoys": config.envoys, "repeats": config.repeats, "modes": list(config.modes),
            "quiet_s": config.quiet_s, "poll_s": config.poll_s,
            "mesh_services": config.mesh.services, "mesh_namespaces": config.mesh.namespaces}


def _free(address: str) -> bool:
    """Whether a sidecar could bind its ports on `address` now."""
    for port in _SIDECAR_PORTS:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((address, port))
            except OSError:
                return False
    return True


def _sidecars(config: EnvoyConfig) -> list[tuple[str, str]]:
    """(node id, address) of the workloads that get a real Envoy, spread over the mesh."""
    workloads = config.mesh.workloads()
    step = max(1, len(workloads) // config.envoys)
    chosen = list(range(0, len(workloads), step))[: config.envoys]
    return [(f"{workloads[k][1]}.{workloads[k][0]}", meshgen.address(k)) for k in chosen]


async def _one_mode(config: EnvoyConfig, mode: str, work: Path) -> dict[str, Any]:
    config_dir, envoy_dir = work / "config", work / "envoy"
    config_dir.mkdir(parents=True)
    for name, text in meshgen.mesh_files(config.mesh).items():
        (config_dir / name).write_text(text)
    sidecars = _sidecars(config)
    busy = [a for _, a in sidecars if not _free(a)]
    if busy:
        return {"mode": mode, "error": f"sidecar addresses in use: {busy}"}
    settings = Settings(
        config_dirs=(config_dir,),
        xds_address=HostPort(host="127.0.0.1", port=0),
        admin_address=HostPort(host="127.0.0.1", port=0),
        debounce_quiet_s=config.quiet_s,
        debounce_max_s=1.0,
    )
    envoys: list[Envoy] = []
    async with App(settings) as app:
        try:
            started = time.monotonic()
            envoys = await _start(config, mode, sidecars, app.xds.port, envoy_dir)
            result: dict[str, Any] = {"mode": mode, "envoys": len(envoys),
                                      "start_s": time.monotonic() - started, "changes": []}
            for kind in ("endpoint", "cluster"):
                for i in range(config.repeats):
                    change = await _change(config, app, envoys, config_dir, kind, i)
                    result["changes"].append(change)
            if mode == "delta" and config.on_demand_hosts:
                result["on_demand"] = await _on_demand(
                    config, app, sidecars[0][1], config_dir, envoy_dir)
            return result
        finally:
            await asyncio.gather(*(e.stop() for e in envoys), return_exceptions=True)


async def _start(
    config: EnvoyConfig, mode: str, sidecars: list[tuple[str, str]], port: int, workdir: Path
) -> list[Envoy]:
    envoys = []
    for node_id, address in sidecars:
        bootstrap = build_bootstrap(
            node_id=node_id, node_cluster=node_id.split(".", 1)[1], xds_host="127.0.0.1",
            xds_port=port, admin_host=address, admin_port=0, delta=mode == "delta",
        )
        envoys.append(Envoy(name=f"{mode}-{node_id}", bootstrap=bootstrap, workdir=workdir))
    results = await asyncio.gather(
        *(e.start(wait="ready", timeout=config.start_timeout_s) for e in envoys),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    if failed:
        await asyncio.gather(*(e.stop() for e in envoys), return_exceptions=True)
        raise failed[0]
    return envoys


def _change_file(config: EnvoyConfig, kind: str, index: int) -> tuple[str, str, str]:
    """(file name, YAML text, what a config dump must contain) of one change."""
    spec = config.mesh
    if kind == "endpoint":
        text = meshgen.extra_endpoint_yaml(spec, index=index)
        return f"extra-{index}.yaml", text, meshgen.extra_endpoint_address(index)
    name = meshgen.added_service_name(index)
    fqdn = f"{name}.{spec.namespace_of(0)}.svc"
    return f"{name}.yaml", meshgen.added_service_yaml(spec, index=index), f"|{fqdn}"


def _dump_paths(kind: str) -> tuple[str, ...]:
    if kind == "endpoint":
        return ("/config_dump?resource=dynamic_endpoint_configs&include_eds",)
    return ("/config_dump?resource=dynamic_active_clusters",
            "/config_dump?resource=dynamic_route_configs")


async def _change(
    config: EnvoyConfig, app: App, envoys: list[Envoy], config_dir: Path, kind: str, index: int
) -> dict[str, Any]:
    name, text, needle = _change_file(config, kind, index)
    staged = config_dir / f".{name}.tmp"  # hidden: the file source ignores it
    staged.write_text(text)
    await asyncio.sleep(0.2)  # let the watcher's batch window pass
    t0 = time.monotonic()
    store_task = asyncio.create_task(_store_saw(app, app.store.version, t0))
    os.replace(staged, config_dir / name)
    seen = await asyncio.gather(
        *(_seen(e, _dump_paths(kind), needle, t0, config) for e in envoys),
        return_exceptions=True,
    )
    store_s = store_task.result() if store_task.done() else float("nan")
    store_task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await store_task
    times = [s for s in seen if isinstance(s, float)]
    return {
        "kind": kind,
        "index": index,
        "envoys": len(envoys),
        "complete": len(times),
        "errors": [repr(s) for s in seen if isinstance(s, BaseException)][:3],
        "store_saw_file_s": store_s,
        "seen_s": spread(times),
    }


async def _on_demand(
    config: EnvoyConfig, app: App, eager: str, config_dir: Path, workdir: Path
) -> dict[str, Any]:
    """First-request latency of an on-demand sidecar (see the module docstring)."""
    address = meshgen.address(len(config.mesh.workloads()) + 7)
    if not _free(address):
        return {"error": f"on-demand sidecar address in use: {address}"}
    ns = config.mesh.namespace_of(0)
    version = app.store.version
    (config_dir / "on-demand.yaml").write_text(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        f"metadata:\n  name: lazy\n  namespace: {ns}\n"
        "  annotations: {sidecar.legation.io/on-demand: \"true\"}\n"
        f"spec:\n  address: {address}\n  labels: {{app: lazy}}\n")
    await app.store.wait_changed(version)
    bootstrap = build_bootstrap(
        node_id=f"lazy.{ns}", node_cluster=ns, xds_host="127.0.0.1", xds_port=app.xds.port,
        admin_host=address, admin_port=0, delta=True)
    lazy = Envoy(name="delta-on-demand", bootstrap=bootstrap, workdir=workdir)
    await lazy.start(wait="ready", timeout=config.start_timeout_s)
    first: list[float] = []
    again: list[float] = []
    eager_s: list[float] = []
    statuses: set[int] = set()
    try:
        for i in range(1, min(config.on_demand_hosts, config.mesh.services) + 1):
            host = f"{meshgen.service_name(i)}.{config.mesh.namespace_of(i)}:{meshgen.PORT}"
            for proxy, into in ((address, first), (address, again), (eager, eager_s)):
                t0 = time.monotonic()
                resp = await request(proxy, 15001, headers={"host": host}, timeout=10)
                into.append(time.monotonic() - t0)
                statuses.add(resp.status)
    finally:
        await lazy.stop()
    return {"hosts": len(first), "first_s": spread(first), "again_s": spread(again),
            "eager_s": spread(eager_s), "statuses": sorted(statuses)}


async def _store_saw(app: App, version: int, t0: float) -> float:
    await app.store.wait_changed(version)
    return time.monotonic() - t0


async def _seen(
    envoy: Envoy, paths: tuple[str, ...], needle: str, t0: float, config: EnvoyConfig
) -> float:
    """Seconds from t0 until every dump in `paths` contains `needle` (polled)."""
    async with asyncio.timeout(config.change_timeout_s):
        while True:
            texts = [(await envoy.admin_get(p)).text() for p in paths]
            if all(needle in t for t in texts):
                return time.monotonic() - t0
            await asyncio.sleep(config.poll_s)


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for run in runs:
        for kind in ("endpoint", "cluster"):
            changes = [c for c in run.get("changes", []) if c["kind"] == kind]
            if not changes:
                continue
            lasts = sorted(c["seen_s"]["max"] for c in changes)
            out[f"{run['mode']}/{kind}"] = {
                "repeats": len(changes),
                "all_complete": all(c["complete"] == c["envoys"] for c in changes),
                "store_saw_file_s": sorted(c["store_saw_file_s"] for c in changes)[
                    len(changes) // 2],
                "last_envoy_s": lasts[len(lasts) // 2],
            }
    for kind in ("endpoint", "cluster"):
        sotw, delta = out.get(f"sotw/{kind}"), out.get(f"delta/{kind}")
        if sotw and delta and sotw["last_envoy_s"] > 0:
            out[f"delta_vs_sotw/{kind}"] = delta["last_envoy_s"] / sotw["last_envoy_s"]
    return out


def summary(result: dict[str, Any]) -> str:
    if "skipped" in result:
        return f"Real Envoy: skipped ({result['skipped']})"
    rows = []
    for key, h in result["summary"].items():
        if isinstance(h, dict):
            mode, kind = key.split("/")
            rows.append([mode, kind, "yes" if h["all_complete"] else "NO",
                         ms(h["store_saw_file_s"]), ms(h["last_envoy_s"])])
    starts = {r["mode"]: ms(r["start_s"]) for r in result["runs"] if "start_s" in r}
    cfg = result["config"]
    title = (f"Real Envoy ({cfg['envoys']} sidecars, poll {cfg['poll_s'] * 1000:.0f} ms, "
             f"debounce {cfg['quiet_s'] * 1000:.0f} ms): file write -> config_dump (median)")
    text = table(title, ["mode", "change", "all", "store saw file", "LAST envoy"], rows)
    text += "".join(f"\n  {mode}: all Envoys started and ready in {t}"
                    for mode, t in starts.items())
    for r in result["runs"]:
        od = r.get("on_demand")
        if od and "first_s" in od:
            text += (f"\n  {r['mode']} on-demand sidecar, {od['hosts']} hosts (HTTP "
                     f"{od['statuses']}): first request {ms(od['first_s']['p50'])} (max "
                     f"{ms(od['first_s']['max'])}), again {ms(od['again_s']['p50'])}, "
                     f"eager sidecar {ms(od['eager_s']['p50'])} (p50)")
        elif od:
            text += f"\n  on-demand: {od.get('error')}"
    errors = [r.get("error") for r in result["runs"] if r.get("error")]
    return text + "".join(f"\n  error: {e}" for e in errors)
