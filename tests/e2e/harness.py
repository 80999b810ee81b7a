"""End-to-end test harness: real Envoy processes, demo workloads, loopback addresses.

Process management lives in `legation.demo.envoy` (the demo uses it too);
this module adds what tests need on top: per-process loopback address
allocation, fleets that always clean up, a bounded `eventually`, and
bootstrap builders for static and sidecar Envoys; and `MeshLab`, a mesh under
test: manifests written to a watched directory, `legation serve` as a real
process (`legation.demo.controlplane`), apps and sidecars. The fixtures that
hand these out are in conftest.py.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from legation.bootstrap import build_bootstrap
from legation.demo.app import DemoApp, Target
from legation.demo.controlplane import ControlPlane, ControlPlaneError
from legation.demo.envoy import Envoy, EnvoyError, WaitFor
from legation.demo.http import HttpError, HttpResponse, request

__all__ = [
    "AppFleet",
    "ControlPlane",
    "ControlPlaneError",
    "DemoApp",
    "Envoy",
    "EnvoyError",
    "EnvoyFleet",
    "HttpResponse",
    "Loopback",
    "MeshLab",
    "MeshWorkload",
    "Target",
    "eventually",
    "free_port",
    "request",
    "service_yaml",
    "sidecar_bootstrap",
    "static_http_bootstrap",
    "workload_entry_yaml",
]

T = TypeVar("T")

RESERVATION_PORT = 65534  # outside Linux's default ephemeral range (32768-60999)


class Loopback:
    """Distinct 127.B.y.z addresses for one test process.

    B is derived from the pid (100-227), so concurrent pytest runs start far
    apart; each handed-out address is also reserved by binding (not listening
    on) `RESERVATION_PORT` on it, so two processes that meet in the same block
    skip each other's addresses instead of sharing them.
    """

    def __init__(self, *, pid: int | None = None) -> None:
        self._block = 100 + (os.getpid() if pid is None else pid) % 128
        self._next = 0
        self._held: list[socket.socket] = []

    def next(self) -> str:
        while self._next < 254 * 256:
            y, z = divmod(self._next, 254)
            self._next += 1
            address = f"127.{self._block}.{y}.{z + 1}"
            if self._reserve(address):
                return address
        raise RuntimeError(f"loopback block 127.{self._block}.0.0/16 exhausted")

    def many(self, n: int) -> tuple[str, ...]:
        return tuple(self.next() for _ in range(n))

    def _reserve(self, address: str) -> bool:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((address, RESERVATION_PORT))
        except OSError as e:
            sock.close()
            if e.errno == errno.EADDRINUSE:
                return False
            raise
        self._held.append(sock)
        return True

    def close(self) -> None:
        for sock in self._held:
            sock.close()
        self._held.clear()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (racy by nature: prefer port 0 where possible)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    what: str = "condition",
) -> T:
    """Poll `check` until it returns a truthy value (returned) or `timeout` passes.

    Exceptions from `check` count as "not yet"; the last one (or the last
    falsy value) is reported in the AssertionError raised on timeout.
    """
    last: Any = None
    try:
        async with asyncio.timeout(timeout):
            while True:
                try:
                    value = await check()
                except (
                    AssertionError,
                    OSError,
                    TimeoutError,
                    EnvoyError,
                    KeyError,
                    HttpError,
                    ControlPlaneError,
                ) as e:
                    last = e
                else:
                    if value:
                        return value
                    last = value
                await asyncio.sleep(interval)
    except TimeoutError:
        raise AssertionError(f"{what} not reached within {timeout}s; last: {last!r}") from None


class EnvoyFleet:
    """Envoys started by one test; `stop_all()` stops and reaps every one."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.envoys: list[Envoy] = []

    async def start(
        self,
        name: str,
        bootstrap: dict[str, Any] | Path,
        *,
        wait: WaitFor = "ready",
        timeout: float = 20.0,
        log_level: str = "warn",
        component_log_level: str | None = None,
    ) -> Envoy:
        envoy = Envoy(
            name=name,
            bootstrap=bootstrap,
            workdir=self.workdir,
            log_level=log_level,
            component_log_level=component_log_level,
        )
        self.envoys.append(envoy)
        await envoy.start(wait=wait, timeout=timeout)
        return envoy

    async def stop_all(self) -> None:
        await asyncio.gather(*(e.stop() for e in self.envoys), return_exceptions=True)

    def log_tails(self, lines: int = 40) -> str:
        return "\n".join(f"--- {e!r}\n{e.log_tail(lines)}" for e in self.envoys)


class AppFleet:
    """Demo workloads started in-process by one test."""

    def __init__(self) -> None:
        self.apps: list[DemoApp] = []

    async def start(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        version: str | None = None,
        proxy: tuple[str, int] | None = None,
        calls: Sequence[str] = (),
    ) -> DemoApp:
        app = DemoApp(
            name=name,
            host=host,
            port=port,
            version=version,
            proxy=proxy,
            calls=tuple(Target.parse(c) for c in calls),
        )
        await app.start()
        self.apps.append(app)
        return app

    async def stop_all(self) -> None:
        await asyncio.gather(*(a.stop() for a in self.apps), return_exceptions=True)


def sidecar_bootstrap(
    *,
    workload: str,
    namespace: str,
    admin_host: str,
    xds: tuple[str, int],
    delta: bool = False,
    node_cluster: str | None = None,
) -> dict[str, Any]:
    """A mesh sidecar's bootstrap: node `<workload>.<namespace>`, admin on port 0 (Envoy picks)."""
    return build_bootstrap(
        node_id=f"{workload}.{namespace}",
        node_cluster=node_cluster or namespace,  # as `legation bootstrap` writes it
        xds_host=xds[0],
        xds_port=xds[1],
        admin_host=admin_host,
        admin_port=0,
        delta=delta,
    )


_HCM = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def static_http_bootstrap(
    *,
    listen: tuple[str, int],
    upstream: tuple[str, int],
    admin_host: str,
    cluster: str = "app",
) -> dict[str, Any]:
    """A control-plane-free Envoy: one HTTP listener routing everything to one upstream."""
    hcm = {
        "@type": _HCM,
        "stat_prefix": "ingress",
        "route_config": {
            "name": "local",
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [{"match": {"prefix": "/"}, "route": {"cluster": cluster}}],
                }
            ],
        },
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {"@type": _ROUTER}}],
    }
    return {
        "node": {"id": "static", "cluster": "static"},
        "admin": {"address": _addr(admin_host, 0)},
        "static_resources": {
            "listeners": [
                {
                    "name": "http",
                    "address": _addr(*listen),
                    "filter_chains": [
                        {
                            "filters": [
                                {
                                    "name": "envoy.filters.network.http_connection_manager",
                                    "typed_config": hcm,
                                }
                            ]
                        }
                    ],
                }
            ],
            "clusters": [
                {
                    "name": cluster,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": cluster,
                        "endpoints": [
                            {"lb_endpoints": [{"endpoint": {"address": _addr(*upstream)}}]}
                        ],
                    },
                }
            ],
        },
    }


def _addr(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


# -- a mesh under test: manifests, a control plane process, sidecars ---------

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
) -> str:
    """A WorkloadEntry; `app_ports` maps a target port to where its app listens (127.0.0.1)."""
    meta: dict[str, Any] = {"name": name, "namespace": namespace}
    if app_ports:
        mapping = ",".join(f"{t}={a}" for t, a in sorted(app_ports.items()))
        meta["annotations"] = {"sidecar.legation.io/app-ports": mapping}
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
        self, name: str, *, app: str, version: str = "v1", port: int = 9080
    ) -> MeshWorkload:
        """A workload labelled `app`/`version`, its demo app listening on 127.0.0.1:<any>,
        and the WorkloadEntry mapping target port `port` there."""
        demo = await self.apps.start(name, version=version)
        return self._workload(
            name, {"app": app, "version": version}, app_ports={port: demo.port}, app=demo
        )

    def client(self, name: str = "client", *, labels: dict[str, str] | None = None) -> MeshWorkload:
        """A workload no service selects: only the outbound proxy matters."""
        return self._workload(name, labels or {"app": name})

    def _workload(
        self,
        name: str,
        labels: dict[str, str],
        *,
        app_ports: dict[int, int] | None = None,
        app: DemoApp | None = None,
    ) -> MeshWorkload:
        address = self.loopback.next()
        text = workload_entry_yaml(
            name, self.namespace, address=address, labels=labels, app_ports=app_ports
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
        )
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
    ) -> HttpResponse:
        """One request through `client`'s outbound listener: `Host: host` and an
        origin-form path, or (`absolute`) an absolute-form URI as to an HTTP proxy."""
        target = f"http://{host}{path}" if absolute else path
        return await request(
            client.address,
            OUTBOUND_PORT,
            "GET",
            target,
            headers={"host": host},
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
