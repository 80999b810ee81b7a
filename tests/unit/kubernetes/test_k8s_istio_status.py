"""Istio objects' status (issue 14, item 3): whether each generation is in force, written
to the status subresource of the emulated API server with the official client."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from k8s import ApiServer, objects
from k8s.harness import RecordingStore, running, until

from legation.kube.istiostatus import IstioStatusWriter
from legation.sources.kubernetes import KubernetesSource

NET = "networking.istio.io/v1"


def _clock() -> datetime:
    return datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def _sync(writer: IstioStatusWriter, store: RecordingStore) -> int:
    mesh = store.snapshot()
    refs = [o.ref for o in store.objects("k8s").values()]
    return writer.sync(refs, mesh.diagnostics)


async def test_each_istio_object_says_whether_its_generation_is_in_force(
    apiserver: ApiServer, api: Any,
) -> None:
    apiserver.apply(objects.namespace("shop"))
    apiserver.apply(objects.service("reviews", "shop"))
    apiserver.apply(objects.service("ratings", "shop"))
    apiserver.apply(objects.virtual_service("good", "shop", "reviews"))
    bad = objects.virtual_service("bad", "shop", "ratings")
    bad["spec"]["http"][0]["timeout"] = "soon"
    apiserver.apply(bad)
    store = RecordingStore()
    writer = IstioStatusWriter(api, clock=_clock)
    async with running(KubernetesSource(store, api, backoff_base_s=0.01, backoff_cap_s=0.1)):
        await until(lambda: store.ready)
        assert _sync(writer, store) == 2
        assert _sync(writer, store) == 0  # nothing changed: nothing written

        good = apiserver.get(NET, "VirtualService", "good", namespace="shop")["status"]
        assert good["observedGeneration"] == 1
        assert good["conditions"] == [{
            "type": "Reconciled", "status": "True", "reason": "InForce",
            "message": "this generation is in force",
            "lastTransitionTime": "2026-12-03T12:00:00Z"}]
        assert good["validationMessages"] == []
        status = apiserver.get(NET, "VirtualService", "bad", namespace="shop")["status"]
        (cond,) = status["conditions"]
        assert (cond["status"], cond["reason"]) == ("False", "Invalid")
        assert "soon" in cond["message"]
        (msg,) = status["validationMessages"]
        assert msg["level"] == "ERROR" and msg["field"] == "spec.http[0].timeout"
        assert msg["type"]["code"].startswith("virtualservice.")

        # fixed: a new generation, in force
        fixed = objects.virtual_service("bad", "shop", "ratings")
        apiserver.apply(fixed)
        await until(lambda: ("VirtualService", "shop", "bad") in store.objects("k8s"))
        assert _sync(writer, store) == 1
        status = apiserver.get(NET, "VirtualService", "bad", namespace="shop")["status"]
        assert status["observedGeneration"] == 2
        assert status["conditions"][0]["status"] == "True"
        assert status["validationMessages"] == []
