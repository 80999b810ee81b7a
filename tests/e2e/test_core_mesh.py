"""Issue 2 end to end: YAML in a watched directory, `legation serve` as a real process,
real Envoy sidecars over ADS (SotW and delta: the `mesh` fixture runs each test in
both), real apps, real requests on 127.0.0.0/8.

The mesh of every test: Service `catalog` (port 9080) selecting `catalog-v1` and
`catalog-v2`, and a client workload `frontend` that no service selects; requests
enter through the frontend sidecar's outbound listener (`<address>:15001`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from legation.demo.controlplane import metric_sum

from .harness import MeshLab, MeshWorkload, eventually, service_yaml

CATALOG = "catalog.shop:9080"
HOST_FORMS = (
    "catalog",
    "catalog:9080",
    "catalog.shop",
    "catalog.shop.svc",
    "catalog.shop.svc.cluster.local",
    "catalog.shop.svc.cluster.local:9080",
)
CLUSTER = "outbound|9080||catalog.shop.svc.cluster.local"
ROUTE_CONFIG = "http_proxy"


@dataclass(slots=True, kw_only=True)
class Shop:
    frontend: MeshWorkload
    v1: MeshWorkload
    v2: MeshWorkload
    versions: dict[str, dict[str, str]]  # node -> type -> version, all ACKed

    @property
    def nodes(self) -> list[str]:
        return [self.frontend.node_id, self.v1.node_id, self.v2.node_id]


async def start_shop(mesh: MeshLab) -> Shop:
    mesh.service("catalog")
    v1 = await mesh.backend("catalog-v1", app="catalog", version="v1")
    v2 = await mesh.backend("catalog-v2", app="catalog", version="v2")
    frontend = mesh.client("frontend")
    await mesh.start()
    nodes = [frontend.node_id, v1.node_id, v2.node_id]
    versions = await eventually(lambda: mesh.converged(nodes), what="every proxy ACKed")
    return Shop(frontend=frontend, v1=v1, v2=v2, versions=versions)


def section(dump: dict[str, Any], kind: str) -> dict[str, Any]:
    """One `*ConfigDump` of Envoy's /config_dump, e.g. kind="ClustersConfigDump"."""
    [found] = [c for c in dump["configs"] if c["@type"].endswith("." + kind)]
    return found


async def test_requests_reach_both_backends(mesh: MeshLab) -> None:
    shop = await start_shop(mesh)

    by_host = await mesh.served_by(shop.frontend, CATALOG, 50)
    by_proxy = await mesh.served_by(shop.frontend, CATALOG, 50, absolute=True)

    assert set(by_host) == {"catalog-v1", "catalog-v2"}, by_host  # and nothing else (no errors)
    assert set(by_proxy) == {"catalog-v1", "catalog-v2"}, by_proxy
    for host in HOST_FORMS:
        resp = await mesh.get(shop.frontend, host)
        assert resp.status == 200, host
        assert resp.header("x-served-by") in ("catalog-v1", "catalog-v2"), host


async def test_client_sidecar_holds_what_was_acked(mesh: MeshLab) -> None:
    """Envoy's own view (/config_dump, /clusters) matches what /debug/proxies says it ACKed."""
    shop = await start_shop(mesh)
    acked = shop.versions[shop.frontend.node_id]
    resources = await mesh.control_plane.admin_json(
        f"/debug/config_dump?proxy={shop.frontend.node_id}"
    )
    own = {t: {r["name"]: r["version"] for r in rs} for t, rs in resources["resources"].items()}

    dump = await shop.frontend.sidecar.config_dump()

    clusters = section(dump, "ClustersConfigDump")
    assert clusters["version_info"] == acked["cds"]
    [cluster] = [c for c in clusters["dynamic_active_clusters"] if c["cluster"]["name"] == CLUSTER]
    routes = section(dump, "RoutesConfigDump")
    [route] = [r for r in routes["dynamic_route_configs"]
               if r["route_config"]["name"] == ROUTE_CONFIG]  # fmt: skip
    listeners = section(dump, "ListenersConfigDump")
    assert listeners["version_info"] == acked["lds"]
    if mesh.delta:  # delta: each resource carries its own version
        assert cluster["version_info"] == own["cds"][CLUSTER]
        # VHDS: the configuration came without virtual hosts, and Envoy reports it
        # at the version of the VHDS response that filled it in
        # (RouteConfigUpdateReceiverImpl::onVhdsUpdate).
        assert route["version_info"] == acked["vhds"]
        assert "vhds" in route["route_config"]
        served = {vh["resource"]["name"] for vh in resources["resources"]["vhds"]}
        held = {vh["name"] for vh in route["route_config"]["virtual_hosts"]}
        assert held == served, (held, served)
        assert f"{ROUTE_CONFIG}/{CLUSTER.rsplit('|', 1)[1]}:9080" in held, held
    else:  # SotW: the version of the response that brought it
        assert cluster["version_info"] == acked["cds"]
        assert route["version_info"] == acked["rds"]
    domains = {d for vh in route["route_config"]["virtual_hosts"] for d in vh["domains"]}
    assert {"catalog", "catalog.shop:9080", "catalog.shop.svc.cluster.local:9080"} <= domains
    [listener] = listeners["dynamic_listeners"]
    assert listener["active_state"]["listener"]["address"]["socket_address"] == {
        "address": shop.frontend.address,
        "port_value": 15001,
    }

    status = await shop.frontend.sidecar.clusters()
    [entry] = [c for c in status["cluster_statuses"] if c["name"] == CLUSTER]
    hosts = {
        (h["address"]["socket_address"]["address"], h["address"]["socket_address"]["port_value"]):
        h["health_status"]["eds_health_status"]
        for h in entry["host_statuses"]
    }  # fmt: skip
    assert hosts == {(shop.v1.address, 9080): "HEALTHY", (shop.v2.address, 9080): "HEALTHY"}


REGISTRY_ONLY = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |-
    outboundTrafficPolicy:
      mode: REGISTRY_ONLY
"""


async def test_unknown_host_is_refused_under_registry_only(mesh: MeshLab) -> None:
    # Istio's MeshConfig from its ConfigMap, as Istio installs it. (Under ALLOW_ANY, the
    # default, unknown names are resolved by DNS: tests/e2e/test_outbound_policy.py, on
    # loopback names only.)
    mesh.write("mesh-config.yaml", REGISTRY_ONLY)
    shop = await start_shop(mesh)

    for host in ("nope.shop:9080", "catalog.shop:9999", "catalog.other:9080", "example.com"):
        for absolute in (False, True):
            resp = await mesh.get(shop.frontend, host, absolute=absolute)
            assert resp.status == 502, (host, absolute)
            assert resp.header("server") == "envoy"
            assert resp.header("x-served-by") is None
            assert resp.body.decode().startswith(f"{host} is not in the mesh's registry")
    assert shop.v1.app is not None and shop.v2.app is not None
    assert shop.v1.app.requests_served == shop.v2.app.requests_served == 0


async def test_removing_a_workload_entry_stops_traffic_to_it(mesh: MeshLab) -> None:
    shop = await start_shop(mesh)
    remaining = [shop.frontend.node_id, shop.v1.node_id]
    before = shop.versions

    written = time.time()
    mesh.remove(shop.v2.file.name)

    async def converged_without_v2() -> bool:
        now = await mesh.converged(remaining)
        return now is not None and now[shop.frontend.node_id] != before[shop.frontend.node_id]

    # The promise: within 2 s of the file change, measured from the write.
    await eventually(converged_without_v2, timeout=2.0, what="proxies ACKing the removal")
    took = await mesh.last_ack_at(remaining) - written
    mode = "delta" if mesh.delta else "sotw"
    print(f"\n[{mode}] WorkloadEntry file removed -> last proxy ACK: {took * 1000:.0f} ms")

    seen = await mesh.served_by(shop.frontend, CATALOG, 20)
    assert seen == Counter({"catalog-v1": 20})
    status = await shop.frontend.sidecar.clusters()
    [entry] = [c for c in status["cluster_statuses"] if c["name"] == CLUSTER]
    assert [h["address"]["socket_address"]["address"] for h in entry["host_statuses"]] == [
        shop.v1.address
    ]


_BROKEN = {
    "yaml-syntax": (
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: catalog\n  namespace: shop\n"
        "spec:\n  ports: [\n",
        "yaml.syntax",
    ),
    "port-abc": (
        service_yaml("catalog", "shop").replace("port: 9080", "port: abc", 1),
        "service.port-invalid",
    ),
}


@pytest.mark.parametrize("breakage", sorted(_BROKEN))
async def test_broken_file_changes_nothing_that_works(mesh: MeshLab, breakage: str) -> None:
    shop = await start_shop(mesh)
    cp = mesh.control_plane
    good = (mesh.config_dir / "service-catalog.yaml").read_text()
    text, code = _BROKEN[breakage]
    pushes = metric_sum(await cp.metrics(), "legation_xds_pushes_total")

    mesh.write("service-catalog.yaml", text)

    async def diagnosed() -> dict[str, Any] | None:
        found = [d for d in await cp.diagnostics() if d["code"] == code]
        return found[0] if found else None

    diag = await eventually(diagnosed, what=f"diagnostic {code}")
    assert diag["file"].endswith("service-catalog.yaml")
    if breakage == "port-abc":
        assert diag["field"] == "spec.ports[0].port"
        assert diag["line"] == text.splitlines().index("    port: abc") + 1
    else:
        assert diag["line"] >= text.splitlines().index("  ports: [") + 1

    async def published() -> bool:  # the gauge is set after the snapshots are published
        samples = await cp.metrics()
        return any(code in k for k in samples if k.startswith("legation_config_diagnostics{"))

    await eventually(published, what="the broken mesh published")
    assert await mesh.converged(shop.nodes) == shop.versions
    seen = await mesh.served_by(shop.frontend, CATALOG, 30)
    assert set(seen) == {"catalog-v1", "catalog-v2"}, seen
    assert metric_sum(await cp.metrics(), "legation_xds_pushes_total") == pushes

    mesh.write("service-catalog.yaml", good)  # fixed: the diagnostic goes, nothing else moves
    await eventually(lambda: _no_diagnostic(mesh, code), what="diagnostic cleared")
    assert await mesh.converged(shop.nodes) == shop.versions


async def _no_diagnostic(mesh: MeshLab, code: str) -> bool:
    return not any(d["code"] == code for d in await mesh.control_plane.diagnostics())


@dataclass(slots=True)
class Traffic:
    """Requests sent back to back until stopped; every outcome kept."""

    mesh: MeshLab
    client: MeshWorkload
    outcomes: list[tuple[float, str]] = field(default_factory=list)  # (time, served_by | error)

    async def run(self) -> None:
        while True:
            try:
                resp = await self.mesh.get(self.client, CATALOG, timeout=3.0)
                got = resp.header("x-served-by") or f"status {resp.status}"
            except (OSError, TimeoutError) as e:
                got = f"error {type(e).__name__}: {e}"
            self.outcomes.append((time.monotonic(), got))

    def failures(self) -> list[str]:
        return [o for _, o in self.outcomes if not o.startswith("catalog-")]

    async def sent(self, n: int, *, since: float = 0.0) -> bool:
        """Whether `n` requests have completed since `since` (for `eventually`)."""
        return sum(1 for at, _ in self.outcomes if at >= since) >= n


async def test_control_plane_kill_and_restart_never_interrupts_traffic(mesh: MeshLab) -> None:
    shop = await start_shop(mesh)
    cp = mesh.control_plane
    before_dump = section(await shop.frontend.sidecar.config_dump(), "ClustersConfigDump")
    traffic = Traffic(mesh, shop.frontend)
    task = asyncio.create_task(traffic.run())
    try:
        await eventually(lambda: traffic.sent(20), what="traffic flowing")
        await cp.kill()
        down = time.monotonic()

        async def disconnected() -> bool:
            stats = await shop.frontend.sidecar.stats(r"^control_plane\.connected_state$")
            return stats.get("control_plane.connected_state") == 0

        await eventually(disconnected, what="the sidecar noticing the outage")
        await eventually(lambda: traffic.sent(50, since=down), what="traffic in the outage")
        spawned = time.time()
        await cp.start()
        ready = time.time()
        resynced = await eventually(
            lambda: mesh.converged(shop.nodes), timeout=20.0, what="proxies resynced"
        )
        last = await mesh.last_ack_at(shop.nodes)
        mode = "delta" if mesh.delta else "sotw"
        print(
            f"\n[{mode}] control plane restart -> every proxy ACKed again: "
            f"{(last - spawned) * 1000:.0f} ms after the spawn, "
            f"{(last - ready) * 1000:.0f} ms after /readyz (Envoy's retry back-off)"
        )
        up = time.monotonic()
        await eventually(lambda: traffic.sent(20, since=up), what="traffic after restart")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    assert traffic.failures() == []
    assert {o for _, o in traffic.outcomes} == {"catalog-v1", "catalog-v2"}
    assert resynced == shop.versions  # content-hash versions: the same after a restart
    streams = {p["node"]: p for p in await cp.proxies()}
    assert sorted(streams) == sorted(shop.nodes)
    after_dump = section(await shop.frontend.sidecar.config_dump(), "ClustersConfigDump")
    assert after_dump["version_info"] == before_dump["version_info"]
    # No churn: the reconnect did not re-deliver (re-warm) the cluster.
    assert after_dump["dynamic_active_clusters"] == before_dump["dynamic_active_clusters"]
