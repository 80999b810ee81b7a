"""Issue 12 (part): CSDS, `legation proxy-status` and `legation proxy-config`, against
a real `legation serve` with real Envoys, and a client that NACKs.

Evidence: CSDS (`FetchClientStatus`, a real gRPC channel) reports every resource
of a real Envoy ACKED and SYNCED, with contents (never a secret's), node
matchers pick one proxy; a client that rejects its clusters is NACKED with its
error message, in CSDS and in `legation proxy-status`; `proxy-config` prints
istioctl-like tables of what a proxy is sent.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import pytest
import yaml
from envoy.admin.v3 import config_dump_shared_pb2 as shared
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import node_pb2, string_pb2
from grpc import aio

from .harness import MeshLab, eventually, workload_entry_yaml

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
NACK_MESSAGE = "cluster outbound|9080||catalog.shop.svc.cluster.local: rejected by the test"
VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog, namespace: shop}
spec:
  hosts: [catalog]
  http: [{timeout: 3s, route: [{destination: {host: catalog}}]}]
"""


def _cli(mesh: MeshLab, *args: str) -> subprocess.CompletedProcess[str]:
    host, port = mesh.control_plane.admin
    return subprocess.run([sys.executable, "-m", "legation", *args,
                           "--admin-address", f"{host}:{port}"],
                          capture_output=True, text=True, timeout=60, check=False)


async def _nack_clusters(channel: aio.Channel, node_id: str) -> aio.StreamStreamCall:
    """A raw ADS client: asks for clusters, rejects what it gets, keeps the stream open."""
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    request = discovery_pb2.DiscoveryRequest(type_url=CDS)
    request.node.id = node_id
    await call.write(request)
    response = await asyncio.wait_for(call.read(), 10)
    nack = discovery_pb2.DiscoveryRequest(type_url=CDS, response_nonce=response.nonce)
    nack.error_detail.message = NACK_MESSAGE
    await call.write(nack)
    return call


async def test_csds_and_proxy_status_for_real_envoys_and_a_nacking_client(
    mesh: MeshLab,
) -> None:
    mesh.service("catalog")
    await mesh.backend("catalog-v1", app="catalog")
    client = mesh.client("frontend")
    mesh.write("workload-rejecter.yaml", workload_entry_yaml(
        "rejecter", "shop", address=mesh.loopback.next(), labels={"app": "rejecter"}))
    await mesh.start()
    await eventually(lambda: mesh.converged([client.node_id]), what="the Envoys ACKed")

    host, port = mesh.control_plane.xds
    async with aio.insecure_channel(f"{host}:{port}") as channel:
        nacking = await _nack_clusters(channel, "rejecter.shop")
        csds = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)

        async def rejected() -> csds_pb2.ClientConfig | None:
            only = csds_pb2.ClientStatusRequest(node_matchers=[node_pb2.NodeMatcher(
                node_id=string_pb2.StringMatcher(exact="rejecter.shop"))])
            (config,) = (await csds.FetchClientStatus(only)).config
            clusters = [c for c in config.generic_xds_configs if c.type_url == CDS]
            return config if clusters and all(
                c.client_status == shared.NACKED for c in clusters) else None

        config = await eventually(rejected, what="the NACK in CSDS")
        clusters = [c for c in config.generic_xds_configs if c.type_url == CDS]
        assert {c.config_status for c in clusters} == {csds_pb2.ERROR}
        assert clusters[0].error_state.details == NACK_MESSAGE

        everyone = await csds.FetchClientStatus(csds_pb2.ClientStatusRequest())
        nodes = {c.node.id for c in everyone.config}
        assert {"frontend.shop", "catalog-v1.shop", "rejecter.shop"} <= nodes
        (frontend,) = [c for c in everyone.config if c.node.id == "frontend.shop"]
        held = {(c.type_url.rsplit(".", 1)[-1], c.name): c for c in frontend.generic_xds_configs}
        cluster = held[("Cluster", "outbound|9080||catalog.shop.svc.cluster.local")]
        assert (cluster.client_status, cluster.config_status) == (shared.ACKED, csds_pb2.SYNCED)
        assert cluster.xds_config.type_url == CDS and cluster.version_info
        assert all(c.client_status == shared.ACKED for c in frontend.generic_xds_configs)

        # Streaming: one answer per request.
        stream = csds.StreamClientStatus()
        await stream.write(csds_pb2.ClientStatusRequest(exclude_resource_contents=True))
        answer = await asyncio.wait_for(stream.read(), 10)
        assert not any(c.xds_config.value for cfg in answer.config
                       for c in cfg.generic_xds_configs)
        stream.cancel()

        table = _cli(mesh, "proxy-status")
        assert table.returncode == 0, table.stderr
        print("\n" + table.stdout)
        lines = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:]}
        assert lines["frontend.shop"][2:6] == ["SYNCED", "SYNCED", "SYNCED", "SYNCED"]
        assert lines["rejecter.shop"][2] == "NACKED"
        detail = _cli(mesh, "proxy-status", "rejecter.shop")
        print(detail.stdout)
        assert "NACK of version" in detail.stdout and NACK_MESSAGE in detail.stdout
        nacking.cancel()

    # A change, followed to every proxy it affects: `legation changes`, the histogram.
    mesh.write("vs-catalog.yaml", VS)

    async def reached() -> dict[str, Any] | None:
        found = [c for c in await mesh.control_plane.admin_json("/debug/changes")
                 if "VirtualService shop/catalog" in c["objects"]]
        return found[0] if found and found[0]["converged"] else None

    change = await eventually(reached, what="the VirtualService change converged")
    assert {"frontend.shop", "catalog-v1.shop"} <= set(change["proxies"])
    assert all(p["acked_after_ms"] is not None for p in change["proxies"].values())
    listing = _cli(mesh, "changes")
    print(listing.stdout)
    assert listing.returncode == 0 and "VirtualService shop/catalog" in listing.stdout
    one = _cli(mesh, "changes", str(change["id"]))
    print(one.stdout)
    assert "frontend.shop: ACKed after" in one.stdout
    metrics = await mesh.control_plane.metrics()
    assert "legation_change_convergence_seconds_count" in metrics

    config_table = _cli(mesh, "proxy-config", "clusters", "frontend.shop")
    assert config_table.returncode == 0, config_table.stderr
    print(config_table.stdout)
    rows = [line.split() for line in config_table.stdout.splitlines()]
    assert rows[0] == ["SERVICE", "FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE"]
    assert ["catalog.shop.svc.cluster.local", "9080", "-", "outbound", "EDS"] in rows
    routes = _cli(mesh, "proxy-config", "routes", "frontend.shop", "-o", "json")
    assert '"name": "http_proxy"' in routes.stdout
    boot = _cli(mesh, "proxy-config", "bootstrap", "frontend.shop")
    assert boot.returncode == 0, boot.stderr
    assert boot.stdout.startswith("# the bootstrap `legation bootstrap` writes")
    written = yaml.safe_load(boot.stdout)
    assert written["node"]["id"] == "frontend.shop"
    assert written["dynamic_resources"]["ads_config"]["api_type"] in ("GRPC", "DELTA_GRPC")
    unknown = _cli(mesh, "proxy-config", "bootstrap", "ghost.shop")
    assert unknown.returncode == 1 and "names no workload" in unknown.stderr

