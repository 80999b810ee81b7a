"""Rate limits from annotations (model/ratelimit.py): read, checked, translated."""

from __future__ import annotations

import textwrap

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.ratelimit.v3 import rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)

from legation.cache import CLUSTER, LISTENER, ROUTE, Snapshot, SnapshotCache
from legation.mesh.analyze import analyze
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import Workload
from legation.model.ratelimit import GlobalRateLimit, LocalRateLimit
from legation.sources.convert import convert_text

HCM = http_connection_manager_pb2.HttpConnectionManager

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec: {selector: {app: catalog}, ports: [{name: http, port: 9080}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: catalog-v1
  namespace: shop
  annotations:
    ratelimit.legation.io/local: "4/60s"
    ratelimit.legation.io/global: rls
    ratelimit.legation.io/global-descriptors: "remote_address,header:x-user,generic:catalog"
spec: {address: 10.0.0.2, labels: {app: catalog}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web, namespace: shop}
spec: {address: 10.0.0.9, labels: {app: web}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: catalog
  namespace: shop
  annotations: {ratelimit.legation.io/routes: '{"search": "10/1s"}'}
spec:
  hosts: [catalog]
  http:
  - name: search
    match: [{uri: {prefix: /search}}]
    route: [{destination: {host: catalog}}]
  - name: rest
    route: [{destination: {host: catalog}}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: rls
      envoyRateLimit: {service: rls.infra.svc.cluster.local, port: 8081, timeout: 100ms}
"""


def pipeline(text: str = MESH) -> Pipeline:
    result = convert_text(textwrap.dedent(text), file="m.yaml")
    assert not [d for d in result.diagnostics if d.severity == "error"], [
        d.format() for d in result.diagnostics]
    store = MeshStore()
    store.replace_source("m", result.objects, result.diagnostics)
    return Pipeline(store, SnapshotCache(), Metrics())


def _filters(snap: Snapshot, inbound: bool) -> list[tuple[str, object]]:
    out = []
    for r in snap.of_type(LISTENER).values():
        listener = listener_pb2.Listener.FromString(r.body)
        if (listener.traffic_direction == 1) != inbound:
            continue
        for chain in listener.filter_chains[:1]:
            for f in chain.filters:
                if f.name == "envoy.filters.network.http_connection_manager":
                    hcm = HCM()
                    f.typed_config.Unpack(hcm)
                    out += [(h.name, h.typed_config) for h in hcm.http_filters]
    return out


def test_annotations_are_read_as_limits() -> None:
    result = convert_text(textwrap.dedent(MESH), file="m.yaml")
    (catalog,) = [o for o in result.objects
                  if isinstance(o, Workload) and o.name == "catalog-v1"]
    assert catalog.local_rate_limit == LocalRateLimit(tokens=4, fill_s=60.0)
    assert catalog.global_rate_limit == GlobalRateLimit(
        provider="rls", domain="shop",
        descriptors=("remote_address", "header:x-user", "generic:catalog"))


def test_bad_annotations_are_errors_where_they_are() -> None:
    bad = MESH.replace('"4/60s"', '"four a minute"').replace(
        '"remote_address,header:x-user,generic:catalog"', '"remote_address,cookie"').replace(
        '{"search": "10/1s"}', '{"serach": "10/1s"}')
    found = [d.format() for d in convert_text(textwrap.dedent(bad), file="m.yaml").diagnostics]
    text = "\n".join(found)
    assert "metadata.annotations[ratelimit.legation.io/local]" in text and "100/1s" in text
    assert "ratelimit.legation.io/global-descriptors" in text and "remote_address" in text
    assert "no http route is named 'serach'" in text and "rest, search" in text


def test_the_workloads_inbound_gets_its_bucket_first_and_the_global_check_last() -> None:
    snap = pipeline().snapshot_for("catalog-v1.shop")
    assert isinstance(snap, Snapshot)
    names = [n for n, _ in _filters(snap, inbound=True)]
    assert names[0] == "envoy.filters.http.local_ratelimit"
    assert names[-2:] == ["envoy.filters.http.ratelimit", "envoy.filters.http.router"]
    local = local_rate_limit_pb2.LocalRateLimit()
    dict(_filters(snap, inbound=True))["envoy.filters.http.local_ratelimit"].Unpack(local)
    assert local.token_bucket.max_tokens == 4 and local.token_bucket.fill_interval.seconds == 60
    shared = rate_limit_pb2.RateLimit()
    dict(_filters(snap, inbound=True))["envoy.filters.http.ratelimit"].Unpack(shared)
    assert shared.domain == "shop" and shared.timeout.nanos == 100_000_000
    assert shared.rate_limit_service.grpc_service.envoy_grpc.cluster_name == "ratelimit|rls"
    actions = shared.rate_limits[0].actions
    assert [a.WhichOneof("action_specifier") for a in actions] == [
        "remote_address", "request_headers", "generic_key"]
    assert "ratelimit|rls" in snap.of_type(CLUSTER)


def test_a_named_route_gets_its_own_bucket_on_every_proxy_that_uses_it() -> None:
    snap = pipeline().snapshot_for("web.shop")
    assert isinstance(snap, Snapshot)
    outbound = [n for n, _ in _filters(snap, inbound=False)]
    assert outbound[0] == "envoy.filters.http.local_ratelimit"
    (rc,) = [route_pb2.RouteConfiguration.FromString(r.body)
             for r in snap.of_type(ROUTE).values()]
    (vhost,) = [v for v in rc.virtual_hosts if v.name.startswith("catalog.")]
    limited = {r.name: "envoy.filters.http.local_ratelimit" in r.typed_per_filter_config
               for r in vhost.routes}
    assert limited == {"search": True, "rest": False}


def test_an_unknown_provider_is_reported_and_nothing_global_applied() -> None:
    p = pipeline(MESH.replace("- name: rls", "- name: other"))
    snap = p.snapshot_for("catalog-v1.shop")
    assert isinstance(snap, Snapshot)
    assert "envoy.filters.http.ratelimit" not in [n for n, _ in _filters(snap, inbound=True)]
    (d,) = [d for d in p.diagnostics if d.code == "ratelimit.provider-unknown"]
    assert "'rls'" in d.message and "known: other" in d.message
    result = convert_text(textwrap.dedent(MESH.replace("- name: rls", "- name: other")),
                          file="m.yaml")
    store = MeshStore()
    store.replace_source("m", result.objects, result.diagnostics)
    assert "ratelimit.provider-unknown" in {x.code for x in analyze(store.snapshot())}
