"""Istio kinds Legation reads but does not implement yet, kept as plain data.

Kinds of Gateway API not implemented yet are checked to be
well-formed objects with a mapping `spec`, normalised to JSON-like data
(string keys, no YAML timestamps or sets) and given a content hash so that
equality is cheap. None of them changes what a proxy receives yet, so each
one gets a warning that says so (never accepted in silence).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from legation.model import PolicyObject, Severity
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta

# What a user relying on each kind would miss.
NOT_IMPLEMENTED: dict[str, str] = {
    "TCPRoute": "gateways get no TCP listeners from it.",
    "TLSRoute": "gateways get no TLS passthrough listeners from it.",
    "UDPRoute": "Envoy sidecars and gateways here carry no UDP.",
    "BackendTLSPolicy": "gateways dial its targets without TLS origination from it.",
    "ListenerSet": "its listeners are not added to their parent Gateway.",
}


def convert_policy(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> PolicyObject | None:
    # A missing or null spec is an empty one, as in Kubernetes (an AuthorizationPolicy
    # with an empty spec is meaningful: it allows nothing).
    spec = ctx.mapping(data, "spec", "", problem="spec")
    effect = NOT_IMPLEMENTED.get(ctx.ref.kind)
    if effect is not None:
        ctx.report("kind", "object.kind-not-implemented",
                   f"{ctx.ref.kind} {meta.namespace}/{meta.name} is read but not implemented "
                   f"yet: {effect} It has no effect.", Severity.WARNING)
    plain = jsonable(spec)
    return PolicyObject(
        ref=ctx.ref,
        api_version=str(data.get("apiVersion", "")),
        kind=ctx.ref.kind,
        name=meta.name,
        namespace=meta.namespace,
        spec=plain,
        spec_hash=spec_hash(plain),
    )


def jsonable(value: Any) -> Any:
    """YAML data as JSON would carry it: string keys, ISO dates, base64 binary, lists."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(str(v) for v in value)
    if isinstance(value, datetime.date):  # datetime is a date subclass
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def spec_hash(spec: Mapping[str, Any]) -> str:
    """sha256 of canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
