"""What proxyless gRPC clients and servers are sent (translators/proxyless.py)."""

from __future__ import annotations

import textwrap

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2

from legation.mesh.store import MeshStore
from legation.model import MeshSecurity, MeshSnapshot
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


def mesh(extra: str = "", *, mtls: bool = False, meshed: bool = False) -> MeshSnapshot:
    """`MESH` (+ `extra`); `meshed`: catalog-v1 is labelled as running a sidecar/agent."""
    label = "labels: {app: catalog, security.istio.io/tlsMode: istio}"
    text = MESH.replace("labels: {app: catalog}", label) if meshed else MESH
    result = convert_text(textwrap.dedent(text) + extra, file="m.yaml")
    assert not result.diagnostics, result.diagnostics
    store = MeshStore(security=MeshSecurity(mtls=mtls))
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


ISTIO_MUTUAL = """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: shop}
spec: {host: catalog, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
"""


def test_istio_mutual_names_the_bootstraps_certificate_provider() -> None:
    (cluster,) = proxyless_resources(mesh(ISTIO_MUTUAL, mtls=True), "shop").clusters
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    common = context.common_tls_context
    assert not common.tls_certificate_sds_secret_configs  # gRPC reads no SDS
    assert common.tls_certificate_provider_instance.instance_name == "default"
    assert common.validation_context.ca_certificate_provider_instance.instance_name == "default"
    assert not cluster.transport_socket_matches


def test_automatic_mtls_is_for_sidecars_only() -> None:
    (cluster,) = proxyless_resources(mesh(mtls=True, meshed=True), "shop").clusters
    assert not cluster.transport_socket_matches and not cluster.HasField("transport_socket")


def test_tls_from_files_is_never_sent_to_grpc_in_plaintext() -> None:
    simple = ISTIO_MUTUAL.replace("{mode: ISTIO_MUTUAL}", "{mode: SIMPLE}")
    out = proxyless_resources(mesh(simple, mtls=True), "shop")
    assert not out.clusters and not out.endpoints
    (d,) = [d for d in out.diagnostics if d.code == "proxyless.tls-not-served"]
    assert "fail (UNAVAILABLE) rather than go out unencrypted" in d.message


STRICT = """\
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: STRICT}}
"""


def _server_tls(m: MeshSnapshot) -> tls_pb2.DownstreamTlsContext | None:
    (w,) = [w for w in m.workloads if w.name == "catalog-v1"]
    chain = server_resources(m, w).listeners[0].filter_chains[0]
    if not chain.HasField("transport_socket"):
        return None
    context = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(context)
    return context


def test_a_strict_server_requires_client_certificates_from_the_provider() -> None:
    context = _server_tls(mesh(STRICT, mtls=True))
    assert context is not None and context.require_client_certificate.value
    assert context.common_tls_context.tls_certificate_provider_instance.instance_name == "default"
    assert _server_tls(mesh(STRICT, mtls=False)) is None  # no CA: nothing to present


def test_a_permissive_server_uses_mtls_only_when_labelled_meshed() -> None:
    assert _server_tls(mesh(mtls=True)) is None
    assert _server_tls(mesh(mtls=True, meshed=True)) is not None
