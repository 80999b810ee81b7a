"""Gateway API status conditions written back to the objects, against the API server
emulation (status subresource, JSON merge patch), with the official client."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from k8s import ApiServer, objects
from k8s.harness import RecordingStore, running, until

from legation.kube.gatewaystatus import GatewayStatusWriter
from legation.sources.kubernetes import KubernetesSource

GW = "gateway.networking.k8s.io/v1"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _conditions(items: list[dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    return {c["type"]: (c["status"], c["reason"], c["lastTransitionTime"]) for c in items}


async def test_conditions_reach_every_object_and_change_only_when_they_change(
    apiserver: ApiServer, api: Any
) -> None:
    for obj in (objects.namespace("shop"), objects.gateway_class(),
                objects.api_gateway("web", "shop"), objects.service("svc", "shop"),
                objects.http_route("r", "shop", gateway="web", backend="svc"),
                objects.workload_entry("gw", "shop", "10.0.0.9",
                                       labels={"gateway.networking.k8s.io/gateway-name": "web"})):
        apiserver.apply(obj)
    store = RecordingStore()
    clock = Clock()
    writer = GatewayStatusWriter(api, clock=clock)
    async with running(KubernetesSource(store, api, backoff_base_s=0.01, backoff_cap_s=0.1)):
        await until(lambda: store.ready)
        assert writer.sync(store.snapshot().gateway_status) == 3  # class, gateway, route

        cls = apiserver.get(GW, "GatewayClass", "istio", namespace="")["status"]
        assert _conditions(cls["conditions"]) == {
            "Accepted": ("True", "Accepted", "2026-12-03T12:00:00Z")}
        gw = apiserver.get(GW, "Gateway", "web", namespace="shop")["status"]
        assert _conditions(gw["conditions"]) == {
            "Accepted": ("True", "Accepted", "2026-12-03T12:00:00Z"),
            "Programmed": ("True", "Programmed", "2026-12-03T12:00:00Z")}
        (listener,) = gw["listeners"]
        assert (listener["name"], listener["attachedRoutes"]) == ("http", 1)
        assert listener["supportedKinds"] == [
            {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
            {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}]
        route = apiserver.get(GW, "HTTPRoute", "r", namespace="shop")["status"]
        (parent,) = route["parents"]
        assert parent["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                       "namespace": "shop", "name": "web"}
        assert parent["controllerName"] == "istio.io/gateway-controller"
        assert _conditions(parent["conditions"])["ResolvedRefs"][:2] == ("True", "ResolvedRefs")

        # Nothing changed: nothing is written (our own status writes came back as events).
        assert writer.sync(store.snapshot().gateway_status) == 0

        # The backend goes away: only the route is written; its ResolvedRefs moves, with a
        # new transition time; Accepted keeps its old one.
        clock.now += timedelta(minutes=5)
        apiserver.delete("v1", "Service", "svc", namespace="shop")
        await until(lambda: any(c.reason == "BackendNotFound" for s in
                                store.snapshot().gateway_status for c in s.conditions))
        assert writer.sync(store.snapshot().gateway_status) == 1
        route = apiserver.get(GW, "HTTPRoute", "r", namespace="shop")["status"]
        found = _conditions(route["parents"][0]["conditions"])
        assert found["ResolvedRefs"] == ("False", "BackendNotFound", "2026-12-03T12:05:00Z")
        assert found["Accepted"] == ("True", "Accepted", "2026-12-03T12:00:00Z")
        assert len(apiserver.writes("httproutes")) == 2
