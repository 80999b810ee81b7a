"""Rate limits without EnvoyFilter (issue 15, item 5), with real Envoys.

- `ratelimit.legation.io/local: 3/60s` on catalog-v1: its sidecar answers the
  fourth request in a minute with 429 and `x-local-rate-limit: true`;
- `ratelimit.legation.io/routes` on the reviews VirtualService: the `search`
  route (2 a minute) is limited in the client's sidecar, the other route is not;
- `ratelimit.legation.io/global: rls` on ratings-v1, descriptor `header:x-user`:
  a rate limit service of this test's own (envoy.service.ratelimit.v3 over gRPC,
  named in MeshConfig `envoyRateLimit`) allows each user two requests; alice's
  third gets 429 while bob's pass, and the service saw domain `shop` and the
  descriptor Envoy built.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import grpc
import pytest
from envoy.service.ratelimit.v3 import rls_pb2
from grpc import aio

from .harness import MeshLab, free_port

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])


class RateLimitService:
    """Two requests per descriptor, then OVER_LIMIT; remembers what it was asked."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[tuple[str, str], ...]]] = []
        self.counts: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()

    async def should_rate_limit(self, request: Any, context: Any) -> Any:
        req = rls_pb2.RateLimitRequest.FromString(request)
        code = rls_pb2.RateLimitResponse.OK
        for d in req.descriptors:
            key = (req.domain, tuple((e.key, e.value) for e in d.entries))
            self.seen.append(key)
            self.counts[key] += 1
            if self.counts[key] > 2:
                code = rls_pb2.RateLimitResponse.OVER_LIMIT
        return rls_pb2.RateLimitResponse(overall_code=code).SerializeToString()


async def _rls(service: RateLimitService, port: int) -> aio.Server:
    server = aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "envoy.service.ratelimit.v3.RateLimitService",
        {"ShouldRateLimit": grpc.unary_unary_rpc_method_handler(
            service.should_rate_limit, request_deserializer=None,
            response_serializer=None)}),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    return server


def _reviews_routes() -> str:
    return """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
  annotations: {ratelimit.legation.io/routes: '{"search": "2/60s"}'}
spec:
  hosts: [reviews]
  http:
  - name: search
    match: [{uri: {prefix: /search}}]
    route: [{destination: {host: reviews}}]
  - name: rest
    route: [{destination: {host: reviews}}]
"""


async def test_local_per_route_and_global_limits(mesh: MeshLab) -> None:
    rls_port = free_port()
    service = RateLimitService()
    rls = await _rls(service, rls_port)
    try:
        mesh.write("mesh-config.yaml", f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    extensionProviders:
    - name: rls
      envoyRateLimit: {{service: 127.0.0.1, port: {rls_port}, timeout: 2s, failOpen: false}}
""")
        for name in ("catalog", "reviews", "ratings"):
            mesh.service(name)
        await mesh.backend("catalog-v1", app="catalog",
                           annotations={"ratelimit.legation.io/local": "3/60s"})
        await mesh.backend("reviews-v1", app="reviews")
        await mesh.backend("ratings-v1", app="ratings", annotations={
            "ratelimit.legation.io/global": "rls",
            "ratelimit.legation.io/global-descriptors": "header:x-user"})
        mesh.write("reviews-routes.yaml", _reviews_routes())
        client = mesh.client("web")
        await mesh.start()

        async def statuses(host: str, path: str, n: int,
                           headers: dict[str, str] | None = None) -> list[int]:
            out = []
            for _ in range(n):
                resp = await mesh.get(client, host, path, headers=headers)
                out.append(resp.status)
                if resp.status == 429 and host.startswith("catalog"):
                    assert resp.header("x-local-rate-limit") == "true"
            return out

        assert await statuses("catalog.shop:9080", "/", 5) == [200, 200, 200, 429, 429]
        assert await statuses("reviews.shop:9080", "/search", 3) == [200, 200, 429]
        assert await statuses("reviews.shop:9080", "/other", 5) == [200] * 5
        alice, bob = {"x-user": "alice"}, {"x-user": "bob"}
        assert await statuses("ratings.shop:9080", "/", 3, alice) == [200, 200, 429]
        assert await statuses("ratings.shop:9080", "/", 2, bob) == [200, 200]
        assert ("shop", (("x-user", "alice"),)) in service.seen
        assert ("shop", (("x-user", "bob"),)) in service.seen
    finally:
        await rls.stop(None)
