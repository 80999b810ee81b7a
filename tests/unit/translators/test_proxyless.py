"""What proxyless gRPC clients and servers are sent (translators/proxyless.py)."""

from __future__ import annotations

import textwrap

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

from legation.mesh.store import MeshStore
from legation.model import MeshSnapshot
from legation.sources.convert import convert_text
from legation.translators.proxyless import proxyless_resources, server_resources

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec: {selector: {app: catalog}, ports: [{name: grpc, port: 7070}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-v1, namespace: shop}
spec: {address: 10.0.0.2, labels: {app: catalog}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: catalog, namespace: shop}
spec:
  hosts: [catalog]
  http:
  - timeout: 3s
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}]}
    fault: {abort: {httpStatus: 503, percentage: {value: 10}}}
    route: [{destination: {host: catalog}}]
"""


def mesh() -> MeshSnapshot:
    result = convert_text(textwrap.dedent(MESH), file="m.yaml")
    store = MeshStore()
    store.replace_source("m", result.objects, result.diagnostics)
    return store.snapshot()


def test_every_host_port_form_is_a_listener_with_its_route_configuration() -> None:
    out = proxyless_resources(mesh(), "shop")
    names = sorted(x.name for x in out.listeners)
    assert names == sorted(r.name for r in out.routes)
    assert {"catalog:7070", "catalog.shop:7070", "catalog.shop.svc:7070",
            "catalog.shop.svc.cluster.local:7070"} <= set(names)
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    out.listeners[0].api_listener.api_listener.Unpack(hcm)
    assert [f.name for f in hcm.http_filters] == ["envoy.filters.http.fault",
                                                  "envoy.filters.http.router"]
    route = out.routes[0].virtual_hosts[0].routes[0]
    assert list(route.typed_per_filter_config) == ["envoy.filters.http.fault"]  # no CORS
    assert route.route.max_stream_duration.max_stream_duration.seconds == 3
    (d,) = [d for d in out.diagnostics if d.code == "proxyless.filter-not-served"]
    assert "envoy.filters.http.cors" in d.message
    (cluster,) = out.clusters
    assert cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    (cla,) = out.endpoints
    assert all(g.HasField("locality") and g.load_balancing_weight.value == 1
               for g in cla.endpoints)


def test_a_server_gets_its_inbound_listener_by_the_a36_template() -> None:
    m = mesh()
    (w,) = [w for w in m.workloads if w.name == "catalog-v1"]
    out = server_resources(m, w)
    assert sorted(x.name for x in out.listeners) == sorted(
        f"xds.istio.io/grpc/lds/inbound/{h}:7070" for h in ("10.0.0.2", "0.0.0.0", "[::]"))
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    out.listeners[0].filter_chains[0].filters[0].typed_config.Unpack(hcm)
    route = hcm.route_config.virtual_hosts[0].routes[0]
    assert route.HasField("non_forwarding_action")
