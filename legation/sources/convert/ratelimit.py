"""The `ratelimit.legation.io/*` annotations (model/ratelimit.py), checked when read.

A limit is ``<requests>/<duration>`` (``100/1s``, ``4/60s``: Go durations, as
Istio's); a bad one is an error at the annotation and the object keeps its last
good version.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from legation.model.ratelimit import (
    DESCRIPTOR_FORMS,
    DESCRIPTORS_ANNOTATION,
    DOMAIN_ANNOTATION,
    GLOBAL_ANNOTATION,
    LOCAL_ANNOTATION,
    ROUTES_ANNOTATION,
    GlobalRateLimit,
    LocalRateLimit,
    valid_descriptor,
)
from legation.sources.convert.duration import DurationError, parse_go_duration
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta

_LIMIT = "<requests>/<duration>, e.g. 100/1s or 4/60s"
_MAX_TOKENS = 2**32 - 1


def _path(annotation: str) -> str:
    return f"metadata.annotations[{annotation}]"


def parse_limit(ctx: Ctx, text: str, path: str) -> LocalRateLimit | None:
    count, sep, period = text.strip().partition("/")
    try:
        seconds = parse_go_duration(period.strip()) / 1e9 if sep else 0.0
    except DurationError:
        seconds = 0.0
    if not (count.strip().isdigit() and 0 < int(count) <= _MAX_TOKENS and seconds >= 0.001):
        ctx.invalid(path, "rate-limit", text, _LIMIT)
        return None
    return LocalRateLimit(tokens=int(count), fill_s=seconds)


def workload_limits(ctx: Ctx, meta: Meta
                    ) -> tuple[LocalRateLimit | None, GlobalRateLimit | None]:
    """A workload's inbound limits, from its annotations."""
    notes = meta.annotations
    local = None
    if LOCAL_ANNOTATION in notes:
        local = parse_limit(ctx, notes[LOCAL_ANNOTATION], _path(LOCAL_ANNOTATION))
    provider = notes.get(GLOBAL_ANNOTATION, "").strip()
    for key in (DESCRIPTORS_ANNOTATION, DOMAIN_ANNOTATION):
        if key in notes and not provider:
            ctx.error(_path(key), "rate-limit-without-provider",
                      f"{key} needs {GLOBAL_ANNOTATION} (the MeshConfig envoyRateLimit "
                      "provider that decides); expected both.")
    if not provider:
        return local, None
    descriptors = tuple(d.strip() for d in
                        notes.get(DESCRIPTORS_ANNOTATION, "remote_address").split(",")
                        if d.strip())
    bad = [d for d in descriptors if not valid_descriptor(d)]
    if bad or not descriptors:
        ctx.invalid(_path(DESCRIPTORS_ANNOTATION), "rate-limit-descriptors",
                    notes.get(DESCRIPTORS_ANNOTATION, ""),
                    f"a comma-separated list of {DESCRIPTOR_FORMS}")
        return local, None
    domain = notes.get(DOMAIN_ANNOTATION, "").strip() or meta.namespace
    return local, GlobalRateLimit(provider=provider, domain=domain, descriptors=descriptors)


def route_limits(ctx: Ctx, meta: Meta) -> dict[str, LocalRateLimit]:
    """A VirtualService's per-route limits: route name -> limit."""
    raw = meta.annotations.get(ROUTES_ANNOTATION)
    if raw is None:
        return {}
    path = _path(ROUTES_ANNOTATION)
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError:
        data = None
    if not isinstance(data, Mapping) or not data:
        ctx.invalid(path, "rate-limit-routes", raw,
                    'a mapping of route name to limit, e.g. {"reviews": "10/1s"}')
        return {}
    out = {}
    for name, text in data.items():
        limit = parse_limit(ctx, str(text), f"{path}.{name}")
        if limit is not None:
            out[str(name)] = limit
    return out
