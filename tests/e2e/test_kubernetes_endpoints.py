"""Issue 5 end to end: objects created in the emulated API server configure a real Envoy
sidecar through the Kubernetes source; EndpointSlice changes move traffic.

EndpointSlice conditions map to Envoy health: ready -> HEALTHY, serving and
terminating -> DRAINING, anything else -> not sent at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legation.translators.names import istio_node_id, node_id

from .harness import AppFleet, Envoy, EnvoyFleet, Loopback, eventually
from .kube_lab import (
    APP_PORT,
    NS,
    ApiServer,
    catalog_slice,
    control_plane,
    endpoint,
    hosts,
    k8s_objects,
    kubeconfig,
    served_by,
    shop,
    sidecar,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with ApiServer(bookmark_interval_s=1.0) as server:
        yield server


async def test_endpoint_slice_changes_reach_envoy_and_move_traffic(
    apiserver: ApiServer, envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback,
    tmp_path: Path,
) -> None:
    client, ip1, ip2 = loopback.many(3)
    shop(apiserver, client_ip=client, catalog_ips=(ip1, ip2))
    apiserver.apply(catalog_slice([endpoint("catalog-1", ip1)]))
    await apps.start("catalog-1", host=ip1, port=APP_PORT)
    await apps.start("catalog-2", host=ip2, port=APP_PORT)

    async with control_plane(kubeconfig(tmp_path / "kubeconfig", apiserver.url)) as app:
        envoy = await sidecar(envoys, app, address=client,
                              node_id=istio_node_id("frontend-7d9f-x2x4z", NS, ip=client))

        # the first picture: one ready endpoint
        assert await hosts(envoy) == {ip1: "HEALTHY"}
        assert await served_by(client, 5) == {"catalog-1": 5}

        # a second pod becomes ready: both receive traffic
        apiserver.apply(catalog_slice([endpoint("catalog-1", ip1), endpoint("catalog-2", ip2)]))
        await eventually(lambda: _is(envoy, {ip1: "HEALTHY", ip2: "HEALTHY"}),
                         what="catalog-2 added")
        assert set(await served_by(client, 30)) == {"catalog-1", "catalog-2"}

        # catalog-1 terminates but still serves: it drains, new requests go to catalog-2
        apiserver.apply(catalog_slice([
            endpoint("catalog-1", ip1, ready=False, serving=True, terminating=True),
            endpoint("catalog-2", ip2),
        ]))
        await eventually(lambda: _is(envoy, {ip1: "DRAINING", ip2: "HEALTHY"}),
                         what="catalog-1 draining")
        assert await served_by(client, 20) == {"catalog-2": 20}

        # catalog-1 stops serving: Envoy no longer has it at all
        apiserver.apply(catalog_slice([
            endpoint("catalog-1", ip1, ready=False, serving=False, terminating=True),
            endpoint("catalog-2", ip2),
        ]))
        await eventually(lambda: _is(envoy, {ip2: "HEALTHY"}), what="catalog-1 removed")

        # not ready (and not terminating) is left out too; catalog-2 alone again serves
        apiserver.apply(catalog_slice([endpoint("catalog-1", ip1, ready=False),
                                       endpoint("catalog-2", ip2)]))
        await eventually(lambda: _is(envoy, {ip2: "HEALTHY"}), what="not-ready left out")
        assert await served_by(client, 5) == {"catalog-2": 5}


async def test_a_pod_is_named_by_either_node_id_format(
    apiserver: ApiServer, envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback,
    tmp_path: Path,
) -> None:
    client, other, ip1 = loopback.many(3)
    shop(apiserver, client_ip=client, catalog_ips=(ip1,))
    apiserver.apply(k8s_pod_copy(apiserver, "frontend-7d9f-x2x4z", "frontend-7d9f-abcde", other))
    apiserver.apply(catalog_slice([endpoint("catalog-1", ip1)]))
    await apps.start("catalog-1", host=ip1, port=APP_PORT)

    async with control_plane(kubeconfig(tmp_path / "kubeconfig", apiserver.url)) as app:
        istio = await sidecar(envoys, app, address=client,
                              node_id=istio_node_id("frontend-7d9f-x2x4z", NS, ip=client))
        plain = await sidecar(envoys, app, address=other,
                              node_id=node_id("frontend-7d9f-abcde", NS))

        for envoy, address in ((istio, client), (plain, other)):
            listeners = await envoy.config_dump(resource="dynamic_listeners")
            [listener] = listeners["configs"]
            bound = listener["active_state"]["listener"]["address"]["socket_address"]
            assert bound == {"address": address, "port_value": 15001}  # the pod's own IP
            assert await served_by(address, 2) == {"catalog-1": 2}
        assert {s.node_id for s in app.status.all()} == {
            istio_node_id("frontend-7d9f-x2x4z", NS, ip=client), node_id("frontend-7d9f-abcde", NS)}


def k8s_pod_copy(apiserver: ApiServer, name: str, new_name: str, ip: str) -> dict[str, object]:
    pod = apiserver.get("v1", "Pod", name, NS)
    assert pod is not None
    meta = {k: v for k, v in pod["metadata"].items()
            if k not in ("resourceVersion", "uid", "creationTimestamp")}
    return {**pod, "metadata": {**meta, "name": new_name},
            "status": {**pod["status"], "podIP": ip, "podIPs": [{"ip": ip}]}}


async def _is(envoy: Envoy, want: dict[str, str]) -> bool:
    return await hosts(envoy) == want


async def test_istio_objects_get_their_status_from_the_running_control_plane(
    apiserver: ApiServer, tmp_path: Path,
) -> None:
    """Issue 14: `kubectl get virtualservice -o yaml` says whether it is in force."""
    good = k8s_objects.virtual_service("good", NS, "catalog")
    bad = k8s_objects.virtual_service("bad", NS, "ratings")
    bad["spec"]["http"][0]["timeout"] = "soon"
    for obj in (k8s_objects.namespace(NS), k8s_objects.service("catalog", NS),
                k8s_objects.service("ratings", NS), good, bad):
        apiserver.apply(obj)
    async with control_plane(kubeconfig(tmp_path / "kubeconfig", apiserver.url)) as app:

        async def statuses() -> dict[str, tuple[str, str, int]] | None:
            out = {}
            for name in ("good", "bad"):
                status = apiserver.get("networking.istio.io/v1", "VirtualService", name,
                                       namespace=NS).get("status")
                if not status:
                    return None
                (cond,) = status["conditions"]
                out[name] = (cond["status"], cond["reason"], status["observedGeneration"])
            return out

        found = await eventually(statuses, what="both VirtualServices' status", timeout=15)
        assert found == {"good": ("True", "InForce", 1), "bad": ("False", "Invalid", 1)}

        # a proxy NACKs what `good` produced (as ChangeLog reports it): an Event on it,
        # and its status says it is held back
        app._contain((("VirtualService", NS, "good"),), "frontend.shop", "rds",
                     "invalid regex")

        async def event() -> dict[str, Any] | None:
            return next((o for o in apiserver.objects() if o.get("kind") == "Event"
                         and o["involvedObject"]["name"] == "good"), None)

        found_event = await eventually(event, what="an EnvoyRejected Event", timeout=15)
        assert (found_event["reason"], found_event["type"]) == ("EnvoyRejected", "Warning")
        assert found_event["involvedObject"]["kind"] == "VirtualService"
        assert "frontend.shop" in found_event["message"]
        assert "invalid regex" in found_event["message"]

        async def rejected() -> bool:
            found = await statuses()
            return found is not None and found["good"][:2] == ("False", "Rejected")

        await eventually(rejected, what="good's status: Rejected", timeout=15)
