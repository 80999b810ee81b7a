"""Issue 11, ServiceEntry end to end: real Envoy sidecars reach hosts outside the mesh.

`legation serve` watches a directory; a client workload's real Envoy sidecar
(SotW ADS) carries every request; the "external" services are real demo apps
on loopback addresses no Service selects. Evidence, as the issue asks:

- resolution STATIC: the entry's endpoints (two versions) over EDS, a
  DestinationRule's subsets and a VirtualService header match and fault
  abort on the entry host; editing the entry's endpoints moves the traffic;
- resolution DNS: a STRICT_DNS cluster whose endpoint `localhost` Envoy
  resolves itself (its /clusters shows 127.0.0.1);
- resolution NONE: the dynamic forward proxy dials the Host the request names;
- an invalid edit of an entry keeps its last good version in force.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from legation.demo.app import DemoApp

from .harness import OUTBOUND_PORT, MeshLab, MeshWorkload, eventually, request

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

PAYMENTS = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints:
ENDPOINTS"""

RULES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: payments, namespace: shop}
spec:
  host: payments.example.com
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  http:
  - match: [{headers: {x-fail: {exact: "1"}}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: payments.example.com}}]
  - match: [{headers: {x-canary: {exact: "true"}}}]
    route: [{destination: {host: payments.example.com, subset: v2}}]
  - route: [{destination: {host: payments.example.com}}]
"""

SEARCH = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: search, namespace: shop}
spec:
  hosts: [search.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: localhost, ports: {http: PORT}}]
"""

ANYWHERE = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local, namespace: shop}
spec:
  hosts: [localhost]
  resolution: NONE
  ports: [{number: PORT, name: http, protocol: HTTP}]
"""


def endpoint(app: DemoApp, version: str) -> str:
    host, port = app.address
    return f"  - {{address: {host}, ports: {{http: {port}}}, labels: {{version: {version}}}}}\n"


async def get(client: MeshWorkload, host: str, headers: dict[str, str] | None = None
              ) -> tuple[int, str]:
    resp = await request(client.address, OUTBOUND_PORT, "GET", "/",
                         headers={"host": host, **(headers or {})}, timeout=5.0)
    return resp.status, resp.header("x-served-by") or resp.body.decode(errors="replace")


async def spread(client: MeshWorkload, host: str, n: int,
                 headers: dict[str, str] | None = None) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, who = await get(client, host, headers)
        seen[who if status == 200 else f"<{status}>"] += 1
    return seen


async def test_static_dns_and_forwarded_entries_with_rules(mesh: MeshLab) -> None:
    v1 = await mesh.apps.start("payments-v1", host=mesh.loopback.next(), version="v1")
    v2 = await mesh.apps.start("payments-v2", host=mesh.loopback.next(), version="v2")
    search = await mesh.apps.start("search")
    anywhere = await mesh.apps.start("anywhere")
    mesh.write("se-payments.yaml", PAYMENTS.replace(
        "ENDPOINTS", endpoint(v1, "v1") + endpoint(v2, "v2")))
    mesh.write("rules-payments.yaml", RULES)
    mesh.write("se-search.yaml", SEARCH.replace("PORT", str(search.address[1])))
    mesh.write("se-local.yaml", ANYWHERE.replace("PORT", str(anywhere.address[1])))
    client = mesh.client("frontend")
    await mesh.start()
    await eventually(lambda: mesh.converged([client.node_id]), what="the client ACKed")

    # STATIC: both endpoints (round robin), a header match to subset v2, a fault abort.
    assert await spread(client, "payments.example.com", 20) == Counter(
        {"payments-v1": 10, "payments-v2": 10})
    assert await spread(client, "payments.example.com", 10, {"x-canary": "true"}) == Counter(
        {"payments-v2": 10})
    status, body = await get(client, "payments.example.com", {"x-fail": "1"})
    assert (status, body) == (418, "fault filter abort")

    # DNS: Envoy resolves `localhost` itself.
    assert await get(client, "search.example.com") == (200, "search")
    dump = await client.sidecar.config_dump(resource="dynamic_active_clusters")
    types = {c["cluster"]["name"]: c["cluster"].get("type") for c in dump["configs"]}
    assert types["outbound|80||search.example.com"] == "STRICT_DNS"
    assert types["outbound|80||payments.example.com"] == "EDS"
    resolved = _hosts(await client.sidecar.clusters(), "outbound|80||search.example.com")
    assert resolved == [("127.0.0.1", search.address[1])]

    # NONE: the dynamic forward proxy dials the Host of the request.
    port = anywhere.address[1]
    assert await get(client, f"localhost:{port}") == (200, "anywhere")
    assert "cluster_type" in _cluster(dump, f"outbound|{port}||localhost")

    # Editing the entry's endpoints moves the traffic (EDS only).
    mesh.write("se-payments.yaml", PAYMENTS.replace("ENDPOINTS", endpoint(v2, "v2")))
    await eventually(lambda: _only(client, "payments-v2"), what="v1 gone")

    # An invalid edit keeps the last good entry; the diagnostic says where and why.
    mesh.write("se-payments.yaml", PAYMENTS.replace("STATIC", "NONE").replace(
        "ENDPOINTS", endpoint(v1, "v1")))
    diag = await eventually(lambda: _diagnostic(mesh, "serviceentry.endpoints-with-none"),
                            what="the finding")
    assert diag["file"].endswith("se-payments.yaml") and diag["field"] == "spec.endpoints"
    assert await spread(client, "payments.example.com", 10) == Counter({"payments-v2": 10})


def _cluster(dump: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == name]
    return found


def _hosts(clusters: dict[str, Any], name: str) -> list[tuple[str, int]]:
    [found] = [c for c in clusters["cluster_statuses"] if c["name"] == name]
    return [(h["address"]["socket_address"]["address"], h["address"]["socket_address"]
             ["port_value"]) for h in found.get("host_statuses", [])]


async def _only(client: MeshWorkload, who: str) -> bool:
    return await spread(client, "payments.example.com", 6) == Counter({who: 6})


async def _diagnostic(mesh: MeshLab, code: str) -> dict[str, Any] | None:
    found = [d for d in await mesh.control_plane.diagnostics() if d["code"] == code]
    return found[0] if found else None
