"""`legation demo` (what `make demo` runs): the control plane, the shop's apps and one
stock Envoy sidecar per workload, traffic through them, and a live view.

Everything runs on this machine and is started by this process: the control
plane in-process (`legation.app.App`, xDS on 127.0.0.1:15010, admin on
127.0.0.1:15014) on a copy of the mesh in a temporary directory; the demo
apps in-process; the Envoys as child processes, each run by `legation proxy` (the
command users run: it writes the bootstrap from the mesh and drains Envoy on stop),
half on state-of-the-world ADS and half on delta. Traffic goes through the client
workload's sidecar. After a few seconds one live change is made to the copy
of the mesh and undone (see `plan.py`), and the view shows how long each
took to reach every proxy. A proxyless gRPC client in the mesh (plan.py) gets
its certificate files from an in-process `CertAgent` over the TLS xDS listener
(127.0.0.1:15012) and calls the gRPC service beside a caller through the
client's sidecar (grpcapps.py). `--duration` stops after that long (counted from
the first request); otherwise Ctrl-C does. Either way every process started
here is stopped and reaped before returning.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TextIO

import structlog

from legation import logs
from legation.agent.certfiles import AgentTarget, CertAgent
from legation.app import App
from legation.bootstrap import PROMETHEUS_PORT, build_grpc_bootstrap
from legation.demo.app import DemoApp, Target
from legation.demo.collector import COLLECTOR, TraceCollector
from legation.demo.convergence import ProxyView, all_in_sync, last_ack, proxy_view
from legation.demo.envoy import Envoy, EnvoyError
from legation.demo.grpcapps import GrpcApp, ProxylessCaller, SidecarCaller
from legation.demo.plan import (
    ENVOY_ADMIN_PORT,
    OUTBOUND_PORT,
    AppSpec,
    Change,
    GrpcDemo,
    Plan,
    PlanError,
    SidecarSpec,
    make_plan,
)
from legation.demo.ports import Need, PortError, check_free, needed_ports
from legation.demo.probe import (
    external_title,
    ingress_title,
    probe_calls,
    run_external,
    run_ingress,
    run_probe,
)
from legation.demo.probe import title as probe_title
from legation.demo.traffic import Load
from legation.demo.view import ChangeEvent, Frame, ProxyRow, render, status_line, summary_line
from legation.mesh.store import MeshStore
from legation.settings import HostPort, Settings
from legation.sources.files import SourceError, load_dirs
from legation.translators import names

XDS = HostPort(host="127.0.0.1", port=15010)
ADMIN = HostPort(host="127.0.0.1", port=15014)
XDS_TLS = HostPort(host="127.0.0.1", port=15012)  # the gRPC agent fetches certificates here
CONVERGE_TIMEOUT_S = 15.0
_POLL_S = 0.01
_CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end of the screen


class DemoError(Exception):
    """The demo cannot run; the message is one line for the user."""


def find_config_dir(given: Path | None) -> Path:
    """`given`, else examples/shop of the checkout this code runs from, else of the cwd."""
    if given is not None:
        if not given.is_dir():
            raise DemoError(f"--config-dir {given}: not a readable directory")
        return given
    here = Path(__file__).resolve().parents[2] / "examples" / "shop"
    for candidate in (here, Path.cwd() / "examples" / "shop"):
        if candidate.is_dir():
            return candidate
    raise DemoError("cannot find examples/shop: run from the repository root or give --config-dir")


def run_demo(config_dir: Path | None, duration: float | None) -> int:
    try:
        source = find_config_dir(config_dir)
        with tempfile.TemporaryDirectory(prefix="legation-demo-") as tmp:
            work = Path(tmp)
            mesh_dir = work / "mesh"
            shutil.copytree(source, mesh_dir, ignore=shutil.ignore_patterns(".*"))
            with (work / "legation.log").open("w") as log:
                _log_to(log)
                demo = Demo(source=source, mesh_dir=mesh_dir, work=work, out=sys.stdout)
                return asyncio.run(demo.run(duration))
    except (DemoError, PlanError, PortError, SourceError, EnvoyError, OSError) as e:
        print(f"legation: error: {e}", file=sys.stderr)
        return 2


def _log_to(stream: TextIO) -> None:
    """The control plane's logs go to a file: the terminal belongs to the view."""
    logs.configure(fmt="json", level="info")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=stream))
    logging.basicConfig(level=logging.WARNING, stream=stream, force=True)


class Demo:
    def __init__(self, *, source: Path, mesh_dir: Path, work: Path, out: TextIO) -> None:
        self.source = source
        self.mesh_dir = mesh_dir
        self.work = work
        self.out = out
        self.tty = out.isatty()
        self._closed = False  # the reader of `out` went away
        loaded = load_dirs([mesh_dir])
        store = MeshStore()
        store.replace_source("demo", loaded.objects, loaded.diagnostics)
        self.plan: Plan = make_plan(store.snapshot(), mesh_dir)
        self.events: list[ChangeEvent] = []
        self.startup: float | None = None
        self.envoys: list[Envoy] = []
        self.t0 = 0.0  # monotonic time of the first request
        self.ingress = ""  # what the HTTPS request through the ingress gateway got
        self.external = ""  # what the request to the ServiceEntry's host got
        self.traces: TraceCollector | None = None  # spans the sidecars export (telemetry.yaml)
        # (key, caller, its calls) of the gRPC service (plan.grpc)
        self.grpc_callers: list[tuple[str, str, ProxylessCaller | SidecarCaller]] = []

    # -- the whole run -------------------------------------------------------

    async def run(self, duration: float | None) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        check_free(self.ports())
        self._intro(duration)
        settings = Settings(
            config_dirs=(self.mesh_dir,),
            xds_address=XDS,
            admin_address=ADMIN,
            # A CA of its own: certificates, mTLS, AuthorizationPolicy (security.yaml). The
            # sidecars use the plaintext listener on loopback, so keys may go there too; the
            # gRPC agent uses the TLS listener with its workload's credential.
            ca_dir=self.work / "ca",
            insecure_plaintext_secrets=True,
            xds_tls_address=XDS_TLS if self.plan.grpc is not None else None,
        )
        async with contextlib.AsyncExitStack() as stack:
            self.traces = await stack.enter_async_context(TraceCollector())
            app = await stack.enter_async_context(App(settings))
            await self._start_apps(stack)
            launched = time.time()
            await self._start_envoys(stack)
            load = Load(proxy=(self.plan.client.address, OUTBOUND_PORT), targets=self.plan.entries)
            self.t0 = time.monotonic()
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(load.run()),
                    tg.create_task(self._watch_startup(app, launched)),
                    tg.create_task(self._show(app, load)),
                    tg.create_task(self._live_change(app, duration)),
                    tg.create_task(self._probe()),
                    *([tg.create_task(self._grpc(app, self.plan.grpc))]
                      if self.plan.grpc is not None else []),
                ]
                await self._until(stop, duration)
                for task in tasks:
                    task.cancel()
            frame = self._frame(app, load)
        self._finish(frame)
        return 0

    async def _until(self, stop: asyncio.Event, duration: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(duration):
                await stop.wait()

    def _finish(self, frame: Frame) -> None:
        left = [e for e in self.envoys if e.running]
        self._say(
            (_CLEAR if self.tty else "\n")
            + "\n".join(render(dataclasses.replace(frame, footer="")))
            + f"\nstopped: {len(self.envoys)} Envoys ({len(left)} still running), "
            f"{len(self.plan.apps)} apps, the control plane\n"
            + self._where_to_look()
            + summary_line(frame)
            + "\n"
        )

    def _where_to_look(self) -> str:
        """What to open next time, while it runs; and one access log line (Telemetry)."""
        c = self.plan.client
        lines = [f"where to look while it runs: legation proxy-status --admin-address {ADMIN}"
                 f" · metrics http://{c.address}:{PROMETHEUS_PORT}/stats/prometheus"]
        envoy = next((e for e in self.envoys if e.name == c.workload), None)
        if envoy is not None and envoy.log_path.exists():
            # a request completed (one in flight at shutdown is logged as 0 DC)
            logged = [x for x in envoy.log_path.read_text(errors="replace").splitlines()
                      if x.startswith("[") and '"GET ' in x and '" 200 ' in x]
            if logged:
                lines.append(f"access log ({c.workload}'s sidecar): {logged[-1]}")
        trace = self.traces.widest_trace() if self.traces is not None else None
        if trace is not None:
            host, port = self.traces.address  # type: ignore[union-attr]
            lines.append(f"trace {trace[0]}: spans from {', '.join(trace[1])} "
                         f"(received by the demo's OTLP collector {host}:{port})")
        return "\n".join(lines) + "\n"

    def _say(self, text: str) -> None:
        """Write to the terminal (or pipe); a reader that went away (`| head`) is fine."""
        if self._closed:
            return
        try:
            self.out.write(text)
            self.out.flush()
        except BrokenPipeError:
            self._closed = True

    def ports(self) -> list[Need]:
        """Every address and port this demo binds (checked before anything starts)."""
        tls = [(*_pair(XDS_TLS), "the control plane's TLS xDS port (the gRPC agent)")]
        return [*needed_ports(self.plan, xds=_pair(XDS), admin=_pair(ADMIN)),
                (*COLLECTOR, "the demo's trace collector (OTLP/gRPC)"),
                *(tls if self.plan.grpc is not None else [])]

    # -- starting things -----------------------------------------------------

    async def _start_apps(self, stack: contextlib.AsyncExitStack) -> None:
        for spec in self.plan.apps:
            if spec.grpc:
                grpc_app = GrpcApp(name=spec.name, host=spec.host, port=spec.port)
                await grpc_app.start()
                stack.push_async_callback(grpc_app.stop)
                continue
            app = DemoApp(
                name=spec.name,
                host=spec.host,
                port=spec.port,
                proxy=spec.proxy,
                calls=tuple(Target.parse(c) for c in spec.calls),
            )
            await app.start()
            stack.push_async_callback(app.stop)

    async def _start_envoys(self, stack: contextlib.AsyncExitStack) -> None:
        """One `legation proxy` per sidecar and gateway: the command users run, writing
        each bootstrap from the mesh and draining Envoy on stop."""
        envoy_dir = self.work / "envoy"
        self.envoys = [
            Envoy(name=s.workload, workdir=envoy_dir, new_session=True,
                  launcher=_proxy_command(s, self.mesh_dir, envoy_dir / s.workload))
            for s in self.plan.sidecars
        ]
        stack.push_async_callback(self._stop_envoys)
        await asyncio.gather(*(e.start(wait="ready", timeout=30.0) for e in self.envoys))

    async def _stop_envoys(self) -> None:
        await asyncio.gather(*(e.stop() for e in self.envoys), return_exceptions=True)

    async def _grpc(self, app: App, grpc: GrpcDemo) -> None:
        """The proxyless client (its certificate files from an agent, then its calls) and
        the caller through the client's sidecar, side by side on one gRPC service."""
        assert app.security is not None  # the demo runs a CA
        tokens = app.security.tokens
        certs = self.work / "grpc" / grpc.workload
        node = names.istio_node_id(grpc.workload, grpc.namespace, ip=grpc.address,
                                   node_type=names.PROXYLESS_NODE_TYPE)
        target = AgentTarget(
            address=f"{XDS_TLS.host}:{XDS_TLS.port}", node_id=node, node_cluster=grpc.namespace,
            token=lambda: tokens.mint(grpc.namespace, grpc.service_account, grpc.workload),
            ca_pem=app.security.ca.trust_bundle().pem)
        written = asyncio.Event()
        boot = self.work / "grpc" / f"{grpc.workload}.bootstrap.json"
        proxyless = ProxylessCaller(bootstrap=str(boot), target=grpc.target)
        sidecar = SidecarCaller(proxy=(self.plan.client.address, OUTBOUND_PORT),
                                target=grpc.target)
        self.grpc_callers = [("proxyless", f"proxyless {grpc.workload}", proxyless),
                             ("sidecar", f"{self.plan.client.workload}'s sidecar", sidecar)]
        async with asyncio.TaskGroup() as tg:
            tg.create_task(CertAgent(target, certs, on_written=lambda _: written.set()).run())
            tg.create_task(sidecar.run())
            await written.wait()
            boot.write_text(json.dumps(build_grpc_bootstrap(
                node_id=node, namespace=grpc.namespace, labels=dict(grpc.labels),
                xds_host=XDS.host, xds_port=XDS.port, cert_dir=str(certs))))
            tg.create_task(proxyless.run())

    # -- convergence ---------------------------------------------------------

    def _views(self, app: App) -> dict[str, ProxyView]:
        return {s.node_id: proxy_view(s.node_id, app.cache, app.status) for s in self.plan.sidecars}

    def _in_mesh(self, app: App) -> set[str]:
        mesh = app.store.snapshot()
        return {s.node_id for s in self.plan.sidecars if mesh.workload(s.namespace, s.workload)}

    async def _watch_startup(self, app: App, launched: float) -> None:
        while True:
            views = self._views(app)
            if all_in_sync(views.values()):
                self.startup = last_ack(views.values()) - launched
                return
            await asyncio.sleep(_POLL_S)

    async def _converge(self, app: App, written: float, since: float) -> str:
        """Wait until every proxy of the mesh holds a snapshot built after the change and
        has ACKed it; say how long after the file write the last ACK came."""
        try:
            async with asyncio.timeout(CONVERGE_TIMEOUT_S):
                while True:
                    live = self._in_mesh(app)
                    views = [v for n, v in self._views(app).items() if n in live]
                    if all_in_sync(views, since=since):
                        took = max(last_ack(views) - written, 0.0)
                        n = len(views)
                        return f"{n}/{n} proxies in sync {took:.2f}s after the write"
                    await asyncio.sleep(_POLL_S)
        except TimeoutError:
            return f"not every proxy in sync after {CONVERGE_TIMEOUT_S:.0f}s"

    # -- the live change -------------------------------------------------------

    async def _live_change(self, app: App, duration: float | None) -> None:
        change = self.plan.change
        if change is None:
            return
        first, second = _change_times(duration)
        await self._at(first)
        await self._apply(app, change.title, change, undo=False)
        await self._at(second)
        await self._apply(app, change.undo_title, change, undo=True)

    async def _at(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, self.t0 + seconds - time.monotonic()))

    async def _apply(self, app: App, title: str, change: Change, *, undo: bool) -> None:
        event = ChangeEvent(at=time.monotonic() - self.t0, title=title)
        self.events.append(event)
        since, written = time.monotonic(), time.time()
        _write(change, undo=undo)
        event.result = await self._converge(app, written, since)
        self._announce(event)

    def _announce(self, event: ChangeEvent) -> None:
        if not self.tty:
            line = f"change {event.at:5.1f}s  {event.title} → {event.result}"
            self._say(line + "\n")

    async def _probe(self) -> None:
        """The AuthorizationPolicy at work: a denied and an allowed POST (probe.py)."""
        await self._at(2.0)
        for call in probe_calls(self.plan):
            event = ChangeEvent(at=time.monotonic() - self.t0, title=probe_title(call))
            event.result = await run_probe(call)
            self.events.append(event)
            if not self.tty:
                self._say(f"security {event.at:5.1f}s  {event.title} → {event.result}\n")
        if self.plan.ingress is not None:
            event = ChangeEvent(at=time.monotonic() - self.t0,
                                title=ingress_title(self.plan.ingress))
            event.result = await run_ingress(self.plan.ingress)
            self.ingress = event.result
            self.events.append(event)
            if not self.tty:
                self._say(f"ingress  {event.at:5.1f}s  {event.title} → {event.result}\n")
        if self.plan.external is not None:
            event = ChangeEvent(at=time.monotonic() - self.t0,
                                title=external_title(self.plan.external, self.plan.client))
            event.result = await run_external(self.plan.external, self.plan.client)
            self.external = event.result
            self.events.append(event)
            if not self.tty:
                self._say(f"external {event.at:5.1f}s  {event.title} → {event.result}\n")

    # -- the view --------------------------------------------------------------

    async def _show(self, app: App, load: Load) -> None:
        while True:
            await asyncio.sleep(1.0)
            frame = self._frame(app, load)
            if self.tty:
                self._say(_CLEAR + "\n".join(render(frame)) + "\n")
            else:
                self._say(status_line(frame) + "\n")

    def _frame(self, app: App, load: Load) -> Frame:
        now = time.monotonic()
        views = self._views(app)
        live = self._in_mesh(app)
        tally = load.tally
        return Frame(
            elapsed=now - self.t0,
            source=_display(self.source),
            traffic=self._traffic_text(),
            requests=tally.requests,
            errors=tally.errors.copy(),
            last_error=tally.last_error,
            rate=tally.rate(now=now),
            total=tally.total.copy(),
            window=tally.window(now=now),
            proxies=tuple(
                ProxyRow(
                    workload=s.workload,
                    delta=s.delta,
                    view=views[s.node_id],
                    in_mesh=s.node_id in live,
                )
                for s in self.plan.sidecars
            ),
            startup=self.startup,
            nacks=int(sum(_nack_samples(app))),
            events=tuple(self.events),
            # warnings and errors: what needs the user's attention (infos: legation analyze)
            diagnostics=tuple(d.format() for d in app.diagnostics() if d.severity != "info"),
            identities=tuple(sorted(tally.identities.items())),
            canary=tuple(sorted(tally.canary.items())),
            ingress=self.ingress,
            external=self.external,
            grpc_target=self.plan.grpc.target if self.plan.grpc is not None else "",
            grpc=tuple((key, who, caller.tally.counts.copy())
                       for key, who, caller in self.grpc_callers),
            footer=(
                f"look closer: legation proxy-status --admin-address {ADMIN} (proxy-config, "
                f"changes) · metrics http://{self.plan.client.address}:{PROMETHEUS_PORT}"
                f"/stats/prometheus (each sidecar) · Envoy admin on each sidecar's address, "
                f"port {ENVOY_ADMIN_PORT} · logs in {self.work}"
            ),
        )

    def _traffic_text(self) -> str:
        c = self.plan.client
        targets = ", ".join(f"http://{t}/shop" for t in self.plan.entries)
        return f"GET {targets} through {c.workload}'s sidecar ({c.address}:{OUTBOUND_PORT})"

    # -- intro -------------------------------------------------------------------

    def _intro(self, duration: float | None) -> None:
        p = self.plan
        lines = [
            f"Legation demo: the mesh of {_display(self.source)}, from a working copy in "
            f"{self.mesh_dir} (edit it to change the mesh live)",
            f"  control plane  in this process: xDS {XDS}, admin http://{ADMIN}/debug/proxies "
            f"(log {self.work / 'legation.log'})",
            f"  sidecars       {len(p.sidecars)} stock Envoys, each run by `legation proxy` "
            f"(logs in {self.work / 'envoy'}):",
            *(
                f"                   {s.workload:<12} {s.address:<12} "
                f"ADS {'delta' if s.delta else 'state-of-the-world':<19} "
                f"admin http://{s.address}:{ENVOY_ADMIN_PORT}"
                for s in p.sidecars
            ),
            "  apps           " + ", ".join(_app_text(a) for a in p.apps),
            f"  traffic        20 req/s: {self._traffic_text()}",
        ]
        if p.grpc is not None:
            lines.append(
                f"  gRPC           {p.grpc.target} called by {p.grpc.workload}, a proxyless "
                f"gRPC client (xds:///, mTLS from `legation grpc-agent`'s files), and through "
                f"{p.client.workload}'s sidecar")
        if p.change is not None:
            first, second = _change_times(duration)
            lines.append(
                f"  live change    at {first:.0f}s {p.change.title}; "
                f"at {second:.0f}s {p.change.undo_title}"
            )
        lines.append(f"Stops after {duration:g}s." if duration else "Ctrl-C stops everything.")
        self._say("\n".join(lines) + "\n\n")


def _change_times(duration: float | None) -> tuple[float, float]:
    """When (seconds into the traffic) the live change is made and undone."""
    return (duration * 0.35, duration * 0.6) if duration else (5.0, 10.0)


def _nack_samples(app: App) -> list[float]:
    return [
        s.value
        for metric in app.metrics.registry.collect()
        if metric.name == "legation_xds_nacks"
        for s in metric.samples
        if s.name == "legation_xds_nacks_total"
    ]


def _app_text(a: AppSpec) -> str:
    via = f" (calls {' and '.join(a.calls)} through its sidecar)" if a.calls else ""
    return f"{a.name} {a.host}:{a.port}{' gRPC' if a.grpc else ''}{via}"


def _pair(hp: HostPort) -> tuple[str, int]:
    return hp.host, hp.port


def _proxy_command(spec: SidecarSpec, mesh_dir: Path, workdir: Path) -> list[str]:
    """`legation proxy` for `spec`: its bootstrap from the demo's mesh, plaintext xDS on
    loopback, Envoy's admin on the workload address, a short drain on stop."""
    return [
        sys.executable, "-m", "legation", "proxy", "--config-dir", str(mesh_dir),
        "--workload", spec.workload, "--namespace", spec.namespace,
        "--xds-address", f"{XDS.host}:{XDS.port}",
        "--admin-address", f"{spec.address}:{ENVOY_ADMIN_PORT}",
        *(["--delta"] if spec.delta else []),
        "--workdir", str(workdir), "--drain-duration", "1s",
    ]


def _write(change: Change, *, undo: bool) -> None:
    """Apply (or undo) a change atomically: a hidden temp file renamed into place."""
    text = change.original if undo else change.changed
    if text is None:
        change.path.unlink()
        return
    tmp = change.path.with_name(f".{change.path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(change.path)


def _display(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)
