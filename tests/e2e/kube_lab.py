"""Shared pieces of the Kubernetes end-to-end tests (tests/e2e/test_kubernetes_*.py):
the emulated API server (tests/k8s), a kubeconfig pointing at it, an in-process
control plane reading the cluster from it, and the objects of a small shop.

Pods get 127.x loopback addresses as pod IPs; a demo app listens on each
catalog pod's IP, and the client pod's sidecar is a real Envoy whose outbound
listener binds `<client pod IP>:15001`: explicit mode, so the pods carry
`sidecar.istio.io/interceptionMode: NONE` (`EXPLICIT`; a Pod is transparent
by default). tests/e2e/test_transparent.py runs transparent pods.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from legation.app import App
from legation.bootstrap import build_bootstrap
from legation.settings import HostPort, Settings

from .harness import Envoy, EnvoyFleet, request

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

from k8s import ApiServer  # noqa: E402
from k8s import objects as k8s_objects  # noqa: E402

NS = "shop"
APP_PORT = 18080
CLUSTER = "outbound|80||catalog.shop.svc.cluster.local"
EXPLICIT = {"sidecar.istio.io/interceptionMode": "NONE"}  # no iptables: explicit mode

__all__ = ["APP_PORT", "CLUSTER", "EXPLICIT", "NS", "ApiServer", "k8s_objects"]


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulated",
        "clusters": [{"name": "emulated", "cluster": {"server": url}}],
        "users": [{"name": "legation", "user": {"token": "control-plane-token"}}],
        "contexts": [{"name": "emulated", "context": {"cluster": "emulated",
                                                       "user": "legation"}}],
    }))
    return path


@contextlib.asynccontextmanager
async def control_plane(kubeconfig_path: Path, *, host: str = "127.0.0.1",
                        **settings: Any) -> AsyncIterator[App]:
    """An in-process `legation serve --kubeconfig`, every port chosen by the OS; with
    `ca_dir`, also the TLS xDS listener. `settings` override Settings fields."""
    if settings.get("ca_dir") is not None:
        settings.setdefault("xds_tls_address", HostPort(host=host, port=0))
    config = Settings(kubeconfig=kubeconfig_path,
                      xds_address=HostPort(host=host, port=0),
                      admin_address=HostPort(host=host, port=0),
                      debounce_quiet_s=0.05, debounce_max_s=0.2, **settings)
    async with App(config) as app:
        async with asyncio.timeout(20):  # hang guard: serve only a fully listed picture
            while not app.ready()[0]:
                await asyncio.sleep(0.02)
        yield app


def endpoint(pod: str, ip: str, *, ready: bool = True, serving: bool | None = None,
             terminating: bool = False) -> dict[str, Any]:
    return {"addresses": [ip],
            "conditions": {"ready": ready, "serving": ready if serving is None else serving,
                           "terminating": terminating},
            "targetRef": {"kind": "Pod", "name": pod, "namespace": NS}, "nodeName": "node-0"}


def catalog_slice(endpoints: Sequence[dict[str, Any]]) -> dict[str, Any]:
    obj = k8s_objects.endpoint_slice("catalog-x7k2p", NS, "catalog", [], port=APP_PORT)
    obj["endpoints"] = list(endpoints)
    return obj


def shop(apiserver: ApiServer, *, client_ip: str, catalog_ips: Sequence[str]) -> None:
    """Namespace, node, Service catalog (80 -> APP_PORT), its pods, and the client pod."""
    apiserver.apply(k8s_objects.namespace(NS))
    apiserver.apply(k8s_objects.node("node-0"))
    apiserver.apply(k8s_objects.service("catalog", NS, ports=(("http", 80, APP_PORT),)))
    for i, ip in enumerate(catalog_ips, 1):
        apiserver.apply(k8s_objects.pod(f"catalog-{i}", NS, ip, labels={"app": "catalog"},
                                        service_account="catalog", port=APP_PORT,
                                        annotations=EXPLICIT))
    apiserver.apply(k8s_objects.pod("frontend-7d9f-x2x4z", NS, client_ip,
                                    labels={"app": "frontend"}, service_account="frontend",
                                    annotations=EXPLICIT))


async def sidecar(envoys: EnvoyFleet, app: App, *, node_id: str, address: str) -> Envoy:
    boot = build_bootstrap(node_id=node_id, node_cluster=NS, xds_host="127.0.0.1",
                           xds_port=app.xds.port, admin_host=address, admin_port=0)
    return await envoys.start(node_id.replace("~", "_"), boot)


async def hosts(envoy: Envoy) -> dict[str, str]:
    """{pod IP: EDS health} of the catalog cluster, as Envoy holds it."""
    status = await envoy.clusters()
    for entry in status["cluster_statuses"]:
        if entry["name"] == CLUSTER:
            return {h["address"]["socket_address"]["address"]:
                    h["health_status"].get("eds_health_status", "")
                    for h in entry.get("host_statuses", ())}
    return {}


async def served_by(address: str, n: int) -> Counter[str]:
    """Send `n` requests for catalog.shop through the sidecar at `address`:15001."""
    seen: Counter[str] = Counter()
    for _ in range(n):
        resp = await request(address, 15001, "GET", "/items", headers={"host": "catalog.shop"})
        seen[resp.header("x-served-by") or f"status {resp.status}"] += 1
    return seen
