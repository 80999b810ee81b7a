"""NACK containment with real Envoys (issue 13): one object Envoy rejects never freezes the
configuration every proxy shares.

The sidecars run with a stricter RE2 limit than Envoy's default
(`re2.max_program_size.error_level: 40`, an operator's runtime setting Legation
cannot know), so a VirtualService whose regex passes Legation's check (program
size 63, under the default 100) is refused by Envoy: the whole shared route
configuration is NACKed. Without containment every later route change would
stop there. With it, the VirtualService the NACKed change wrote is held back
(reported as `envoy.rejected`, Envoy's message included), the configuration
flows again, another service's new route reaches the client, and fixing the
object brings it in.
"""

from __future__ import annotations

from typing import Any

import pytest

from .harness import MeshLab, MeshWorkload, eventually

pytestmark = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])

TOO_BIG_FOR_THIS_ENVOY = "^/report/[a-z]{1,30}$"  # RE2 program size 63
SMALL = "^/report/[a-z]+$"


def vs(name: str, host: str, body: str) -> str:
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
            f"metadata: {{name: {name}, namespace: shop}}\n"
            f"spec:\n  hosts: [{host}]\n  http:\n{body}")


def catalog_vs(regex: str) -> str:
    return vs("catalog", "catalog", f"""\
  - match: [{{uri: {{regex: '{regex}'}}}}]
    headers: {{response: {{set: {{x-route: report}}}}}}
    route: [{{destination: {{host: catalog}}}}]
  - route: [{{destination: {{host: catalog}}}}]
""")


async def _strict_mesh(mesh: MeshLab) -> MeshWorkload:
    """catalog and ratings, a client, every sidecar on the stricter RE2 limit; started."""
    mesh.runtime = {"re2.max_program_size.error_level": 40}
    mesh.service("catalog")
    mesh.service("ratings")
    await mesh.backend("catalog-v1", app="catalog")
    await mesh.backend("ratings-v1", app="ratings")
    client = mesh.client("web")
    await mesh.start()
    return client


async def test_a_rejected_object_is_held_back_and_the_rest_keeps_flowing(mesh: MeshLab) -> None:
    client = await _strict_mesh(mesh)
    assert (await mesh.get(client, "catalog.shop:9080", "/report/x")).status == 200

    mesh.write("vs-catalog.yaml", catalog_vs(TOO_BIG_FOR_THIS_ENVOY))

    async def rejected() -> list[dict[str, Any]] | None:
        found = [d for d in await mesh.control_plane.diagnostics()
                 if d["code"] == "envoy.rejected"]
        return found or None

    (d,) = await eventually(rejected, timeout=15, what="the VirtualService reported rejected")
    assert (d["kind"], d["name"], d["severity"]) == ("VirtualService", "catalog", "error")
    assert "RE2 program size" in d["message"] and "it is left out" in d["message"]
    assert d["file"].endswith("vs-catalog.yaml")

    # Another service's new route reaches the client although the shared route
    # configuration was NACKed a moment ago.
    mesh.write("vs-ratings.yaml", vs("ratings", "ratings", """\
  - headers: {response: {set: {x-route: ratings-v2}}}
    route: [{destination: {host: ratings}}]
"""))

    async def ratings_routed() -> bool:
        resp = await mesh.get(client, "ratings.shop:9080", "/")
        return resp.status == 200 and resp.header("x-route") == "ratings-v2"

    await eventually(ratings_routed, timeout=15, what="the ratings route reaching the client")
    # the rejected rule is not in force; catalog keeps its default route
    resp = await mesh.get(client, "catalog.shop:9080", "/report/x")
    assert resp.status == 200 and resp.header("x-route") is None

    # Fixed: the new version is tried, accepted, and reported no more.
    mesh.write("vs-catalog.yaml", catalog_vs(SMALL))

    async def catalog_routed() -> bool:
        resp = await mesh.get(client, "catalog.shop:9080", "/report/x")
        return resp.header("x-route") == "report"

    await eventually(catalog_routed, timeout=15, what="the fixed VirtualService in force")
    assert await rejected() is None

    async def all_synced() -> bool:  # every proxy holds what it should: nothing NACKed now
        rows = await mesh.control_plane.admin_json("/debug/syncz")
        states = {t["status"] for row in rows for t in row["types"].values()}
        return bool(rows) and states <= {"SYNCED", "NOT SENT"}

    await eventually(all_synced, timeout=15, what="every proxy SYNCED")


async def test_a_change_of_several_objects_is_bisected_to_the_one_envoy_rejects(
    mesh: MeshLab,
) -> None:
    """Two VirtualServices written together, one of them refused by Envoy: both are held
    back, then retried by halves; the good one ends in force, the bad one held alone."""
    client = await _strict_mesh(mesh)
    mesh.write("vs-both.yaml", catalog_vs(TOO_BIG_FOR_THIS_ENVOY) + "---\n" + vs(
        "ratings", "ratings", """\
  - headers: {response: {set: {x-route: ratings-v2}}}
    route: [{destination: {host: ratings}}]
"""))

    async def ratings_routed() -> bool:
        resp = await mesh.get(client, "ratings.shop:9080", "/")
        return resp.header("x-route") == "ratings-v2"

    await eventually(ratings_routed, timeout=30, what="the good VirtualService in force")

    async def only_catalog_held() -> list[dict[str, Any]] | None:
        found = [d for d in await mesh.control_plane.diagnostics()
                 if d["code"] == "envoy.rejected"]
        return found if [d["name"] for d in found] == ["catalog"] else None

    (d,) = await eventually(only_catalog_held, timeout=30, what="only catalog held back")
    assert "RE2 program size" in d["message"]
    resp = await mesh.get(client, "catalog.shop:9080", "/report/x")
    assert resp.status == 200 and resp.header("x-route") is None
