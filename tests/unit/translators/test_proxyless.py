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


def _entry(*addresses: str) -> str:
    endpoints = ", ".join(f"{{address: {a}}}" for a in addresses)
    return f"""\
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: rates, namespace: shop}}
spec:
  hosts: [rates.example.com]
  resolution: DNS
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{endpoints}]
"""


def test_one_dns_name_is_a_logical_dns_cluster_several_are_not_served() -> None:
    name = "outbound|80||rates.example.com"
    (one,) = [c for c in proxyless_resources(mesh(_entry("rates.internal")), "shop").clusters
              if c.name == name]
    assert one.type == cluster_pb2.Cluster.LOGICAL_DNS
    out = proxyless_resources(mesh(_entry("a.internal", "b.internal")), "shop")
    assert name not in {c.name for c in out.clusters}
    (d,) = [d for d in out.diagnostics if d.code == "proxyless.cluster-not-served"]
    assert name in d.message and "STRICT_DNS" in d.message


def test_a_proxyless_client_is_sent_its_own_clusters_only() -> None:
    """No shared sidecar base: gRPC NACKs a whole response over one cluster it cannot use,
    even one it never asked for (a LEAST_REQUEST sidecar cluster)."""
    from legation.cache import CLUSTER, LISTENER, SnapshotCache
    from legation.mesh.pipeline import Pipeline
    from legation.metrics import Metrics

    result = convert_text(textwrap.dedent(MESH) + """\
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: shop}
spec: {host: catalog, subsets: [{name: v1, labels: {app: catalog}}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop}
spec: {address: 10.0.0.9, labels: {app: web}}
""", file="m.yaml")
    store = MeshStore()
    store.replace_source("m", result.objects, result.diagnostics)
    pipeline = Pipeline(store, SnapshotCache(), Metrics())
    snap = pipeline.snapshot_for("proxyless~10.0.0.9~web.shop~shop.svc.cluster.local")
    clusters = [cluster_pb2.Cluster.FromString(r.body) for r in snap.of_type(CLUSTER).values()]
    assert clusters and all(c.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN for c in clusters)
    # the subset's cluster is the sidecars' (no route of this client uses it)
    assert list(snap.of_type(CLUSTER)) == ["outbound|7070||catalog.shop.svc.cluster.local"]
    assert all(":" in n or n.startswith("xds.istio.io/") for n in snap.of_type(LISTENER))
