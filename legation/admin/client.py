"""`legation proxy-status`, `proxy-config` and `changes`: what each proxy holds and how
each change reached the proxies, from a running `legation serve` (its admin API), as
istioctl shows it for istiod, and further.

- `proxy-status`: one row per connected stream: node id, stream kind, per type
  SYNCED / NOT SENT / STALE / NACKED (admin `/debug/syncz`), the control-plane
  replica that answers; `proxy-status PROXY`: that proxy's types with the
  versions sent, ACKed and expected, and every NACK with the proxy's message.
- `proxy-config {clusters,listeners,routes,endpoints,secrets,all} PROXY`: the
  resources the proxy is sent (admin `/debug/config_dump`, private keys
  redacted there), as a table (istioctl's columns), JSON or YAML.
  `bootstrap` shows what `legation bootstrap` writes for the proxy (admin
  `/debug/bootstrap`, its credential left out): the control plane never sees a
  proxy's own bootstrap, so this is what the proxy would be given.
- `changes`: the last changes (admin `/debug/changes`): what changed, how many
  proxies it affected, how many ACKed, the time to the last ACK, NACKs;
  `changes ID`: per proxy, its ACK time or what it still waits for, and NACKs.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse
from collections.abc import Callable, Sequence
from typing import Any

import yaml


class AdminUnreachable(Exception):
    """The admin API cannot be reached; the message is one line for the user."""


TYPES = ("cds", "eds", "lds", "rds", "vhds", "sds")
CONFIG_KINDS = {"clusters": "cds", "endpoints": "eds", "listeners": "lds", "routes": "rds",
                "secrets": "sds"}


Address = tuple[str, int]  # the admin API's host and port


def fetch(address: Address, path: str) -> tuple[int, str]:
    host, port = address
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except OSError as e:
        raise AdminUnreachable(f"--admin-address {host}:{port}: cannot reach the admin API: "
                               f"{e}") from e
    finally:
        conn.close()


def proxy_status(address: Address, proxy: str | None) -> tuple[int, str]:
    """(exit code, text): the table, or one proxy's details."""
    query = f"?proxy={urllib.parse.quote(proxy)}" if proxy else ""
    status, body = fetch(address, "/debug/syncz" + query)
    if status != 200:
        return 1, f"legation: {body.strip()} (HTTP {status})"
    rows: list[dict[str, Any]] = json.loads(body)
    if proxy:
        return 0, _details(rows)
    header = ["NAME", "STREAM", *(t.upper() for t in TYPES), "REPLICA"]
    table = [[r["node"], r["stream"], *(r["types"].get(t, {}).get("status", "-")
                                        for t in TYPES), r["replica"]] for r in rows]
    return 0, render_table(header, table)


def _details(rows: list[dict[str, Any]]) -> str:
    lines = []
    for r in rows:
        lines.append(f"{r['node']} ({r['stream']} from {r['peer'] or '?'}, "
                     f"replica {r['replica']})")
        for t in TYPES:
            st = r["types"].get(t)
            if st is None:
                continue
            lines.append(f"  {t.upper():5} {st['status']:9} sent {st['sent'] or '-'} "
                         f"acked {st['acked'] or '-'} expected {st['expected'] or '-'}")
            nack = st.get("nack")
            if nack:
                lines.append(f"        NACK of version {nack['version']}: {nack['message']}")
    return "\n".join(lines)


def proxy_config(address: Address, kind: str, proxy: str, output: str) -> tuple[int, str]:
    if kind == "bootstrap":
        return _bootstrap(address, proxy, output)
    status, body = fetch(address, "/debug/config_dump?proxy=" + urllib.parse.quote(proxy))
    if status != 200:
        return 1, f"legation: {body.strip()} (HTTP {status})"
    dump = json.loads(body)
    shorts = list(CONFIG_KINDS.values()) if kind == "all" else [CONFIG_KINDS[kind]]
    picked = {s: dump["resources"].get(s, []) for s in shorts}
    if output == "json":
        return 0, json.dumps(picked if kind == "all" else picked[shorts[0]], indent=2)
    if output == "yaml":
        return 0, yaml.safe_dump(picked if kind == "all" else picked[shorts[0]],
                                 sort_keys=False).rstrip()
    parts = []
    for s in shorts:
        header, rows = _TABLES[s](picked[s])
        parts.append(render_table(header, rows))
    return 0, "\n\n".join(parts)


def _clusters(items: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for item in items:
        c = item["resource"]
        parts = c["name"].split("|")
        direction, port, subset, host = parts if len(parts) == 4 else ("", "", "", c["name"])
        kind = c.get("type") or (c.get("cluster_type") or {}).get("name", "").rsplit(".", 1)[-1]
        rows.append([host or c["name"], port or "-", subset or "-", direction or "-",
                     kind or "-"])
    return ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"], rows


def _listeners(items: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for item in items:
        lst = item["resource"]
        sa = lst.get("address", {}).get("socket_address", {})
        chains = lst.get("filter_chains", [])
        rows.append([lst["name"], sa.get("address", "-"), str(sa.get("port_value", "-")),
                     str(len(chains))])
    return ["NAME", "ADDRESS", "PORT", "CHAINS"], rows


def _routes(items: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for item in items:
        rc = item["resource"]
        for vh in rc.get("virtual_hosts", []):
            for r in vh.get("routes", []):
                match = r.get("match", {})
                where = (match.get("path") or match.get("prefix")
                         or (match.get("safe_regex") or {}).get("regex") or "CONNECT")
                action = r.get("route", {})
                target = action.get("cluster") or (
                    "weighted" if "weighted_clusters" in action else
                    f"{r.get('direct_response', {}).get('status', '')} (direct)"
                    if "direct_response" in r else "redirect" if "redirect" in r else "-")
                rows.append([rc["name"], vh["name"], ",".join(vh.get("domains", [])[:3]) +
                             ("..." if len(vh.get("domains", [])) > 3 else ""), where, target])
    return ["NAME", "VIRTUAL HOST", "DOMAINS", "MATCH", "CLUSTER"], rows


def _endpoints(items: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for item in items:
        cla = item["resource"]
        for group in cla.get("endpoints", []):
            for lb in group.get("lb_endpoints", []):
                sa = lb.get("endpoint", {}).get("address", {}).get("socket_address", {})
                rows.append([f"{sa.get('address')}:{sa.get('port_value')}",
                             lb.get("health_status", "HEALTHY"), cla["cluster_name"]])
    return ["ENDPOINT", "STATUS", "CLUSTER"], rows


def _secrets(items: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    rows = []
    for item in items:
        sec = item["resource"]
        kind = "Cert Chain" if "tls_certificate" in sec else (
            "CA" if "validation_context" in sec else "-")
        rows.append([sec["name"], kind, item["version"]])
    return ["RESOURCE NAME", "TYPE", "VERSION"], rows


_TABLES: dict[str, Callable[[list[dict[str, Any]]], tuple[list[str], list[list[str]]]]] = {
    "cds": _clusters, "lds": _listeners, "rds": _routes, "eds": _endpoints, "sds": _secrets,
}


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(line, widths, strict=False))
                     .rstrip() for line in (header, *rows))


def changes(address: Address, change_id: int | None) -> tuple[int, str]:
    status, body = fetch(address, "/debug/changes")
    if status != 200:
        return 1, f"legation: {body.strip()} (HTTP {status})"
    items: list[dict[str, Any]] = json.loads(body)
    if change_id is not None:
        found = [c for c in items if c["id"] == change_id]
        if not found:
            return 1, f"legation: change {change_id} is not among the last {len(items)}"
        return 0, _change_details(found[0])
    header = ["ID", "OBJECTS", "PROXIES", "ACKED", "CONVERGED", "NACKS"]
    rows = []
    for c in items:
        proxies = c["proxies"]
        acked = sum(1 for p in proxies.values() if p["acked_after_ms"] is not None)
        nacks = sum(len(p["nacks"]) for p in proxies.values())
        objects = ", ".join(c["objects"][:2]) + (
            f" (+{len(c['objects']) - 2})" if len(c["objects"]) > 2 else "")
        after = c["converged_after_ms"]
        rows.append([str(c["id"]), objects or "-", str(len(proxies)), str(acked),
                     ("yes" if after is None else f"yes, {after:.0f} ms") if c["converged"]
                     else "no", str(nacks)])
    return 0, render_table(header, rows)


def _change_details(c: dict[str, Any]) -> str:
    after = c["converged_after_ms"]
    lines = [f"change {c['id']}: {', '.join(c['objects']) or '(no object: a reconnect)'}",
             "converged: " + (("yes" + (f", {after:.0f} ms after it was seen"
                                        if after is not None else ""))
                              if c["converged"] else "no")]
    for node, p in c["proxies"].items():
        state = (f"ACKed after {p['acked_after_ms']:.0f} ms" if p["acked_after_ms"] is not None
                 else "waiting for " + ", ".join(p["waiting_for"]))
        lines.append(f"  {node}: {state}")
        lines.extend(f"    NACK {n['type']} {n['version']}: {n['message']}" for n in p["nacks"])
    return "\n".join(lines)


def _bootstrap(address: Address, proxy: str, output: str) -> tuple[int, str]:
    """What `legation bootstrap` writes for the proxy (the control plane never sees the
    proxy's own bootstrap: this is what it would be given, without the credential)."""
    status, body = fetch(address, "/debug/bootstrap?proxy=" + urllib.parse.quote(proxy))
    if status != 200:
        return 1, f"legation: {body.strip()} (HTTP {status})"
    boot = json.loads(body)
    if output == "json":
        return 0, json.dumps(boot, indent=2)
    note = ("# the bootstrap `legation bootstrap` writes for this proxy (its credential "
            "left out);\n# the proxy's own is not known to the control plane\n")
    return 0, note + yaml.safe_dump(boot, sort_keys=False)
