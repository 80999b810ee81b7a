"""EnvoyFilter: read and checked (sources/convert/envoyfilter.py), applied per proxy
(translators/envoyfilter.py) after translation, through the pipeline."""

from __future__ import annotations

import textwrap
from pathlib import Path

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

from legation.cache import CLUSTER, LISTENER, ROUTE, Snapshot, SnapshotCache
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import MeshSecurity
from legation.model.envoyfilter import ApplyTo, EnvoyFilter, Operation
from legation.sources.convert import convert_text

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"
HCM = http_connection_manager_pb2.HttpConnectionManager

# Istio's published local rate limit example (the selector aside), as users have it
LOCAL_RATE_LIMIT = (Path(__file__).parent / "local-ratelimit.yaml").read_text()
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"


def convert(text: str) -> tuple[list[object], list[str]]:
    result = convert_text(textwrap.dedent(text), file="ef.yaml")
    return list(result.objects), [d.format() for d in result.diagnostics]


def shop(*extra: str) -> Pipeline:
    store = MeshStore(security=MeshSecurity(mtls=True))
    for path in sorted(SHOP.glob("*.yaml")):
        result = convert_text(path.read_text(), file=path.name)
        store.replace_source(f"file:{path.name}", result.objects, result.diagnostics)
    for i, text in enumerate(extra):
        result = convert_text(textwrap.dedent(text), file=f"ef{i}.yaml")
        assert not result.diagnostics, [d.format() for d in result.diagnostics]
        store.replace_source(f"file:ef{i}.yaml", result.objects, ())
    return Pipeline(store, SnapshotCache(), Metrics())


def snapshot(pipeline: Pipeline, node: str) -> Snapshot:
    snap = pipeline.snapshot_for(node)
    assert isinstance(snap, Snapshot), snap
    return snap


def http_filters(snap: Snapshot, *, inbound: bool) -> list[list[str]]:
    out = []
    for r in snap.of_type(LISTENER).values():
        listener = listener_pb2.Listener.FromString(r.body)
        if (listener.traffic_direction == 1) != inbound:  # 1: INBOUND
            continue
        for chain in listener.filter_chains:
            for f in chain.filters:
                if f.name == "envoy.filters.network.http_connection_manager":
                    hcm = HCM()
                    f.typed_config.Unpack(hcm)
                    out.append([h.name for h in hcm.http_filters])
    return out


def test_istios_local_rate_limit_example_is_read_as_written() -> None:
    objects, diagnostics = convert(LOCAL_RATE_LIMIT)
    assert diagnostics == []
    (ef,) = objects
    assert isinstance(ef, EnvoyFilter) and ef.selector == (("app", "order"),)
    (patch,) = ef.patches
    assert (patch.apply_to, patch.operation) == (ApplyTo.HTTP_FILTER, Operation.INSERT_BEFORE)


def test_the_rate_limit_goes_first_in_the_selected_inbound_chains_only() -> None:
    pipeline = shop(LOCAL_RATE_LIMIT)
    order = snapshot(pipeline, "order-v1.shop")
    inbound = http_filters(order, inbound=True)
    assert inbound and all(chain[0] == "envoy.filters.http.local_ratelimit" for chain in inbound)
    assert all(chain[-1] == "envoy.filters.http.router" for chain in inbound)
    assert all("envoy.filters.http.local_ratelimit" not in chain
               for chain in http_filters(order, inbound=False))  # SIDECAR_INBOUND only
    catalog = snapshot(pipeline, "catalog-v1.shop")  # not selected
    assert all("envoy.filters.http.local_ratelimit" not in chain
               for chain in http_filters(catalog, inbound=True))


def test_clusters_merge_routes_get_a_route_and_the_rest_is_untouched() -> None:
    pipeline = shop("""\
        apiVersion: networking.istio.io/v1alpha3
        kind: EnvoyFilter
        metadata: {name: tweaks, namespace: shop}
        spec:
          workloadSelector: {labels: {app: frontend}}
          configPatches:
          - applyTo: CLUSTER
            match: {context: SIDECAR_OUTBOUND, cluster: {service: payment.shop.svc.cluster.local}}
            patch: {operation: MERGE, value: {connect_timeout: 7s}}
          - applyTo: HTTP_ROUTE
            match:
              context: SIDECAR_OUTBOUND
              routeConfiguration: {vhost: {name: "payment.shop.svc.cluster.local:9080"}}
            patch:
              operation: INSERT_FIRST
              value:
                name: maintenance
                match: {prefix: /admin}
                direct_response: {status: 503}
          - applyTo: CLUSTER
            patch:
              operation: ADD
              value:
                name: extra
                type: STATIC
                connect_timeout: 1s
                load_assignment:
                  cluster_name: extra
                  endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address:
                    {address: 127.0.0.1, port_value: 9999}}}}]}]
        """)
    before = snapshot(shop(), "frontend.shop")
    after = snapshot(pipeline, "frontend.shop")
    clusters = {n: cluster_pb2.Cluster.FromString(r.body)
                for n, r in after.of_type(CLUSTER).items()}
    assert clusters["outbound|9080||payment.shop.svc.cluster.local"].connect_timeout.seconds == 7
    assert clusters["outbound|9080||order.shop.svc.cluster.local"].connect_timeout.seconds != 7
    assert "extra" in clusters and "extra" not in before.of_type(CLUSTER)
    (rc,) = [route_pb2.RouteConfiguration.FromString(r.body)
             for r in after.of_type(ROUTE).values()]
    vhosts = {vh.name: vh for vh in rc.virtual_hosts}
    assert vhosts["payment.shop.svc.cluster.local:9080"].routes[0].name == "maintenance"
    assert vhosts["order.shop.svc.cluster.local:9080"].routes[0].name != "maintenance"
    # what no patch touched is byte for byte what the proxy got before
    for name, r in before.of_type(CLUSTER).items():
        if "payment" not in name:
            assert after.of_type(CLUSTER)[name].body == r.body, name


def test_bad_patches_are_reported_where_they_are_and_hold_the_filter_back() -> None:
    _, found = convert(f"""\
        apiVersion: networking.istio.io/v1alpha3
        kind: EnvoyFilter
        metadata: {{name: bad, namespace: shop}}
        spec:
          configPatches:
          - applyTo: HTTP_FILTER
            patch:
              operation: INSERT_BEFORE
              value:
                name: envoy.filters.http.local_ratelimit
                typed_config:
                  "@type": {LRL}
                  stat_prefx: x
          - applyTo: ROUTE_CONFIGURATION
            patch: {{operation: REMOVE}}
          - applyTo: BOOTSTRAP
            patch: {{operation: MERGE, value: {{}}}}
          - applyTo: CLUSTER
            match: {{proxy: {{proxyVersion: "^1\\\\.2.*"}}}}
            patch: {{operation: REMOVE}}
        """)
    text = "\n".join(found)
    assert "spec.configPatches[0].patch.value" in text and "stat_prefx" in text
    assert "spec.configPatches[1].patch.operation" in text
    assert "MERGE for ROUTE_CONFIGURATION" in text
    assert "spec.configPatches[2].applyTo" in text and "BOOTSTRAP patches are not applied" in text
    assert "spec.configPatches[3].match.proxy" in text
    assert all(" error " in line for line in found), found
