"""Transparent interception end to end: a pod network (netns_lab.py) with Istio's
iptables redirection, a real Envoy sidecar inside it as group 1337, its config from
the Kubernetes source (the Pod has no interceptionMode annotation: transparent).

Outbound, a plain HTTP client in the pod dials a Service's cluster IP, which
exists nowhere: iptables sends it to ``virtualOutbound`` (15001), which routes
it by RDS route ``80`` to the catalog pod on the node side. A host outside the
mesh is reached through ``PassthroughCluster``; the pod calling its own
service goes out and back in through ``virtualInbound``. Inbound, a request
from the node to the pod IP arrives on 15006, passes the AuthorizationPolicy's
RBAC filter and reaches the pod's app from 127.0.0.6; a port no service
declares passes through to the app as TCP.

Skipped, with the reason, where the machine cannot build the pod network
(not root, no iproute2/iptables/util-linux, no nat table or owner match).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from legation.bootstrap import build_bootstrap
from legation.demo.envoy import Envoy

from .harness import AppFleet, EnvoyFleet, eventually, request
from .kube_lab import APP_PORT, EXPLICIT, NS, ApiServer, control_plane, k8s_objects, kubeconfig
from .netns_lab import ADMIN_PORT, NetworkSetupError, PodNetwork, unavailable

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(unavailable() is not None, reason=unavailable() or ""),
]

CATALOG_VIP, REVIEWS_VIP = "10.96.0.10", "10.96.0.20"  # routed nowhere: only iptables helps
REVIEWS_PORT = 9080  # the pod's app, a service port
UNDECLARED_PORT = 7070  # another app port of the pod that no service declares
TIMEOUT = 120.0  # the whole test, seconds

# A plain client, run inside the pod: it knows nothing of any proxy.
CLIENT = """
import asyncio, json, sys
from legation.demo.http import request
host, port, path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
r = asyncio.run(request(host, port, "GET", path, timeout=10))
print(json.dumps({"status": r.status, "headers": dict(r.headers), "body": r.text()}))
"""


@pytest.fixture
def pod_network() -> Iterator[PodNetwork]:
    try:
        net = PodNetwork.create()
    except NetworkSetupError as e:
        pytest.skip(f"cannot build a pod network with iptables redirection here: {e}")
    try:
        yield net
    finally:
        net.delete()


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


class PodEnvoy(Envoy):
    """The sidecar: Envoy in the pod's namespace, with the group iptables lets through."""

    def __init__(self, net: PodNetwork, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.net = net

    def command(self) -> list[str]:
        return self.net.as_proxy(*super().command())


def cluster_objects(apiserver: ApiServer, net: PodNetwork) -> None:
    """catalog: a pod on the node side, no sidecar; reviews: the pod in `net`."""
    for obj in (
        k8s_objects.namespace(NS), k8s_objects.node("node-0"),
        k8s_objects.service("catalog", NS, ports=(("http", 80, APP_PORT),),
                            cluster_ip=CATALOG_VIP),
        k8s_objects.pod("catalog-1", NS, net.host_ip, labels={"app": "catalog"},
                        service_account="catalog", port=APP_PORT, annotations=EXPLICIT),
        k8s_objects.endpoint_slice("catalog-abcde", NS, "catalog", [("catalog-1", net.host_ip)],
                                   port=APP_PORT),
        k8s_objects.service("reviews", NS, ports=(("http", REVIEWS_PORT, REVIEWS_PORT),),
                            cluster_ip=REVIEWS_VIP),
        # no annotation: a Pod is transparent by default
        k8s_objects.pod("reviews-1", NS, net.pod_ip, labels={"app": "reviews"},
                        service_account="reviews", port=REVIEWS_PORT),
        k8s_objects.endpoint_slice("reviews-fghij", NS, "reviews", [("reviews-1", net.pod_ip)],
                                   port=REVIEWS_PORT),
        {"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
         "metadata": {"name": "reviews", "namespace": NS},
         "spec": {"selector": {"matchLabels": {"app": "reviews"}}, "action": "DENY",
                  # with the port: a DENY's HTTP-only conditions are dropped on TCP
                  # (the passthrough), which would then deny every connection (as Istio)
                  "rules": [{"to": [{"operation": {"ports": [str(REVIEWS_PORT)],
                                                   "paths": ["/private*"]}}]}]}},
    ):
        apiserver.apply(obj)


async def in_pod(net: PodNetwork, host: str, port: int, path: str = "/") -> dict[str, Any]:
    """One request by a plain client process inside the pod."""
    proc = await asyncio.create_subprocess_exec(
        *net.inside(sys.executable, "-c", CLIENT, host, str(port), path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2])
    try:
        async with asyncio.timeout(20):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, err.decode()[-2000:]
    result: dict[str, Any] = json.loads(out)
    return result


async def pod_app(net: PodNetwork, name: str, port: int) -> asyncio.subprocess.Process:
    """A demo app in the pod, on every address (as Kubernetes apps usually listen)."""
    return await asyncio.create_subprocess_exec(
        *net.inside(sys.executable, "-m", "legation.demo.app", "--name", name,
                    "--listen", f"0.0.0.0:{port}"),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=Path(__file__).resolve().parents[2])


async def test_a_transparent_pod_is_intercepted_both_ways(
    apiserver: ApiServer, pod_network: PodNetwork, envoys: EnvoyFleet, apps: AppFleet,
    tmp_path: Path,
) -> None:
    net = pod_network
    cluster_objects(apiserver, net)
    processes: list[asyncio.subprocess.Process] = []
    try:
        async with asyncio.timeout(TIMEOUT):
            await apps.start("catalog-1", host=net.host_ip, port=APP_PORT)
            outside = await apps.start("outside", host=net.host_ip)  # no service: not mesh
            processes += [await pod_app(net, "reviews-1", REVIEWS_PORT),
                          await pod_app(net, "reviews-debug", UNDECLARED_PORT)]
            config = kubeconfig(tmp_path / "kubeconfig", apiserver.url)
            async with control_plane(config, host=net.host_ip) as app:
                sidecar = await start_sidecar(envoys, app, net)
                await check_config(sidecar)
                await check_outbound(net, sidecar, outside.port)
                await check_inbound(net, sidecar)
    finally:
        for proc in processes:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()


async def start_sidecar(envoys: EnvoyFleet, app: Any, net: PodNetwork) -> Envoy:
    boot = build_bootstrap(node_id=f"reviews-1.{NS}", node_cluster=NS, xds_host=net.host_ip,
                           xds_port=app.xds.port, admin_host=net.pod_ip, admin_port=ADMIN_PORT)
    sidecar = PodEnvoy(net, name="reviews-1", bootstrap=boot, workdir=envoys.workdir)
    envoys.envoys.append(sidecar)  # stopped and reaped by the fleet
    await sidecar.start(wait="ready", timeout=30)
    return sidecar


async def check_config(sidecar: Envoy) -> None:
    """The control plane chose transparent mode for the annotation-less Pod."""
    dump = await sidecar.config_dump(resource="dynamic_listeners")
    listeners = {c["name"]: c["active_state"]["listener"] for c in dump["configs"]}
    assert set(listeners) == {"virtualOutbound", "virtualInbound"}
    assert listeners["virtualOutbound"]["address"]["socket_address"]["port_value"] == 15001
    assert listeners["virtualInbound"]["address"]["socket_address"]["port_value"] == 15006


async def check_outbound(net: PodNetwork, sidecar: Envoy, outside_port: int) -> None:
    # a service's cluster IP: virtualOutbound, route "80", outbound|80||catalog...
    async def catalog() -> dict[str, Any] | None:
        r = await in_pod(net, CATALOG_VIP, 80, "/items")
        return r if r["status"] == 200 else None

    r = await eventually(catalog, timeout=20, what="catalog through the cluster IP")
    assert r is not None and r["headers"]["x-served-by"] == "catalog-1"
    echoed = json.loads(r["body"])["headers"]
    assert "x-request-id" in echoed  # the sidecar's HTTP connection manager added it
    # a destination outside the mesh: PassthroughCluster, the original destination
    r = await in_pod(net, net.host_ip, outside_port, "/hello")
    assert (r["status"], r["headers"]["x-served-by"]) == (200, "outside")
    stats = await sidecar.stats(filter="^cluster\\.PassthroughCluster\\.upstream_cx_total$")
    assert stats["cluster.PassthroughCluster.upstream_cx_total"] >= 1
    # the pod calling its own service: out through 15001, back in through 15006
    r = await in_pod(net, REVIEWS_VIP, REVIEWS_PORT, "/self")
    assert (r["status"], r["headers"]["x-served-by"]) == (200, "reviews-1")


async def check_inbound(net: PodNetwork, sidecar: Envoy) -> None:
    # from the node to the pod IP: virtualInbound, RBAC, inbound|9080|| from 127.0.0.6
    r = await request(net.pod_ip, REVIEWS_PORT, "GET", "/items", timeout=10)
    assert (r.status, r.header("x-served-by")) == (200, "reviews-1")
    assert r.header("x-envoy-upstream-service-time") is not None  # the sidecar answered
    denied = await request(net.pod_ip, REVIEWS_PORT, "GET", "/private/keys", timeout=10)
    assert (denied.status, denied.text()) == (403, "RBAC: access denied")
    # a port no service declares: passed through as TCP, no HTTP processing
    r = await request(net.pod_ip, UNDECLARED_PORT, "GET", "/debug", timeout=10)
    assert (r.status, r.header("x-served-by")) == (200, "reviews-debug")
    assert r.header("x-envoy-upstream-service-time") is None
    stats = await sidecar.stats(filter="^cluster\\.(inbound|InboundPassthrough)")
    assert stats["cluster.InboundPassthroughCluster.upstream_cx_total"] >= 1
    assert stats["cluster.inbound|9080||.upstream_rq_total"] >= 2  # the node's, the pod's own
