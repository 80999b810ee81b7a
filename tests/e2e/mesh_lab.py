"""`MeshLab`, a mesh under test: manifests written to a watched directory, `legation
serve` as a real process (`legation.demo.controlplane`), demo apps and their sidecars."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from legation.demo.app import DemoApp
from legation.demo.controlplane import ControlPlane
from legation.demo.envoy import Envoy, WaitFor
from legation.demo.http import HttpResponse, request

from .bootstraps import sidecar_bootstrap
from .processes import AppFleet, EnvoyFleet, Loopback, eventually

XDS_PORT = 15010
ADMIN_PORT = 15014
OUTBOUND_PORT = 15001  # the sidecar's HTTP proxy listener (DESIGN.md §4)


def service_yaml(
    name: str,
    namespace: str,
    *,
    port: int = 9080,
    target_port: int | str | None = None,
    selector: dict[str, str] | None = None,
    port_name: str = "http",
) -> str:
    """A v1 Service with one port, selecting `app: <name>` unless told otherwise."""
    doc = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "selector": selector if selector is not None else {"app": name},
            "ports": [
                {
                    "name": port_name,
                    "port": port,
                    "targetPort": port if target_port is None else target_port,
                }
            ],
        },
    }
    return yaml.safe_dump(doc, sort_keys=False)


def workload_entry_yaml(
    name: str,
    namespace: str,
    *,
    address: str,
    labels: dict[str, str],
    app_ports: dict[int, int] | None = None,
    service_account: str | None = None,
    annotations: dict[str, str] | None = None,
) -> str:
    """A WorkloadEntry; `app_ports` maps a target port to where its app listens (127.0.0.1)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    notes = dict(annotations or {})
    if app_ports:
        mapping = ",".join(f"{t}={a}" for t, a in sorted(app_ports.items()))
        notes["sidecar.legation.io/app-ports"] = mapping
    if notes:
        meta["annotations"] = notes
    spec: dict[str, Any] = {"address": address, "labels": labels}
    if service_account:
        spec["serviceAccount"] = service_account
    doc = {
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": meta,
        "spec": spec,
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass(slots=True, kw_only=True)
class MeshWorkload:
    """A workload of a MeshLab: its WorkloadEntry file, its app (if any), its sidecar."""

    name: str
    namespace: str
    address: str
    labels: dict[str, str]
    file: Path
    app: DemoApp | None = None
    envoy: Envoy | None = None

    @property
    def node_id(self) -> str:
        return f"{self.name}.{self.namespace}"

    @property
    def sidecar(self) -> Envoy:
        assert self.envoy is not None, f"{self.name} has no sidecar"
        return self.envoy


class MeshLab:
    """A mesh under test: YAML files in a watched directory, `legation serve` as a real
    process on a loopback address of this test, demo apps, and one Envoy sidecar per
    workload (ADS, SotW or `delta`).

    Every object lives in a file of its own (`service-<name>.yaml`,
    `workload-<name>.yaml`), so a test removes or breaks one by touching one
    file. Writes are atomic (a hidden temp file renamed into place), so the
    watcher never reads half a file.
    """

    def __init__(
        self,
        *,
        root: Path,
        loopback: Loopback,
        envoys: EnvoyFleet,
        apps: AppFleet,
        delta: bool,
        namespace: str = "shop",
    ) -> None:
        self.config_dir = root / "mesh"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.namespace = namespace
        self.delta = delta
        self.loopback = loopback
        self.envoys = envoys
        self.apps = apps
        host = loopback.next()  # ours alone: fixed ports on it survive a restart
        self.control_plane = ControlPlane(
            config_dirs=[self.config_dir],
            workdir=root / "control-plane",
            xds=(host, XDS_PORT),
            admin=(host, ADMIN_PORT),
        )
        self.workloads: dict[str, MeshWorkload] = {}
        # sidecars' Envoy admin port: 0 lets Envoy pick; a fixed one (each workload has its
        # own address) also gives each sidecar its Prometheus listener on 15090
        self.admin_port = 0
        self.runtime: dict[str, Any] = {}  # Envoy runtime of every sidecar (static layer)

    # -- files -----------------------------------------------------------

    def write(self, filename: str, text: str) -> Path:
        path = self.config_dir / filename
        tmp = self.config_dir / f".{filename}.tmp"
        tmp.write_text(text)
        tmp.replace(path)
        return path

    def remove(self, filename: str) -> None:
        (self.config_dir / filename).unlink()

    def service(self, name: str, **kwargs: Any) -> Path:
        """Write `service-<name>.yaml` (see `service_yaml` for the options)."""
        return self.write(f"service-{name}.yaml", service_yaml(name, self.namespace, **kwargs))

    async def backend(
        self, name: str, *, app: str, version: str = "v1", port: int = 9080,
        annotations: dict[str, str] | None = None,
    ) -> MeshWorkload:
        """A workload labelled `app`/`version`, its demo app listening on 127.0.0.1:<any>,
        and the WorkloadEntry mapping target port `port` there."""
        demo = await self.apps.start(name, version=version)
        return self._workload(
            name, {"app": app, "version": version}, app_ports={port: demo.port}, app=demo,
            annotations=annotations,
        )

    def client(self, name: str = "client", *, labels: dict[str, str] | None = None,
               annotations: dict[str, str] | None = None) -> MeshWorkload:
        """A workload no service selects: only the outbound proxy matters."""
        return self._workload(name, labels or {"app": name}, annotations=annotations)

    def _workload(
        self,
        name: str,
        labels: dict[str, str],
        *,
        app_ports: dict[int, int] | None = None,
        app: DemoApp | None = None,
        annotations: dict[str, str] | None = None,
    ) -> MeshWorkload:
        address = self.loopback.next()
        text = workload_entry_yaml(
            name, self.namespace, address=address, labels=labels, app_ports=app_ports,
            annotations=annotations,
        )
        w = MeshWorkload(
            name=name,
            namespace=self.namespace,
            address=address,
            labels=labels,
            file=self.write(f"workload-{name}.yaml", text),
            app=app,
        )
        self.workloads[name] = w
        return w

    # -- processes -------------------------------------------------------

    async def start(self) -> None:
        """The control plane, then a sidecar for every workload, each ready (LIVE)."""
        await self.control_plane.start()
        await asyncio.gather(*(self.start_sidecar(w) for w in self.workloads.values()))

    async def start_sidecar(self, w: MeshWorkload, *, wait: WaitFor = "ready") -> Envoy:
        """Once the control plane knows the workload, start its Envoy."""
        cp = self.control_plane

        async def known() -> bool:
            return await cp.versions(w.node_id) is not None

        await eventually(known, what=f"control plane knowing {w.node_id}")
        boot = sidecar_bootstrap(
            workload=w.name,
            namespace=w.namespace,
            admin_host=w.address,
            xds=cp.xds,
            delta=self.delta,
            admin_port=self.admin_port,
        )
        if self.runtime:  # Envoy runtime settings of every sidecar (a static layer)
            boot["layered_runtime"] = {"layers": [{"name": "static",
                                                   "static_layer": dict(self.runtime)}]}
        w.envoy = await self.envoys.start(w.name, boot, wait=wait)
        return w.envoy

    # -- traffic -----------------------------------------------------------

    async def get(
        self,
        client: MeshWorkload,
        host: str,
        path: str = "/",
        *,
        absolute: bool = False,
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """One request through `client`'s outbound listener: `Host: host` and an
        origin-form path, or (`absolute`) an absolute-form URI as to an HTTP proxy."""
        target = f"http://{host}{path}" if absolute else path
        return await request(
            client.address,
            OUTBOUND_PORT,
            "GET",
            target,
            headers={"host": host, **(headers or {})},
            timeout=timeout,
        )

    async def served_by(
        self, client: MeshWorkload, host: str, n: int, *, absolute: bool = False
    ) -> Counter[str]:
        """`x-served-by` of `n` sequential requests (`<status>` when there is none)."""
        seen: Counter[str] = Counter()
        for _ in range(n):
            resp = await self.get(client, host, absolute=absolute)
            seen[resp.header("x-served-by") or f"<{resp.status}>"] += 1
        return seen

    # -- control plane state -------------------------------------------------

    async def expected(self, node_id: str) -> dict[str, str]:
        """Versions, per non-empty type, of the snapshot the control plane holds for a node."""
        resp = await self.control_plane.admin_json(
            "/debug/config_dump?proxy=" + node_id.replace("~", "%7E")
        )
        return {t: resp["versions"][t] for t, items in resp["resources"].items() if items}

    async def converged(self, nodes: Sequence[str]) -> dict[str, dict[str, str]] | None:
        """{node: {type: version}} when every stream of every node has ACKed every
        non-empty type of its current snapshot; None (falsy) otherwise."""
        proxies = await self.control_plane.proxies()
        out: dict[str, dict[str, str]] = {}
        for node in nodes:
            expected = await self.expected(node)
            streams = [p for p in proxies if p["node"] == node]
            if not streams:
                return None
            for s in streams:
                acked = {t: st["acked_version"] for t, st in s["types"].items()}
                if any(acked.get(t) != v for t, v in expected.items()):
                    return None
            out[node] = expected
        return out

    async def last_ack_at(self, nodes: Sequence[str]) -> float:
        """The latest ACK time (unix) over every type of every stream of `nodes`."""
        proxies = await self.control_plane.proxies()
        return max(
            (
                float(st["acked_at"])
                for p in proxies
                if p["node"] in nodes
                for st in p["types"].values()
            ),
            default=0.0,
        )

    def log_tails(self) -> str:
        cp = self.control_plane
        return f"--- control plane ({cp.log_path})\n{cp.log_tail()}"

