"""The demo's terminal view: pure functions from a `Frame` to lines of text.

On a terminal the runner redraws the full frame every second; into a pipe it
prints one compact `status` line per second, the live changes as they
happen, and the full frame once at the end, followed by one `summary` line
of key=value pairs that scripts (and the demo's own test) can read.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from legation.demo.convergence import ProxyView

BAR = 20  # characters of a 100% bar
Key = tuple[str, str]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyRow:
    workload: str
    delta: bool
    view: ProxyView
    in_mesh: bool  # its WorkloadEntry exists right now


@dataclass(slots=True, kw_only=True)
class ChangeEvent:
    at: float  # seconds since traffic started
    title: str
    result: str = "…"


@dataclass(frozen=True, slots=True, kw_only=True)
class Frame:
    elapsed: float
    source: str
    traffic: str  # what is sent where, one line
    requests: int
    errors: Counter[str]
    last_error: str
    rate: float
    total: Counter[Key]
    window: Counter[Key]
    proxies: tuple[ProxyRow, ...]
    startup: float | None  # seconds from sidecar launch to every proxy ACKed
    nacks: int
    events: tuple[ChangeEvent, ...]
    diagnostics: tuple[str, ...] = ()  # the control plane's findings, formatted
    footer: str = ""  # where to look further (admin URLs, logs)
    identities: tuple[tuple[str, str], ...] = ()  # (workload, SPIFFE ID it presented)
    canary: tuple[tuple[Key, int], ...] = ()  # what requests with x-canary: true reached
    ingress: str = ""  # what the HTTPS request through the ingress gateway got
    external: str = ""  # what the request to a ServiceEntry's host got
    grpc_target: str = ""  # the gRPC service both gRPC callers call (host:port)
    # (key, caller, who answered or the gRPC status) per gRPC caller
    grpc: tuple[tuple[str, str, Counter[str]], ...] = ()


def clock(seconds: float) -> str:
    m, s = divmod(max(seconds, 0.0), 60)
    return f"{int(m):02d}:{s:04.1f}"


def render(f: Frame) -> list[str]:
    lines = [
        f"legation demo · {f.source} · {clock(f.elapsed)} · Ctrl-C stops everything",
        f"traffic  {f.traffic}",
        f"         {f.requests} requests · {_errors(f)} · {f.rate:.0f} req/s",
        "",
        *_destinations(f),
        *_canary(f),
        *_grpc(f),
        "",
        *_config(f),
        *_diagnostics(f),
        *_events(f),
        *(["", f.footer] if f.footer else []),
    ]
    return [line.rstrip() for line in lines]


def _errors(f: Frame) -> str:
    n = sum(f.errors.values())
    if not n:
        return "0 errors"
    kinds = ", ".join(f"{k} x{c}" for k, c in f.errors.most_common(3))
    return f"{n} errors ({kinds}; last: {f.last_error[:80]})"


def _destinations(f: Frame) -> list[str]:
    lines = [f"  {'service':<16} {'workload':<14} {'total':>6} {'share':>7} {'last 5s':>8}"]
    services = sorted({s for s, _ in f.total})
    for service in services:
        workloads = sorted(w for s, w in f.total if s == service)
        total = sum(f.total[(service, w)] for w in workloads)
        recent = sum(f.window[(service, w)] for w in workloads)
        for i, w in enumerate(workloads):
            share = f.total[(service, w)] / total if total else 0.0
            now = f.window[(service, w)] / recent if recent else 0.0
            bar = "█" * round(now * BAR)
            label = service if i == 0 else ""
            identity = dict(f.identities).get(w, "")
            lines.append(
                f"  {label:<16} {w:<14} {f.total[(service, w)]:>6} {share:>7.1%} {now:>8.1%}  {bar}"
                + (f"  {identity}" if identity else "")
            )
    if not services:
        lines.append("  (no answers yet)")
    return lines


def _canary(f: Frame) -> list[str]:
    """Where requests with `x-canary: true` went (the header route of the shop)."""
    if not f.canary:
        return []
    reached = ", ".join(f"{w} x{n}" for (s, w), n in f.canary if s.startswith("catalog"))
    return [f"  x-canary: true -> {reached or '(no catalog call yet)'}"]


def _grpc(f: Frame) -> list[str]:
    """Who answered each gRPC caller: one VirtualService steers the proxyless client and
    the caller through a sidecar alike."""
    if not f.grpc_target:
        return []
    lines = [f"  gRPC {f.grpc_target}: the same routes, with and without Envoy"]
    for _, who, counts in f.grpc:
        lines.append(f"    {who:<22} {_shares(counts)}")
    return lines


def _shares(counts: Counter[str]) -> str:
    total = sum(counts.values())
    if not total:
        return "no answer yet"
    return " ".join(f"{k} {n / total:.0%}" for k, n in sorted(counts.items())) + f" of {total}"


def _config(f: Frame) -> list[str]:
    live = [p for p in f.proxies if p.in_mesh]
    synced = sum(1 for p in live if p.view.in_sync)
    startup = f"all ACKed {f.startup:.2f}s after the sidecars started" if f.startup else "starting"
    types = sorted({t for p in f.proxies for t in p.view.acked})
    w = max([14, *(len(p.workload) + 1 for p in f.proxies)])
    lines = [
        f"config   {synced}/{len(live)} proxies in sync · {startup} · {f.nacks} NACKs",
        f"  {'proxy':<{w}} {'xDS':<10} " + " ".join(f"{t:<9}" for t in types),
    ]
    for p in f.proxies:
        mode = "ADS delta" if p.delta else "ADS sotw"
        if not p.in_mesh:
            state = ("not in the mesh: it keeps its last config for a grace period, then its "
                     "stream is refused (NOT_FOUND)")
        elif not p.view.stream:
            state = "connecting…"
        else:
            versions = " ".join(f"{p.view.acked.get(t, '-')[:8]:<9}" for t in types)
            state = versions + ("" if p.view.in_sync else " (syncing)")
        lines.append(f"  {p.workload:<{w}} {mode:<10} {state}")
        if p.view.nack:
            lines.append(f"  {'':<{w}} NACK: {p.view.nack[:100]}")
    return lines


def _diagnostics(f: Frame) -> list[str]:
    if not f.diagnostics:
        return []
    more = len(f.diagnostics) - 3
    return (
        ["", f"config diagnostics ({len(f.diagnostics)}; the rest of the mesh is served)"]
        + [f"  {d[:140]}" for d in f.diagnostics[:3]]
        + ([f"  … and {more} more: legation analyze DIR"] if more > 0 else [])
    )


def _events(f: Frame) -> list[str]:
    if not f.events:
        return []
    return ["", "live config changes"] + [
        f"  {clock(e.at)}  {e.title} → {e.result}" for e in f.events
    ]


def status_line(f: Frame) -> str:
    """One line per second for a pipe: time, load, split per service, sync."""
    parts = []
    for service in sorted({s for s, _ in f.window}):
        recent = sum(n for (s, _), n in f.window.items() if s == service)
        split = " ".join(
            f"{w} {n / recent:.0%}" for (s, w), n in sorted(f.window.items()) if s == service
        )
        parts.append(f"{service}: {split}")
    live = [p for p in f.proxies if p.in_mesh]
    synced = sum(1 for p in live if p.view.in_sync)
    return (
        f"status {clock(f.elapsed)}  {f.requests} req  {sum(f.errors.values())} errors  "
        + "  |  ".join(parts)
        + f"  |  {synced}/{len(live)} proxies in sync"
    )


def summary_line(f: Frame) -> str:
    """`summary key=value ...`: totals per workload, errors, sync, NACKs."""
    live = [p for p in f.proxies if p.in_mesh]
    by_workload: Counter[str] = Counter()
    for (_, workload), n in f.total.items():
        by_workload[workload] += n
    pairs = [
        ("requests", str(f.requests)),
        ("errors", str(sum(f.errors.values()))),
        *((w, str(n)) for w, n in sorted(by_workload.items())),
        ("in_sync", f"{sum(1 for p in live if p.view.in_sync)}/{len(live)}"),
        ("startup_s", f"{f.startup:.3f}" if f.startup else "-"),
        ("nacks", str(f.nacks)),
        ("canary", ",".join(f"{w}:{n}" for (s, w), n in f.canary if s.startswith("catalog"))
         or "-"),
        *((f"identity.{w}", i) for w, i in f.identities),
        ("ingress", f.ingress.split(" ", 1)[0] if f.ingress else "-"),
        ("external", f.external.split(" ", 1)[0] if f.external else "-"),
        *((f"grpc.{key}", ",".join(f"{k}:{n}" for k, n in sorted(counts.items())) or "-")
          for key, _, counts in f.grpc),
    ]
    return "summary " + " ".join(f"{k}={v}" for k, v in pairs)
