"""EnvoyFilter with real Envoys (issue 15, item 3).

Istio's published local rate limit EnvoyFilter, unchanged but for its selector,
puts Envoy's local rate limiter first in catalog's inbound HTTP filters: four
requests a minute pass, the fifth gets 429 with `x-local-rate-limit: true`.
Then a second EnvoyFilter that parses but that Envoy refuses (an HTTP filter
added after the router): NACK containment holds it back with Envoy's reason
(`envoy.rejected`), catalog's proxy is back in sync on the last good config,
and the rate limit is still in force.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .harness import MeshLab, eventually

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

EXAMPLE = Path(__file__).parents[1] / "unit" / "envoyfilter" / "local-ratelimit.yaml"
LIMITER = "envoy.filters.http.local_ratelimit"

REFUSED = """\
apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: cors-after-router, namespace: shop}
spec:
  workloadSelector: {labels: {app: catalog}}
  configPatches:
  - applyTo: HTTP_FILTER
    match: {context: SIDECAR_INBOUND}
    patch:
      operation: ADD
      value:
        name: envoy.filters.http.cors
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.cors.v3.Cors}
"""


def _inbound_http_filters(dump: dict[str, Any]) -> list[list[str]]:
    out = []
    for config in dump["configs"]:
        for entry in config.get("dynamic_listeners", []):
            listener = entry.get("active_state", {}).get("listener", {})
            if listener.get("traffic_direction") != "INBOUND":
                continue
            for chain in listener.get("filter_chains", []):
                for f in chain.get("filters", []):
                    hcm = f.get("typed_config", {})
                    if "http_filters" in hcm:
                        out.append([h["name"] for h in hcm["http_filters"]])
    return out


async def test_istios_local_rate_limit_example_limits_and_a_refused_patch_is_held_back(
    mesh: MeshLab,
) -> None:
    mesh.service("catalog")
    catalog = await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("frontend")
    mesh.write("ratelimit.yaml", EXAMPLE.read_text().replace("app: order", "app: catalog"))
    await mesh.start()

    async def limited() -> list[list[str]] | None:
        found = _inbound_http_filters(await catalog.sidecar.config_dump())
        return found if found and all(c[0] == LIMITER for c in found) else None

    await eventually(limited, what="the rate limiter first in catalog's inbound filters")
    statuses = []
    for _ in range(6):
        resp = await mesh.get(client, "catalog.shop:9080")
        statuses.append(resp.status)
        if resp.status == 429:
            assert resp.header("x-local-rate-limit") == "true"
    assert statuses == [200, 200, 200, 200, 429, 429], statuses
    # the client's sidecar was not selected: its filters are as translated
    assert all(LIMITER not in c for c in _inbound_http_filters(
        await client.sidecar.config_dump()))

    mesh.write("refused.yaml", REFUSED)

    async def held_back() -> dict[str, Any] | None:
        found = [d for d in await mesh.control_plane.diagnostics()
                 if d["code"] == "envoy.rejected" and d["kind"] == "EnvoyFilter"
                 and d["name"] == "cors-after-router"]
        return found[0] if found else None

    diagnostic = await eventually(held_back, what="the refused EnvoyFilter reported", timeout=20)
    # Envoy's reason, passed on
    assert "envoy.filters.http.router must be the last filter" in diagnostic["message"]

    async def in_sync() -> bool:
        expected = await mesh.expected(catalog.node_id)
        acked = {t: v["acked_version"] for p in await mesh.control_plane.proxies()
                 if p["node"] == catalog.node_id for t, v in p["types"].items()}
        return all(acked.get(t) == v for t, v in expected.items())

    await eventually(in_sync, what="catalog back in sync on the last good config", timeout=20)
    chains = _inbound_http_filters(await catalog.sidecar.config_dump())
    assert chains and all(c[0] == LIMITER and "envoy.filters.http.cors" not in c
                          for c in chains), chains
    assert (await mesh.get(client, "catalog.shop:9080")).status == 429  # still limited
