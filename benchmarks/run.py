"""`python -m benchmarks.run --output FILE [--quick] [--only NAME]`: run, write JSON, print tables.

Scenarios (see each module's docstring): `translation`, `fanout`, `envoy`,
`scoping`, `telemetry`.
`--quick` shrinks every scenario to seconds (the smoke test uses it). The
JSON file holds every measurement; stdout gets one table per scenario.
Progress goes to stderr. No threshold is asserted anywhere: the numbers are
the result.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime
import json
import math
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import abuse, envoys, fanout, fanout_report, scoping, telemetry, translation
from benchmarks.stats import (
    cpu_seconds_with_children,
    load_average,
    machine,
    machine_busy_seconds,
)
from legation.logs import configure

SCENARIOS = ("translation", "fanout", "envoy", "scoping", "telemetry", "abuse")
SCHEMA = 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    parser.add_argument("--output", required=True, type=Path, help="where to write the JSON")
    parser.add_argument("--quick", action="store_true", help="shrink every scenario (smoke test)")
    parser.add_argument("--only", choices=SCENARIOS, action="append",
                        help="run only this scenario (repeatable)")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="client processes for the fan-out scenario (default 2)")
    parser.add_argument("--profile-dir", default="",
                        help="write cProfile stats of each fan-out server process here")
    parser.add_argument("--services", type=int, default=0,
                        help="fan-out mesh size (default: 1,000 services, 2 endpoints each)")
    parser.add_argument("--endpoints", type=int, default=0,
                        help="endpoints per service in the fan-out mesh (default 2)")
    parser.add_argument("--proxies", type=int, action="append",
                        help="connected proxies per fan-out run (repeatable; default 1000)")
    parser.add_argument("--modes", choices=("sotw", "delta"), action="append",
                        help="fan-out protocol variants (repeatable; default both)")
    parser.add_argument("--changes", choices=("endpoint", "cluster"), action="append",
                        help="fan-out change kinds to measure (repeatable; default both)")
    parser.add_argument("--repeats", type=int, default=0,
                        help="changes of each kind per fan-out run (default 5)")
    return parser.parse_args(argv)


def _git() -> dict[str, Any]:
    """The commit measured, and whether the tree had local changes (read-only git calls)."""
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], capture_output=True, text=True, check=False,
                              timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    try:
        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "", "dirty": None}


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    chosen = args.only or list(SCENARIOS)
    started, busy, ours = time.monotonic(), machine_busy_seconds(), cpu_seconds_with_children()
    out: dict[str, Any] = {
        "schema": SCHEMA,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "machine": machine(),
        "load_average_at_start": load_average(),
        "git": _git(),
        "scenarios": {},
    }
    if "translation" in chosen:
        _progress("translation")
        out["scenarios"]["translation"] = translation.run(
            translation.TranslationConfig.make(quick=args.quick))
    if "fanout" in chosen:
        config = fanout.FanoutConfig.make(
            quick=args.quick, client_procs=args.client_procs, profile_dir=args.profile_dir,
            services=args.services, endpoints=args.endpoints,
            proxies=tuple(args.proxies or ()), modes=tuple(args.modes or ()),
            repeats=args.repeats, kinds=tuple(args.changes or ()))
        out["scenarios"]["fanout"] = fanout.run(config, _progress)
    if "scoping" in chosen:
        _progress("scoping")
        out["scenarios"]["scoping"] = scoping.run(scoping.ScopingConfig.make(quick=args.quick))
    if "telemetry" in chosen:
        _progress("telemetry")
        out["scenarios"]["telemetry"] = telemetry.run(
            telemetry.TelemetryConfig.make(quick=args.quick))
    if "abuse" in chosen:
        _progress("abuse")
        out["scenarios"]["abuse"] = dataclasses.asdict(abuse.run())
    if "envoy" in chosen:
        _progress("envoy")
        out["scenarios"]["envoy"] = asyncio.run(envoys.run(envoys.EnvoyConfig.make(
            quick=args.quick)))
    out["elapsed_s"] = time.monotonic() - started
    out["load_average_at_end"] = load_average()
    busy, ours = machine_busy_seconds() - busy, cpu_seconds_with_children() - ours
    out["cpu"] = {
        "ours_s": ours,  # this process and every process it started
        "machine_busy_s": busy,
        "others_s": busy - ours,  # anything else running meanwhile: noise in the timings
        "machine_busy_cores": busy / out["elapsed_s"],  # 2.0: both cores busy all along
    }
    return out


def tables(result: dict[str, Any]) -> str:
    parts = []
    scenarios = result["scenarios"]
    if "translation" in scenarios:
        parts.append(translation.summary(scenarios["translation"]))
    if "fanout" in scenarios:
        parts.append(fanout_report.summary_table(scenarios["fanout"]))
        errors = [r["error"] for r in scenarios["fanout"]["runs"] if "error" in r]
        parts.extend(f"  fan-out error: {e}" for e in errors)
    if "scoping" in scenarios:
        parts.append(scoping.summary(scenarios["scoping"]))
    if "telemetry" in scenarios:
        parts.append(telemetry.summary(scenarios["telemetry"]))
    if "envoy" in scenarios:
        parts.append(envoys.summary(scenarios["envoy"]))
    if "abuse" in scenarios:
        parts.append(abuse.summary(scenarios["abuse"]))
    m = result["machine"]
    load, cpu = result["load_average_at_start"][0], result["cpu"]
    parts.append(f"{m['cpus']} CPUs ({m['cpu_model']}), Python {m['python']}; "
                 f"{result['elapsed_s']:.0f} s in all; load average {load:.2f} at the start; "
                 f"CPU: ours {cpu['ours_s']:.0f} s, other processes {cpu['others_s']:.0f} s")
    return "\n\n".join(parts)


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure(level="warning")
    result = run(args)
    args.output.write_text(json.dumps(_json_safe(result), indent=2, sort_keys=True) + "\n")
    print(tables(result))
    print(f"\nwritten to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
