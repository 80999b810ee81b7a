"""Replicas: control planes reading the same cluster serve the same versions (content
hashes), so a proxy can move between replicas (or across a restart) without churn."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legation.demo.http import request
from legation.translators.names import istio_node_id

from .harness import AppFleet, Envoy, EnvoyFleet, Loopback, eventually
from .kube_lab import (
    APP_PORT,
    NS,
    ApiServer,
    catalog_slice,
    control_plane,
    endpoint,
    kubeconfig,
    served_by,
    shop,
    sidecar,
)

pytestmark = pytest.mark.e2e

_TYPES = {"ClustersConfigDump": "cds", "ListenersConfigDump": "lds", "RoutesConfigDump": "rds"}


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


async def _debug_versions(app: Any, node: str) -> dict[str, str]:
    resp = await request("127.0.0.1", app.admin.port, "GET", f"/debug/config_dump?proxy={node}")
    assert resp.status == 200, resp.text()
    versions: dict[str, str] = resp.json()["versions"]
    return versions


async def _envoy_versions(envoy: Envoy) -> dict[str, str]:
    """The versions Envoy holds: CDS and LDS of their last response, RDS of its route."""
    out: dict[str, str] = {}
    for c in (await envoy.config_dump())["configs"]:
        kind = _TYPES.get(c["@type"].rpartition(".")[2])
        if kind == "rds":
            routes = c.get("dynamic_route_configs", ())
            out["rds"] = ",".join(r.get("version_info", "") for r in routes)
        elif kind:
            out[kind] = c.get("version_info", "")
    return out if all(out.get(k) for k in _TYPES.values()) else {}


async def test_two_replicas_serve_identical_versions(
    apiserver: ApiServer, envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback,
    tmp_path: Path,
) -> None:
    client_a, ip1, ip2 = loopback.many(3)
    shop(apiserver, client_ip=client_a, catalog_ips=(ip1, ip2))
    apiserver.apply(catalog_slice([endpoint("catalog-1", ip1), endpoint("catalog-2", ip2)]))
    await apps.start("catalog-1", host=ip1, port=APP_PORT)
    await apps.start("catalog-2", host=ip2, port=APP_PORT)
    node = istio_node_id("frontend-7d9f-x2x4z", NS, ip=client_a)
    config = kubeconfig(tmp_path / "kubeconfig", apiserver.url)

    async with control_plane(config) as one, control_plane(config) as two:
        assert one.xds.port != two.xds.port
        envoy = await sidecar(envoys, one, node_id=node, address=client_a)
        on_one = await eventually(lambda: _envoy_versions(envoy), what="Envoy configured")
        assert set(await served_by(client_a, 10)) == {"catalog-1", "catalog-2"}

        debug_one = await _debug_versions(one, node)
        debug_two = await _debug_versions(two, node)
        assert debug_one == debug_two
        assert all(debug_one[t] for t in ("cds", "eds", "lds", "rds"))
        assert {t: debug_one[t] for t in on_one} == on_one  # what Envoy ACKed from replica one

        # the proxy moves to replica two (e.g. after --max-connection-age): same versions
        await envoy.stop()
        moved = await sidecar(envoys, two, node_id=node, address=client_a)
        on_two = await eventually(lambda: _envoy_versions(moved), what="moved Envoy configured")
        assert on_two == on_one

        # a change reaches both replicas and again they agree
        apiserver.apply(catalog_slice([endpoint("catalog-2", ip2)]))

        async def converged() -> bool:
            a, b = await _debug_versions(one, node), await _debug_versions(two, node)
            return a == b and a["eds"] != debug_one["eds"]

        await eventually(converged, what="both replicas on the new endpoints")
        assert (await _debug_versions(one, node))["cds"] == debug_one["cds"]  # EDS-only change

    # a restarted control plane computes the same versions again
    async with control_plane(config) as restarted:
        after = await eventually(lambda: _debug_versions(restarted, node), what="restart synced")
        async with control_plane(config) as again:
            assert await eventually(lambda: _debug_versions(again, node)) == after
