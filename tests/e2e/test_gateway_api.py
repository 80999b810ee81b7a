"""Issue 11, Kubernetes Gateway API end to end: a Gateway, an HTTPRoute, real Envoys.

`legation serve` watches a directory holding a GatewayClass (Istio's
controller name, so existing classes work), a Gateway with an HTTP listener,
and an HTTPRoute splitting 50/50 over two Services with a header filter; the
gateway is a workload labelled `gateway.networking.k8s.io/gateway-name`, as
Istio's manual deployment. Evidence: the split over real requests, the
header reaching the app, a non-matching path answered 404 by the gateway,
and the status conditions `legation analyze` reports for each object.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter

import pytest

from .harness import MeshLab, eventually, request

pytestmark = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])

GATEWAY_API = """\
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: istio}
spec: {controllerName: istio.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: web, namespace: shop}
spec:
  gatewayClassName: istio
  listeners:
  - {name: http, port: 8080, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catalog, namespace: shop}
spec:
  parentRefs: [{name: web, sectionName: http}]
  hostnames: [shop.example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /catalog}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-via, value: gateway-api}]}
    backendRefs:
    - {name: catalog-v1, port: 9080, weight: 50}
    - {name: catalog-v2, port: 9080, weight: 50}
"""
N = 400


async def test_an_httproute_splits_50_50_and_reports_its_status(mesh: MeshLab) -> None:
    for name in ("catalog-v1", "catalog-v2"):
        mesh.service(name)
        await mesh.backend(name, app=name)
    gateway = mesh.client("web-gateway", labels={"gateway.networking.k8s.io/gateway-name": "web"})
    mesh.write("gateway-api.yaml", GATEWAY_API)
    await mesh.start()

    headers: list[str] = []

    async def get(path: str) -> tuple[int, str]:
        resp = await request(gateway.address, 8080, "GET", path,
                             headers={"host": "shop.example.com"}, timeout=5.0)
        if resp.status == 200:
            headers.append(json.loads(resp.body)["headers"].get("x-via", ""))
        return resp.status, resp.header("x-served-by") or ""

    await eventually(lambda: _ok(get), what="the route served by the gateway")
    seen = Counter([(await get("/catalog/items"))[1] for _ in range(N)])
    print(f"\nHTTPRoute 50/50 over {N} requests: {dict(seen)}")
    assert set(seen) == {"catalog-v1", "catalog-v2"}
    assert abs(seen["catalog-v1"] - N / 2) <= 40  # > 4 standard deviations of a fair split
    assert set(headers) == {"gateway-api"}  # the RequestHeaderModifier, on every request
    assert (await get("/catalogue"))[0] == 404  # PathPrefix matches whole path elements
    assert (await get("/other"))[0] == 404

    found = _analyze(mesh)
    status = {(d["kind"], d["name"]): d["message"] for d in found
              if d["code"] == "gatewayapi.status" and "listener" not in d["message"]}
    assert status[("GatewayClass", "istio")] == "status: Accepted=True (Accepted)"
    assert status[("Gateway", "web")] == (
        "status: Accepted=True (Accepted); Programmed=True (Programmed)")
    assert status[("HTTPRoute", "catalog")] == (
        "status of parent shop/web/http: Accepted=True (Accepted); "
        "ResolvedRefs=True (ResolvedRefs)")
    [listener] = [d["message"] for d in found if "status of listener http" in d["message"]]
    assert listener.endswith("Programmed=True (Programmed); attachedRoutes=1")
    assert not [d for d in found if d["severity"] != "info"], found


async def _ok(get: object) -> bool:
    status, _ = await get("/catalog")  # type: ignore[operator]
    return bool(status == 200)


def _analyze(mesh: MeshLab) -> list[dict[str, str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "legation", "analyze", str(mesh.config_dir), "--output", "json"],
        capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    found: list[dict[str, str]] = json.loads(proc.stdout)
    return found
