"""Istio policy kinds kept as validated plain data: `PolicyObject`.

VirtualService, DestinationRule, ServiceEntry, Gateway, Sidecar,
PeerAuthentication, AuthorizationPolicy and RequestAuthentication are read by
their own translators; here they are only checked to be well-formed objects
with a mapping `spec`, normalised to JSON-like data (string keys, no YAML
timestamps or sets) and given a content hash so that equality is cheap.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from legation.model import PolicyObject
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta


def convert_policy(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> PolicyObject | None:
    # A missing or null spec is an empty one, as in Kubernetes (an AuthorizationPolicy
    # with an empty spec is meaningful: it allows nothing).
    spec = ctx.mapping(data, "spec", "", problem="spec")
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
