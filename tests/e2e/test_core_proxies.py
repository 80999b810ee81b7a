"""Issue 2 end to end, the proxies' side: a node that names no workload, and a NACK
from a real Envoy. SotW and delta (the `mesh` fixture), real processes throughout.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from legation.demo.controlplane import metric_sum

from .harness import Envoy, MeshLab, eventually, sidecar_bootstrap


async def test_unknown_node_gets_not_found_and_the_server_serves_others(mesh: MeshLab) -> None:
    mesh.service("catalog")
    v1 = await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("frontend")
    await mesh.start()
    cp = mesh.control_plane
    ghost_boot = sidecar_bootstrap(
        workload="ghost",
        namespace="shop",
        admin_host=mesh.loopback.next(),
        xds=cp.xds,
        delta=mesh.delta,
    )

    ghost = await mesh.envoys.start("ghost", ghost_boot, wait="admin")

    async def refused_often() -> bool:  # Envoy keeps retrying; each retry is refused
        samples = await cp.metrics()
        return samples.get('legation_xds_rejected_streams_total{code="NOT_FOUND"}', 0) >= 3

    await eventually(refused_often, what="the ghost's streams refused with NOT_FOUND")
    stats = await ghost.stats(r"^control_plane\.connected_state$")
    assert stats == {"control_plane.connected_state": 0}
    assert not await ghost.ready()  # never got a config: stays initializing
    rejected = [e for e in cp.log_events("xds.stream_rejected") if e.get("node") == "ghost.shop"]
    assert len(rejected) == 1, rejected  # logged once, not once per retry
    assert rejected[0]["code"] == "NOT_FOUND"
    assert "'ghost.shop' names no workload" in rejected[0]["message"]
    # Envoy got the status and the message too.
    assert "ghost.shop" in ghost.log_tail(200) and "names no workload" in ghost.log_tail(200)
    # The server is up and serving everyone else.
    assert cp.running
    assert (await cp.admin_get("/healthz")).status == 200
    assert {p["node"] for p in await cp.proxies()} == {client.node_id, v1.node_id}
    for _ in range(5):
        resp = await mesh.get(client, "catalog.shop:9080")
        assert (resp.status, resp.header("x-served-by")) == (200, "catalog-v1")


@pytest.fixture
def squatter() -> Iterator[socket.socket]:
    """A plain TCP socket a test binds to take a port away from a sidecar."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        yield sock
    finally:
        sock.close()


async def test_envoy_nack_is_recorded_not_resent_and_the_next_change_applies(
    mesh: MeshLab, squatter: socket.socket
) -> None:
    """A config our validation accepts but one Envoy cannot apply: its inbound listener's
    port is taken by another process on the workload's address (the classic: an app bound
    to the workload address instead of 127.0.0.1). That Envoy rejects LDS; the rest works."""
    mesh.service("catalog")
    v1 = await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("frontend")
    squatter.bind((v1.address, 9080))
    squatter.listen()
    cp = mesh.control_plane
    await cp.start()
    await mesh.start_sidecar(client)
    await mesh.start_sidecar(v1, wait="admin")

    async def nacked() -> dict[str, object] | None:
        [entry] = [p for p in await cp.proxies() if p["node"] == v1.node_id]
        lds: dict[str, object] = entry["types"]["lds"]
        return lds if lds["last_nack"] else None

    lds = await eventually(nacked, what="catalog-v1 NACKing LDS")
    nack = lds["last_nack"]
    assert isinstance(nack, dict)
    assert f"{v1.address}:9080" in str(nack["message"])
    assert nack["version"] == lds["sent_version"] != lds["acked_version"]

    async def logged_nacks() -> list[dict[str, Any]] | None:  # the log may trail the board
        return [e for e in cp.log_events("xds.nack") if e.get("node") == v1.node_id] or None

    [logged] = await eventually(logged_nacks, what="the NACK in the control plane's log")
    assert logged["detail"] == nack["message"]
    assert metric_sum(await cp.metrics(), "legation_xds_nacks_total") == 1
    # The rest of its config applied: the outbound listener is there.
    active, failed = await listeners(v1.sidecar)
    assert active == [f"{v1.address}_15001"]
    assert list(failed) == [f"{v1.address}_9080"]
    assert "Address already in use" in failed[f"{v1.address}_9080"]
    assert failed[f"{v1.address}_9080"] in str(nack["message"])  # what Envoy told us

    # Not answered by a resend: a republish that leaves its config as it was pushes nothing.
    built = metric_sum(await cp.metrics(), "legation_translations_total")
    mesh.client("bystander")

    async def republished() -> bool:
        return metric_sum(await cp.metrics(), "legation_translations_total") > built

    await eventually(republished, what="a republish after an unrelated change")
    [entry] = [p for p in await cp.proxies() if p["node"] == v1.node_id]
    assert entry["types"]["lds"]["pushes"] == lds["pushes"]

    # The port is freed and the next change (a second service port) is pushed as usual.
    squatter.close()
    mesh.service("catalog-admin", port=9081, selector={"app": "catalog"})
    versions = await eventually(
        lambda: mesh.converged([v1.node_id, client.node_id]), what="the next LDS ACKed"
    )
    assert versions[v1.node_id]["lds"] != nack["version"]
    active, failed = await listeners(v1.sidecar)
    assert active == [f"{v1.address}_15001", f"{v1.address}_9080", f"{v1.address}_9081"]
    resp = await mesh.get(client, "catalog.shop:9080")
    assert (resp.status, resp.header("x-served-by")) == (200, "catalog-v1")



async def listeners(envoy: Envoy) -> tuple[list[str], dict[str, str]]:
    """(names of active listeners, {name: error} of listeners Envoy failed to apply)."""
    dump = await envoy.config_dump(resource="dynamic_listeners")
    active = sorted(d["name"] for d in dump["configs"] if "active_state" in d)
    failed = {
        d["error_state"]["failed_configuration"]["name"]: d["error_state"]["details"]
        for d in dump["configs"]
        if "error_state" in d and "active_state" not in d
    }
    return active, failed

