"""Config proportional to use, with real Envoys: the Sidecar resource.

A `Sidecar` limits what a proxy is sent to the services its egress hosts name
(exportTo, which works the same way per namespace, is covered by the unit
tests: this lab has one namespace). The proxy's `/config_dump` holds only
what it may use, a request inside its scope is served, and one outside it is
answered as for any host the proxy does not know: with the Sidecar's
outboundTrafficPolicy REGISTRY_ONLY, a 502 naming the host; other proxies are
not affected, and removing the Sidecar widens the scope live.
"""

from __future__ import annotations

from typing import Any

import pytest

from .harness import MeshLab, eventually, request

SIDECAR = """\
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: frontend, namespace: shop}
spec:
  workloadSelector: {labels: {app: frontend}}
  egress:
  - hosts: ["./catalog.shop.svc.cluster.local"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""

pytestmark = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])


async def _clusters(mesh: MeshLab, name: str) -> set[str]:
    envoy = mesh.workloads[name].envoy
    assert envoy is not None
    dump = await envoy.config_dump(resource="dynamic_active_clusters")
    return {c["cluster"]["name"] for c in dump.get("configs", [])}


async def _outbound(mesh: MeshLab, name: str) -> set[str]:
    return {c for c in await _clusters(mesh, name) if c.startswith("outbound|")}


async def test_a_sidecar_and_export_to_limit_what_each_proxy_gets(mesh: MeshLab) -> None:
    mesh.service("catalog")
    mesh.service("order")
    mesh.service("payment")
    await mesh.backend("catalog-v1", app="catalog")
    await mesh.backend("order-v1", app="order")
    await mesh.backend("payment-v1", app="payment")
    frontend = mesh.client("frontend")
    other = mesh.client("web")
    mesh.write("sidecar-frontend.yaml", SIDECAR)
    await mesh.start()

    catalog = "outbound|9080||catalog.shop.svc.cluster.local"
    everything = {catalog, "outbound|9080||order.shop.svc.cluster.local",
                  "outbound|9080||payment.shop.svc.cluster.local"}
    await eventually(lambda: _is(mesh, "frontend", {catalog}), what="frontend scoped")
    await eventually(lambda: _is(mesh, "web", everything), what="web sees the namespace")

    ok = await request(frontend.address, 15001, "GET", "/",
                       headers={"host": "catalog.shop:9080"}, timeout=5)
    assert ok.status == 200 and ok.header("x-served-by") == "catalog-v1"
    outside = await request(frontend.address, 15001, "GET", "/",
                            headers={"host": "order.shop:9080"}, timeout=5)
    assert outside.status == 502 and outside.header("server") == "envoy"
    assert outside.body.startswith(b"order.shop:9080 is not in the mesh's registry")
    assert (await request(other.address, 15001, "GET", "/",
                          headers={"host": "order.shop:9080"}, timeout=5)).status == 200

    # The Sidecar goes: the frontend gets the whole (exported) mesh, live.
    mesh.remove("sidecar-frontend.yaml")
    await eventually(lambda: _is(mesh, "frontend", everything), what="frontend unscoped")

    async def order_routed() -> Any:  # routes follow the clusters (after they warm)
        resp = await request(frontend.address, 15001, "GET", "/",
                             headers={"host": "order.shop:9080"}, timeout=5)
        return resp if resp.status == 200 else None

    routed = await eventually(order_routed, what="frontend's route to order")
    assert routed.status == 200


async def _is(mesh: MeshLab, name: str, want: set[str]) -> bool:
    return await _outbound(mesh, name) == want
