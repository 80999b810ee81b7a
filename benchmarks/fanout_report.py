"""Scenario 2, analysis: turn the clients' response records into latencies, bytes, ratios.

`analyse` reads one change's records (see adsclient.Record); `summarise`
condenses the runs of the scenario into headline figures per (mode, proxies,
change kind) — the median over repeats — and the ratios between runs
measured in the same invocation (delta vs SotW, N vs the smallest N), which
say more than absolute times on a noisy machine.
"""

from __future__ import annotations

import collections
import math
import statistics
from collections.abc import Sequence
from typing import Any

from benchmarks.adsclient import Record
from benchmarks.stats import ms, spread, table
from legation.cache import short_name


def analyse(
    *,
    kind: str,
    index: int,
    t0: float,
    published_at: float,
    server_done_at: float,
    nodes: Sequence[str],
    expected: dict[str, dict[str, str]],
    records: Sequence[Record],
    server_cpu_s: float,
    clients_cpu_s: float,
    machine_busy_s: float,
    translation_s: float,
    debounce_quiet_s: float,
) -> dict[str, Any]:
    by_node: dict[int, list[Record]] = collections.defaultdict(list)
    for rec in records:
        by_node[rec[0]].append(rec)
    received: list[float] = []
    acked: list[float] = []
    per_proxy_bytes: list[int] = []
    responses: collections.Counter[str] = collections.Counter()
    resources: collections.Counter[str] = collections.Counter()
    changed: collections.Counter[str] = collections.Counter()
    by_type: dict[str, list[float]] = collections.defaultdict(list)
    incomplete: list[dict[str, Any]] = []
    for i, node in enumerate(nodes):
        want = {short_name(t): v for t, v in expected[node].items()}
        changed.update(want.keys())
        recs = by_node.get(i, [])
        per_proxy_bytes.append(sum(r[5] for r in recs))
        for r in recs:
            responses[r[1]] += 1
            resources[r[1]] += r[6]
        hits = [_first(recs, t, v) for t, v in want.items()]
        for t, hit in zip(want, hits, strict=True):
            if hit is not None:
                by_type[t].append(hit[3] - t0)
        if want and all(h is not None for h in hits):
            received.append(max(h[3] for h in hits if h is not None) - t0)
            acked.append(max(h[4] for h in hits if h is not None) - t0)
        elif want and len(incomplete) < 3:
            incomplete.append({"node": node, "want": want,
                               "got": [(r[1], r[2], round(r[3] - t0, 3)) for r in recs]})
    n = max(1, len(nodes))
    wall = server_done_at - t0
    return {
        "kind": kind,
        "index": index,
        "proxies": len(nodes),
        "complete": len(acked),  # proxies that received and ACKed every changed type
        "incomplete_examples": incomplete,
        "changed_types_per_proxy": {t: c / n for t, c in sorted(changed.items())},
        "debounce_quiet_s": debounce_quiet_s,
        "published_s": published_at - t0,  # debounce + translation + publication
        "translation_s": translation_s,
        "received_s": spread(received),
        "acked_s": spread(acked),
        "received_by_type_s": {t: spread(v) for t, v in sorted(by_type.items())},
        "acked_after_publish_s": spread([a - (published_at - t0) for a in acked]),
        "bytes_per_proxy": {
            "mean": sum(per_proxy_bytes) / n,
            "min": min(per_proxy_bytes, default=0),
            "max": max(per_proxy_bytes, default=0),
        },
        "responses_per_proxy": {t: c / n for t, c in sorted(responses.items())},
        "resources_per_proxy": {t: c / n for t, c in sorted(resources.items())},
        "cpu": {
            "wall_s": wall,
            "server_s": server_cpu_s,
            "clients_s": clients_cpu_s,
            # busy CPU of everything else on the machine meanwhile (the clients' CPU is
            # read a little after the window closes, so this can come out slightly low)
            "others_s": machine_busy_s - server_cpu_s - clients_cpu_s,
            "server_utilisation": server_cpu_s / wall if wall > 0 else math.nan,
        },
    }


def _first(recs: list[Record], type_short: str, version: str) -> Record | None:
    return next((r for r in recs if r[1] == type_short and r[2] == version), None)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Headline figures per (mode, proxies, kind), and the ratios between runs."""
    headline: dict[str, dict[str, Any]] = {}
    for run in runs:
        spec = run.get("spec", {})
        for kind in ("endpoint", "cluster"):
            changes = [c for c in run.get("changes", []) if c["kind"] == kind]
            measured = [c for c in changes if "error" not in c]
            if measured:
                h = _condense(measured)
                h["all_complete"] = h["all_complete"] and len(measured) == len(changes)
                headline[f"{spec['mode']}/{spec['proxies']}/{kind}"] = h
    return {"headline": headline, "ratios": _ratios(headline)}


def _condense(changes: list[dict[str, Any]]) -> dict[str, Any]:
    def med(path: tuple[str, ...]) -> float:
        values = []
        for c in changes:
            v: Any = c
            for key in path:
                v = v[key]
            values.append(float(v))
        return statistics.median(values)

    return {
        "repeats": len(changes),
        "all_complete": all(c["complete"] == c["proxies"] for c in changes),
        "published_s": med(("published_s",)),
        "acked_p50_s": med(("acked_s", "p50")),
        "acked_p90_s": med(("acked_s", "p90")),
        "acked_max_s": med(("acked_s", "max")),
        "received_max_s": med(("received_s", "max")),
        "bytes_per_proxy": med(("bytes_per_proxy", "mean")),
        "server_utilisation": med(("cpu", "server_utilisation")),
        "server_cpu_s": med(("cpu", "server_s")),
        "clients_cpu_s": med(("cpu", "clients_s")),
        "others_cpu_s": med(("cpu", "others_s")),
    }


def _ratios(headline: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """delta vs SotW at each fleet size; each fleet size vs the smallest, per mode."""
    keys = [k.split("/") for k in headline]
    sizes = sorted({int(p) for _, p, _ in keys})
    modes: list[dict[str, Any]] = []
    fleet: list[dict[str, Any]] = []
    for mode, proxies, kind in keys:
        h = headline[f"{mode}/{proxies}/{kind}"]
        sotw = headline.get(f"sotw/{proxies}/{kind}")
        if mode == "delta" and sotw:
            modes.append({"proxies": int(proxies), "change": kind,
                          "last_ack": _div(h["acked_max_s"], sotw["acked_max_s"]),
                          "bytes": _div(h["bytes_per_proxy"], sotw["bytes_per_proxy"])})
        base = headline.get(f"{mode}/{sizes[0]}/{kind}")
        if int(proxies) != sizes[0] and base:
            fleet.append({
                "mode": mode, "change": kind, "proxies": int(proxies), "vs": sizes[0],
                "last_ack": _div(h["acked_max_s"], base["acked_max_s"]),
                "published": _div(h["published_s"], base["published_s"]),
                "after_publish": _div(h["acked_max_s"] - h["published_s"],
                                      base["acked_max_s"] - base["published_s"]),
            })
    return {"delta_vs_sotw": modes, "fleet_size": fleet}


def _div(a: float, b: float) -> float:
    return a / b if b else math.nan


def summary_table(result: dict[str, Any]) -> str:
    summary = result["summary"]
    rows = []
    for key, h in summary["headline"].items():
        mode, proxies, kind = key.split("/")
        rows.append([
            mode, proxies, kind, "yes" if h["all_complete"] else "NO",
            ms(h["published_s"]), ms(h["acked_p50_s"]), ms(h["acked_p90_s"]),
            ms(h["acked_max_s"]), f"{h['bytes_per_proxy']:.0f}",
            f"{h['server_utilisation']:.2f}",
            f"{h['server_cpu_s']:.2f}/{h['clients_cpu_s']:.2f}/{h['others_cpu_s']:.2f}",
        ])  # fmt: skip
    quiet = result["config"]["debounce_quiet_s"] * 1000
    parts = [table(
        f"Fan-out: store change -> ACK by every proxy (median of repeats; includes the "
        f"{quiet:.0f} ms debounce)",
        ["mode", "proxies", "change", "all", "published", "ack p50", "ack p90", "LAST ack",
         "bytes/proxy", "srv cpu/wall", "cpu s srv/cli/other"], rows)]
    parts.append(_floor_table(summary))
    parts.append(_connect_table(result["runs"]))
    parts.append(_storm_table(result["runs"]))
    ratios = summary["ratios"]
    if ratios["delta_vs_sotw"]:
        parts.append(table("Ratios, delta / SotW (same invocation)",
                           ["proxies", "change", "LAST ack", "bytes"],
                           [[r["proxies"], r["change"], f"{r['last_ack']:.2f}",
                             f"{r['bytes']:.2f}"] for r in ratios["delta_vs_sotw"]]))
    if ratios["fleet_size"]:
        parts.append(table("Ratios, larger fleet / smallest fleet (same mesh, same invocation)",
                           ["mode", "change", "fleets", "LAST ack", "published", "after publish"],
                           [[r["mode"], r["change"], f"{r['proxies']}/{r['vs']}",
                             f"{r['last_ack']:.2f}", f"{r['published']:.2f}",
                             f"{r['after_publish']:.2f}"] for r in ratios["fleet_size"]]))
    return "\n\n".join(parts)


def _connect_table(runs: list[dict[str, Any]]) -> str:
    rows = []
    for run in runs:
        if "connect" not in run:
            continue
        spec, c = run["spec"], run["connect"]
        rows.append([
            spec["mode"], spec["proxies"], f"{c['ready']}", ms(c["wall_s"]),
            f"{c['server_cpu_s']:.2f}", f"{c['clients_cpu_s']:.2f}", f"{c['others_cpu_s']:.2f}",
            f"{run['rss_before_bytes'] / 2**20:.0f} MiB",
            f"{run['rss_connected_bytes'] / 2**20:.0f} MiB",
            f"{run.get('rss_settled_bytes', run['rss_connected_bytes']) / 2**20:.0f} MiB",
            f"{run['rss_per_proxy_bytes'] / 1024:.0f} KiB",
        ])  # fmt: skip
    return table("Fan-out: connecting the fleet (every stream ACKed CDS, EDS, LDS, RDS)",
                 ["mode", "proxies", "ready", "wall", "srv cpu s", "cli cpu s", "other cpu s",
                  "server RSS", "just connected", "settled (2 s)", "per proxy"], rows)


def _storm_table(runs: list[dict[str, Any]]) -> str:
    rows = [
        [run["spec"]["mode"], run["spec"]["proxies"], f"{s['resynced']}", ms(s["wall_s"]),
         f"{s['server_cpu_s']:.2f}", f"{s['others_cpu_s']:.2f}"]
        for run in runs if (s := run.get("storm"))
    ]
    return table("Fan-out: reconnect storm (every proxy re-dials at once, stating what it holds)",
                 ["mode", "proxies", "resynced", "wall", "srv cpu s", "other cpu s"], rows)


def _floor_table(summary: dict[str, Any]) -> str:
    """The bare grpc.aio fan-out of one small response, beside Legation's endpoint change."""
    rows = []
    for f in summary.get("floor", []):
        h = summary["headline"].get(f"{f['mode']}/{f['proxies']}/endpoint")
        ours = h["acked_max_s"] if h else float("nan")
        cpu = h["server_cpu_s"] if h else float("nan")
        rows.append([f["mode"], f["proxies"], ms(f["last_ack_s"]), f"{f['server_cpu_s']:.2f}",
                     ms(ours), f"{cpu:.2f}", f"{ours / f['last_ack_s']:.1f}x",
                     f"{cpu / f['server_cpu_s']:.1f}x"])
    return table("Fan-out floor: a bare grpc.aio server pushing one CLA to every stream "
                 "(same clients, same run) vs Legation's endpoint change",
                 ["mode", "proxies", "floor LAST ack", "floor cpu s", "ours LAST ack",
                  "ours cpu s", "ack ratio", "cpu ratio"], rows)
