"""DestinationRule `loadBalancer` -> `LoadBalancer`: simple, consistent hash, locality, warmup.

Rules from istio/api destination_rule.proto and Istio's validation: one of
`simple` / `consistentHash`; exactly one hash key; `ringHash` or `maglev`
(Maglev's table size "must be prime number less than 5000011", which Envoy
enforces too); at most one of `distribute` / `failover` (+`failoverPriority`);
each `distribute.from` sends 100% in total; failover is between regions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.destination import (
    ConsistentHash,
    HashAlgorithm,
    HashCookie,
    HashKey,
    LoadBalancer,
    LocalityDistribute,
    LocalityFailover,
    LocalityLbSetting,
    SimpleLb,
)
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, describe
from legation.sources.convert.yamlload import child_path

MAGLEV_MAX_TABLE = 5000011
_LB_FIELDS = ("simple", "consistentHash", "localityLbSetting", "warmupDurationSecs", "warmup")


def load_balancer(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> LoadBalancer | None:
    if m is None:
        return None
    istio.check_fields(ctx, m, path, _LB_FIELDS, what="load balancer settings")
    if m.get("simple") is not None and m.get("consistentHash") is not None:
        ctx.error(path, "load-balancer-invalid",
                  "sets both simple and consistentHash; expected one of them.")
    simple = istio.enum_value(ctx, m, "simple", path, [s.value for s in SimpleLb])
    if simple == SimpleLb.LEAST_CONN:
        ctx.warn(child_path(path, "simple"), "field-deprecated",
                 "LEAST_CONN is deprecated; it means LEAST_REQUEST, which is used.")
    if simple == SimpleLb.PASSTHROUGH:
        ctx.warn(child_path(path, "simple"), "field-unsupported",
                 "PASSTHROUGH forwards to the connection's original destination, which an "
                 "explicit-mode sidecar (an HTTP proxy) does not have; LEAST_REQUEST is used.")
    warmup = istio.duration_ms(ctx, m, "warmupDurationSecs", path)
    section = istio.section(ctx, m, "warmup", path)
    if section is not None:
        wpath = child_path(path, "warmup")
        istio.check_fields(ctx, section, wpath, ("duration",), what="warmup settings",
                           unsupported={"minimumPercent": "only duration is implemented",
                                        "aggression": "only duration is implemented"})
        warmup = istio.duration_ms(ctx, section, "duration", wpath)
    return LoadBalancer(
        simple=SimpleLb(simple) if simple else None,
        consistent_hash=_hash(ctx, istio.section(ctx, m, "consistentHash", path),
                              child_path(path, "consistentHash")),
        locality=_locality(ctx, istio.section(ctx, m, "localityLbSetting", path),
                           child_path(path, "localityLbSetting")),
        warmup_ms=warmup,
    )


def _hash(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> ConsistentHash | None:
    if m is None:
        return None
    istio.check_fields(ctx, m, path, (*[k.value for k in HashKey], "ringHash", "maglev"),
                       what="consistent hash settings",
                       deprecated={"minimumRingSize": "use ringHash: {minimumRingSize: <n>}"})
    keys = [k for k in HashKey if m.get(k.value) not in (None, False)]
    if len(keys) != 1:
        ctx.error(path, "hash-key-invalid",
                  f"expected exactly one hash key (httpHeaderName, httpCookie, useSourceIp or "
                  f"httpQueryParameterName), found {len(keys)}.")
    if m.get("ringHash") is not None and m.get("maglev") is not None:
        ctx.error(path, "hash-algorithm-invalid", "sets both ringHash and maglev; expected one.")
    ring_size = istio.integer(ctx, m, "minimumRingSize", path, high=2**63 - 1) or 0
    ring = istio.section(ctx, m, "ringHash", path)
    if ring is not None:
        rpath = child_path(path, "ringHash")
        istio.check_fields(ctx, ring, rpath, ("minimumRingSize",), what="ring hash settings")
        ring_size = istio.integer(ctx, ring, "minimumRingSize", rpath, high=8_388_608) or 0
    table = 0
    maglev = istio.section(ctx, m, "maglev", path)
    if maglev is not None:
        mpath = child_path(path, "maglev")
        istio.check_fields(ctx, maglev, mpath, ("tableSize",), what="maglev settings")
        table = istio.integer(ctx, maglev, "tableSize", mpath, high=2**63 - 1) or 0
        if table and (table >= MAGLEV_MAX_TABLE or not _is_prime(table)):
            ctx.invalid(child_path(mpath, "tableSize"), "table-size", table,
                        f"a prime number below {MAGLEV_MAX_TABLE}, e.g. 65537")
            table = 0
    return ConsistentHash(
        key=keys[0] if keys else HashKey.SOURCE_IP,
        header_name=istio.string(ctx, m, "httpHeaderName", path),
        cookie=_cookie(ctx, istio.section(ctx, m, "httpCookie", path),
                       child_path(path, "httpCookie")),
        query_parameter=istio.string(ctx, m, "httpQueryParameterName", path),
        algorithm=HashAlgorithm.MAGLEV if maglev is not None else HashAlgorithm.RING_HASH,
        minimum_ring_size=ring_size,
        table_size=table,
    )


def _cookie(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> HashCookie | None:
    if m is None:
        return None
    istio.check_fields(ctx, m, path, ("name", "path", "ttl"), what="a hash cookie")
    return HashCookie(
        name=istio.string(ctx, m, "name", path, required=True, expected="the cookie name"),
        path=istio.string(ctx, m, "path", path),
        ttl_ms=istio.duration_ms(ctx, m, "ttl", path, allow_zero=True),
    )


def _locality(ctx: Ctx, m: Mapping[str, Any] | None, path: str) -> LocalityLbSetting | None:
    if m is None:
        return None
    istio.check_fields(ctx, m, path, ("distribute", "failover", "failoverPriority", "enabled"),
                       what="locality load balancer settings")
    distribute = []
    for dpath, raw in ctx.items(m, "distribute", path, problem="distribute"):
        d = ctx.as_mapping(raw, dpath, problem="distribute")
        if d is None:
            continue
        istio.check_fields(ctx, d, dpath, ("from", "to"), what="a locality distribution")
        source = _locality_pattern(ctx, d, "from", dpath)
        to = _weights(ctx, d, dpath)
        distribute.append(LocalityDistribute(source=source, to=to))
    failover = []
    for fpath, raw in ctx.items(m, "failover", path, problem="failover"):
        f = ctx.as_mapping(raw, fpath, problem="failover")
        if f is None:
            continue
        istio.check_fields(ctx, f, fpath, ("from", "to"), what="a locality failover")
        src = istio.string(ctx, f, "from", fpath, required=True, expected="a region")
        dst = istio.string(ctx, f, "to", fpath, required=True, expected="a region")
        for key, value in (("from", src), ("to", dst)):
            if "/" in value or "*" in value:
                ctx.invalid(child_path(fpath, key), "failover", value,
                            "a region name (failover is between regions)")
        if src and src == dst:
            ctx.error(fpath, "failover-invalid", f"fails over from {src!r} to itself; expected "
                      "two different regions.")
        failover.append(LocalityFailover(source=src, to=dst))
    priority = istio.strings(ctx, m, "failoverPriority", path)
    if distribute and (failover or priority):
        ctx.error(path, "locality-invalid", "sets distribute together with failover; expected "
                  "one of them.")
    return LocalityLbSetting(distribute=tuple(distribute), failover=tuple(failover),
                             failover_priority=priority,
                             enabled=istio.boolean(ctx, m, "enabled", path))


def _weights(ctx: Ctx, d: Mapping[str, Any], path: str) -> tuple[tuple[str, int], ...]:
    raw = istio.section(ctx, d, "to", path)
    tpath = child_path(path, "to")
    if raw is None:
        ctx.missing(tpath, "distribute", "a mapping of locality to weight")
        return ()
    out = []
    for key, weight in raw.items():
        wpath = child_path(tpath, str(key))
        if not _locality_ok(str(key)):
            ctx.invalid(wpath, "locality", key, "region/zone/subzone, '*' only at the end")
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
            ctx.error(wpath, "distribute-invalid",
                      f"found {describe(weight)}; expected a weight from 0 to 100.")
            continue
        out.append((str(key), weight))
    total = sum(w for _, w in out)
    if out and total != 100:
        ctx.error(tpath, "distribute-invalid",
                  f"the weights add up to {total}; expected 100 (the percentage of traffic "
                  "each locality gets).")
    return tuple(sorted(out))


def _locality_pattern(ctx: Ctx, d: Mapping[str, Any], key: str, path: str) -> str:
    value = istio.string(ctx, d, key, path, required=True, expected="region/zone/subzone")
    if value and not _locality_ok(value):
        ctx.invalid(child_path(path, key), "locality", value,
                    "region/zone/subzone, '*' only at the end")
    return value


def _locality_ok(value: str) -> bool:
    parts = value.split("/")
    if not value or len(parts) > 3:
        return False
    return all(p and ("*" not in p or (p == "*" and i == len(parts) - 1))
               for i, p in enumerate(parts))


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    i = 2
    while i * i <= n:
        if n % i == 0:
            return False
        i += 1
    return True
