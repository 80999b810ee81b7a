"""Ingress through an Istio Gateway, with real Envoys: bookinfo's own gateway file.

Istio's `bookinfo-gateway.yaml`, unchanged, binds a VirtualService to a
Gateway selecting `istio: ingressgateway`. A workload with that label is a
gateway proxy: its Envoy listens on its own address at the server port
(8080) and routes bookinfo's paths to productpage; anything else gets
Envoy's 404. The VirtualService names only the gateway, so sidecars do not
use it. A Gateway edit (another port) moves the listener live.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import MeshLab, eventually, request

SAMPLE = Path(__file__).parent / "data" / "istio-samples" / "bookinfo-gateway.yaml"

pytestmark = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])


async def test_bookinfo_gateway_serves_productpage(mesh: MeshLab) -> None:
    mesh.namespace = "default"  # the sample's objects have no namespace
    mesh.service("productpage")
    await mesh.backend("productpage-v1", app="productpage")
    gateway = mesh.client("ingressgateway", labels={"istio": "ingressgateway"})
    client = mesh.client("web")
    mesh.write("bookinfo-gateway.yaml", SAMPLE.read_text())
    await mesh.start()

    async def get(path: str, port: int = 8080) -> tuple[int, str | None]:
        resp = await request(gateway.address, port, "GET", path,
                             headers={"host": "bookinfo.example.com"}, timeout=5)
        return resp.status, resp.header("x-served-by")

    assert await get("/productpage") == (200, "productpage-v1")
    assert await get("/static/css/style.css") == (200, "productpage-v1")
    assert await get("/api/v1/products/1") == (200, "productpage-v1")
    status, _ = await get("/admin")  # no route of the VirtualService matches
    assert status == 404

    dump = await gateway.sidecar.config_dump()
    listeners = [x["active_state"]["listener"] for s in dump["configs"]
                 if s["@type"].endswith("ListenersConfigDump")
                 for x in s.get("dynamic_listeners", [])]
    assert [x["address"]["socket_address"] for x in listeners] == [
        {"address": gateway.address, "port_value": 8080}]  # no sidecar listeners

    # The sidecar of another workload does not take the gateway's VirtualService: its
    # default route to productpage stays, every path served.
    resp = await request(client.address, 15001, "GET", "/admin",
                         headers={"host": "productpage.default:9080"}, timeout=5)
    assert resp.status == 200

    # A live edit: the server moves to port 8081.
    mesh.write("bookinfo-gateway.yaml", SAMPLE.read_text().replace("number: 8080",
                                                                    "number: 8081"))

    async def moved() -> bool:
        try:
            return await get("/productpage", 8081) == (200, "productpage-v1")
        except OSError:
            return False

    await eventually(moved, what="the gateway listening on 8081")
