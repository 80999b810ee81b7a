"""Translation semantics that goldens show but do not explain: who shares what, and when."""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)

from legation.cache import ROUTE, Snapshot
from legation.mesh.analyze import analyze
from legation.mesh.memo import Memo, build_snapshot
from legation.model import Proxy, Severity
from legation.model.traffic import HttpMatch, KeyMatch, MatchKind, Retry, StringMatch
from legation.translators import route_key, translate_namespace, translate_proxy
from legation.translators.retry import default_retry_policy, retry_policy
from legation.translators.routeparts import is_catch_all, route_match

from .traffic_builders import CATALOG_DR, Mesh, vs

TESTERS = vs("""\
    hosts: [catalog]
    http:
    - match: [{sourceLabels: {env: test}}]
      fault: {abort: {httpStatus: 418}}
      route: [{destination: {host: catalog, subset: v2}}]
    - route: [{destination: {host: catalog, subset: v1}}]
    """)

CLIENTS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: plain-1, namespace: shop}
spec: {address: 10.0.0.21, labels: {app: plain}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: plain-2, namespace: shop}
spec: {address: 10.0.0.22, labels: {app: plain}}
"""


def _proxy(mesh: Mesh, name: str) -> Proxy:
    w = mesh.snapshot().workload("shop", name)
    assert w is not None
    return Proxy(node_id=f"{name}.shop", workload=w)


def _clusters(config: rc.RouteConfiguration) -> list[str]:
    (vhost,) = [v for v in config.virtual_hosts if v.name.startswith("catalog.")]
    return [r.route.cluster for r in vhost.routes]


def test_source_labels_split_the_route_config_only_by_what_matches() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=TESTERS, clients=CLIENTS)
    snap = mesh.snapshot()
    tester, plain1, plain2 = (_proxy(mesh, n) for n in ("client", "plain-1", "plain-2"))
    assert route_key(snap, tester) == frozenset({("shop", "catalog", 0, 0)})
    assert route_key(snap, plain1) == route_key(snap, plain2) == frozenset()

    memo = Memo.of(snap)
    built = {p.node_id: build_snapshot(memo, p.node_id, changed_at=0.0)
             for p in (tester, plain1, plain2)}
    assert len(memo.namespaces) == 2  # one config for the testers, one shared by the rest
    routes = {}
    for node, snapshot in built.items():
        assert isinstance(snapshot, Snapshot)
        routes[node] = snapshot.of_type(ROUTE)
    assert routes["plain-1.shop"]["http_proxy"] is routes["plain-2.shop"]["http_proxy"]
    tester_routes, plain_routes = routes["client.shop"], routes["plain-1.shop"]
    assert tester_routes["http_proxy"].version != plain_routes["http_proxy"].version

    (testers,) = translate_namespace(snap, "shop", route_key(snap, tester)).routes
    (others,) = translate_namespace(snap, "shop").routes
    assert _clusters(testers) == ["outbound|9080|v2|catalog.shop.svc.cluster.local"]
    assert _clusters(others) == ["outbound|9080|v1|catalog.shop.svc.cluster.local"]


def test_fault_and_cors_filters_only_when_a_route_uses_them() -> None:
    def filters(mesh: Mesh) -> list[str]:
        own = translate_proxy(mesh.snapshot(), _proxy(mesh, "client"))
        (listener,) = [x for x in own.listeners if x.name.endswith("_15001")]
        config = hcm.HttpConnectionManager()
        listener.filter_chains[0].filters[0].typed_config.Unpack(config)
        return [f.name for f in config.http_filters]

    dfp, router = "envoy.filters.http.dynamic_forward_proxy", "envoy.filters.http.router"
    assert filters(Mesh(dr=CATALOG_DR)) == [dfp, router]
    assert filters(Mesh(dr=CATALOG_DR, vs=TESTERS)) == ["envoy.filters.http.fault", dfp, router]
    cors = vs("hosts: [catalog]\nhttp:\n- corsPolicy: {allowOrigins: [{exact: https://a}]}\n"
              "  route: [{destination: {host: catalog}}]")
    assert filters(Mesh(dr=CATALOG_DR, vs=cors)) == ["envoy.filters.http.cors", dfp, router]


def test_retry_policy_conversion() -> None:
    assert retry_policy(None) == default_retry_policy()
    assert retry_policy(Retry(attempts=0)) is None
    custom = retry_policy(Retry(attempts=4, retry_on=("gateway-error",),
                                retriable_status_codes=(429,), per_try_timeout_ms=250))
    assert custom is not None
    assert (custom.num_retries.value, custom.retry_on, list(custom.retriable_status_codes)) == (
        4, "gateway-error,retriable-status-codes", [429])
    assert custom.per_try_timeout.ToMilliseconds() == 250
    only_conditions = retry_policy(Retry(attempts=1, retry_on=("5xx",)))
    assert only_conditions is not None and list(only_conditions.retriable_status_codes) == []
    hashed = retry_policy(None, consistent_hash=True)
    assert hashed is not None and list(hashed.retry_host_predicate) == []


def test_catch_all_is_path_only() -> None:
    assert is_catch_all(route_match(None))
    assert is_catch_all(route_match(HttpMatch(uri=StringMatch(kind=MatchKind.REGEX, value=".*"))))
    assert not is_catch_all(route_match(HttpMatch(headers=(KeyMatch(name="x"),))))
    assert not is_catch_all(route_match(HttpMatch(uri=StringMatch(kind=MatchKind.PREFIX,
                                                                  value="/a"))))


def test_analyze_reports_translation_findings_too() -> None:
    tcp = vs("hosts: [catalog]\ntcp:\n- route: [{destination: {host: catalog}}]", name="tcp")
    found = analyze(Mesh(dr=CATALOG_DR, tcp=tcp).snapshot())
    (d,) = [d for d in found if d.code == "virtualservice.tcp-not-applied"]
    assert (d.severity, d.field, d.ref.file) == (Severity.INFO, "spec.tcp", "tcp.yaml")
