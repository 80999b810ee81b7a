"""On-demand config with real Envoys: a proxy that starts with no outbound config.

A workload annotated ``sidecar.legation.io/on-demand: "true"`` whose Envoy is
on delta ADS gets its outbound virtual hosts (VHDS aliases) and clusters
(on-demand CDS) on a request's first use: its `/config_dump` starts without
any, a request to a service is served all the same, and afterwards the proxy
holds that service's virtual host and cluster and nothing else. An unknown
host is answered 404, as for any proxy. A proxy without the annotation gets
everything as before.
"""

from __future__ import annotations

import time

import pytest

from .harness import MeshLab, eventually, request

pytestmark = pytest.mark.parametrize("delta", [True], ids=["delta"])

CATALOG = "outbound|9080||catalog.shop.svc.cluster.local"
ORDER = "outbound|9080||order.shop.svc.cluster.local"


async def _held(mesh: MeshLab, name: str) -> tuple[set[str], set[str]]:
    """(outbound clusters, virtual host names of http_proxy) the proxy holds."""
    envoy = mesh.workloads[name].envoy
    assert envoy is not None
    dump = await envoy.config_dump()
    clusters, hosts = set(), set()
    for section in dump["configs"]:
        kind = section["@type"]
        if kind.endswith("ClustersConfigDump"):
            clusters = {c["cluster"]["name"] for c in section.get("dynamic_active_clusters", [])
                        if c["cluster"]["name"].startswith("outbound|")}
        elif kind.endswith("RoutesConfigDump"):
            for r in section.get("dynamic_route_configs", []):
                if r["route_config"]["name"] == "http_proxy":
                    hosts = {vh["name"] for vh in r["route_config"].get("virtual_hosts", [])}
    return clusters, hosts


async def test_an_on_demand_proxy_fetches_what_a_request_uses(mesh: MeshLab) -> None:
    mesh.service("catalog")
    mesh.service("order")
    await mesh.backend("catalog-v1", app="catalog")
    await mesh.backend("order-v1", app="order")
    lazy = mesh.client("frontend", annotations={"sidecar.legation.io/on-demand": "true"})
    eager = mesh.client("web")
    await mesh.start()

    # two services and the catch-all of outboundTrafficPolicy
    await eventually(lambda: _is(mesh, "web", ({CATALOG, ORDER}, 3)), what="web has everything")
    assert await _held(mesh, "frontend") == (set(), set())  # nothing until first use

    started = time.monotonic()
    first = await request(lazy.address, 15001, "GET", "/",
                          headers={"host": "catalog.shop:9080"}, timeout=10)
    first_s = time.monotonic() - started
    assert first.status == 200 and first.header("x-served-by") == "catalog-v1", first
    started = time.monotonic()
    again = await request(lazy.address, 15001, "GET", "/",
                          headers={"host": "catalog.shop:9080"}, timeout=10)
    again_s = time.monotonic() - started
    assert again.status == 200
    print(f"on-demand first request {first_s * 1000:.0f} ms, then {again_s * 1000:.0f} ms")
    clusters, hosts = await _held(mesh, "frontend")
    assert clusters == {CATALOG}
    assert hosts == {"http_proxy/catalog.shop.svc.cluster.local:9080"}

    # Another name of the same service: the held virtual host answers it (no fetch).
    other = await request(lazy.address, 15001, "GET", "/",
                          headers={"host": "catalog.shop.svc.cluster.local:9080"}, timeout=10)
    assert other.status == 200
    unknown = await request(lazy.address, 15001, "GET", "/",
                            headers={"host": "nothing.shop:9080"}, timeout=10)
    assert unknown.status == 404 and unknown.header("server") == "envoy"
    assert (await request(eager.address, 15001, "GET", "/",
                          headers={"host": "order.shop:9080"}, timeout=10)).status == 200
    assert (await _held(mesh, "frontend"))[0] == {CATALOG}


async def _is(mesh: MeshLab, name: str, want: tuple[set[str], int]) -> bool:
    clusters, hosts = await _held(mesh, name)
    return clusters == want[0] and len(hosts) == want[1]
