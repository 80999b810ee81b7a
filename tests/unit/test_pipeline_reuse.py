"""Pipeline reuse across mesh versions: whatever it keeps, it serves what a rebuild would.

The pipeline keeps route configurations while the `route_view` is unchanged,
a proxy's own resources while its `proxy_view` and `Proxy` are, computes
locality assignments once per client, and builds snapshots on a shared
`SnapshotBase`. Here every snapshot it serves, after any sequence of
changes, is compared with one assembled from scratch from the translators'
public entry points: same resources, same order, same bytes, same versions.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest
import yaml
from envoy.config.route.v3 import route_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from legation.cache import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    VIRTUAL_HOST,
    ProxyError,
    Resource,
    Snapshot,
    SnapshotCache,
)
from legation.mesh.memo import to_resources
from legation.mesh.pipeline import Pipeline
from legation.mesh.store import MeshStore
from legation.metrics import Metrics
from legation.model import MeshObject, MeshSecurity, MeshSnapshot
from legation.sources.convert import convert_text
from legation.translators import (
    resolve_proxy,
    route_key,
    split_virtual_hosts,
    translate_mesh,
    translate_namespace,
    translate_proxy,
)

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "examples" / "shop"
GOLDEN = sorted(p.parent for p in (ROOT / "tests" / "golden").glob("*/in.yaml"))
NODES = ["frontend.shop", "order-v1.shop", "catalog-v1.shop", "catalog-v2.shop",
         "payment-v1.shop", "catalog-v3.shop", "web.other", "ghost.shop"]


def from_scratch(
    mesh: MeshSnapshot, node_id: str, *, vhds: bool = False
) -> Snapshot | ProxyError | None:
    """What a proxy gets, assembled without any of the pipeline's reuse (`vhds`: as a
    delta ADS proxy, its route configurations split by `split_virtual_hosts`)."""
    proxy = resolve_proxy(mesh, node_id)
    if proxy is None:
        return None
    if proxy.gateways:  # its servers' listeners and routes only, never split
        return Snapshot.build([*to_resources(translate_mesh(mesh)),
                               *to_resources(translate_proxy(mesh, proxy))])
    routes = translate_namespace(mesh, proxy.namespace, route_key(mesh, proxy), proxy.mode)
    route_resources = to_resources(routes)
    if vhds:
        route_resources = [r for r in route_resources if r.type_url != ROUTE]
        for config in routes.routes:
            bare, hosts = split_virtual_hosts(config)
            route_resources += [Resource.of(ROUTE, bare.name, bare),
                                *(Resource.of(VIRTUAL_HOST, vh.name, vh) for vh in hosts)]
    return Snapshot.build([*to_resources(translate_mesh(mesh)), *route_resources,
                           *to_resources(translate_proxy(mesh, proxy))])


def served(entry: Snapshot | ProxyError | None) -> object:
    """A snapshot as the wire sees it: per type, (name, bytes) in order, and versions."""
    if not isinstance(entry, Snapshot):
        return None
    return ({t: [(n, r.body) for n, r in rs.items()] for t, rs in entry.resources.items()},
            dict(entry.versions))


def assert_serves_a_rebuild(
    pipeline: Pipeline, store: MeshStore, nodes: list[str], *, vhds: bool = False
) -> None:
    mesh = store.snapshot()
    for node in nodes:
        assert served(pipeline.snapshot_for(node)) == served(
            from_scratch(mesh, node, vhds=vhds)), node


def objects(text: str) -> tuple[MeshObject, ...]:
    result = convert_text(text, file="change.yaml")
    assert not result.diagnostics, [d.format() for d in result.diagnostics]
    return result.objects


def load_shop() -> MeshStore:
    store = MeshStore(security=MeshSecurity(mtls=True))
    for path in sorted(SHOP.glob("*.yaml")):
        result = convert_text(path.read_text(), file=path.name)
        store.replace_source(f"file:{path.name}", result.objects, result.diagnostics)
    return store


# -- changes ---------------------------------------------------------------------

def workload(name: str, app: str, address: str, *, ns: str = "shop", version: str = "v1",
             locality: str = "", annotations: str = "") -> str:
    meta = f"{{name: {name}, namespace: {ns}, annotations: {{{annotations}}}}}"
    return f"""apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {meta}
spec:
  address: {address}
  labels: {{app: {app}, version: {version}, security.istio.io/tlsMode: istio}}
  serviceAccount: {app}-sa
  {f'locality: {locality}' if locality else ''}
"""


def service(name: str, ports: str, ns: str = "shop") -> str:
    return f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{ports}]
"""


def virtual_service(name: str, http: str) -> str:
    return f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [{name}]
  http: {http}
"""


CHANGES: dict[str, str] = {
    "endpoint": workload("catalog-v3", "catalog", "127.0.10.9", version="v2"),
    "relabel": workload("order-v1", "order", "127.0.10.2", version="v2",
                        annotations='sidecar.legation.io/app-ports: "9080=18081"'),
    "ports": service("payment", "{name: http, port: 9080, targetPort: 9080}, "
                                "{name: tcp-db, port: 5432, targetPort: 5432}"),
    "cors": virtual_service("payment", "[{corsPolicy: {allowOrigins: [{exact: a.example}]}, "
                                       "route: [{destination: {host: payment}}]}]"),
    "weights": virtual_service(
        "catalog", "[{route: [{destination: {host: catalog, subset: v1}, weight: 50}, "
                   "{destination: {host: catalog, subset: v2}, weight: 50}]}]"),
    "fault": virtual_service(
        "order", "[{fault: {abort: {percentage: {value: 10}, httpStatus: 503}}, "
                 "route: [{destination: {host: order}}]}]"),
    "source-labels": virtual_service(
        "order", "[{match: [{sourceLabels: {app: frontend}}], "
                 "route: [{destination: {host: order}}], timeout: 3s}, "
                 "{route: [{destination: {host: order}}]}]"),
    "permissive": """apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
""",
    "authz": """apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny-frontend, namespace: shop}
spec:
  selector: {matchLabels: {app: catalog}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/frontend-sa]}}]}]
""",
    "locality": "---\n".join([
        """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: catalog, namespace: shop}
spec:
  host: catalog
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 3, interval: 1s, baseEjectionTime: 15s}
    loadBalancer: {localityLbSetting: {enabled: true, failoverPriority: [version]}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
""",
        workload("catalog-v1", "catalog", "127.0.10.3", locality="us/a",
                 annotations='sidecar.legation.io/app-ports: "9080=18082"'),
        workload("frontend", "frontend", "127.0.10.1", locality="us/b"),
    ]),
    "other-namespace": "---\n".join([
        service("web", "{name: http, port: 8080, targetPort: 8080}", ns="other"),
        workload("web", "web", "127.0.11.1", ns="other"),
    ]),
    "transparent": workload(
        "payment-v1", "payment", "127.0.10.5",
        annotations='sidecar.istio.io/interceptionMode: REDIRECT, '
                    'sidecar.legation.io/app-ports: "9080=18084"'),
}


def apply(store: MeshStore, change: str) -> None:
    """Each change replaces the objects of its key (workloads.yaml's own, where it
    redefines one), so applying it twice is no change."""
    if change == "delete":
        store.delete("file:workloads.yaml", ("WorkloadEntry", "shop", "catalog-v2"))
        return
    for obj in objects(CHANGES[change]):
        source = ("file:workloads.yaml"
                  if ("WorkloadEntry", "shop", obj.name) in dict(
                      store.objects("file:workloads.yaml")) else f"change:{change}")
        store.upsert(source, obj)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([*CHANGES, "delete"]), min_size=1, max_size=6))
def test_after_any_changes_every_proxy_gets_what_a_rebuild_gives(changes: list[str]) -> None:
    store = load_shop()
    pipeline = Pipeline(store, SnapshotCache(), Metrics())
    assert_serves_a_rebuild(pipeline, store, NODES)
    for change in changes:
        apply(store, change)
        assert_serves_a_rebuild(pipeline, store, NODES)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.sampled_from([*CHANGES, "delete"]), min_size=1, max_size=4))
def test_delta_ads_proxies_get_what_a_rebuild_split_for_vhds_gives(changes: list[str]) -> None:
    store = load_shop()
    cache = SnapshotCache()
    pipeline = Pipeline(store, cache, Metrics())
    with ExitStack() as watching:
        for node in NODES:
            watching.enter_context(cache.watch(node, vhds=True))
        assert_serves_a_rebuild(pipeline, store, NODES, vhds=True)
        for change in changes:
            apply(store, change)
            assert_serves_a_rebuild(pipeline, store, NODES, vhds=True)


def joined(snapshot: Snapshot) -> dict[str, route_pb2.RouteConfiguration]:
    """The route configurations a VHDS proxy ends up with: each bare configuration with
    the virtual hosts under its name, renamed back (as Envoy assembles them)."""
    out = {}
    hosts = snapshot.of_type(VIRTUAL_HOST)
    for name, r in snapshot.of_type(ROUTE).items():
        config = route_pb2.RouteConfiguration.FromString(r.body)
        assert config.HasField("vhds") and not config.virtual_hosts
        config.ClearField("vhds")
        for vh_name in sorted(n for n in hosts if n.startswith(f"{name}/")):
            vh = config.virtual_hosts.add()
            vh.MergeFromString(hosts[vh_name].body)
            vh.name = vh_name.removeprefix(f"{name}/")
        out[name] = config
    return out


@pytest.mark.parametrize("case", GOLDEN, ids=lambda p: p.name)
def test_vhds_routes_exactly_as_the_whole_configuration(case: Path) -> None:
    """Split and reassembled, every golden case's route configurations are what a SotW
    proxy gets (virtual host order aside: domains are unique, so it does not matter)."""
    store, nodes = load_golden(case)
    cache = SnapshotCache()
    pipeline = Pipeline(store, cache, Metrics())
    whole = {n: pipeline.snapshot_for(n) for n in nodes}
    with ExitStack() as watching:
        for node in nodes:
            watching.enter_context(cache.watch(node, vhds=True))
        for node in nodes:
            split, full = pipeline.snapshot_for(node), whole[node]
            if not isinstance(full, Snapshot):
                continue
            assert isinstance(split, Snapshot)
            proxy = resolve_proxy(store.snapshot(), node)
            if proxy is not None and proxy.gateways:  # a gateway's routes are never split
                assert served(split) == served(full), node
                continue
            expected = {}
            for name, r in full.of_type(ROUTE).items():
                config = route_pb2.RouteConfiguration.FromString(r.body)
                config.virtual_hosts.sort(key=lambda vh: vh.name)
                expected[name] = config
            assert joined(split) == expected, node
            for t in (CLUSTER, ENDPOINT, LISTENER):
                assert split.of_type(t) == full.of_type(t)


def load_golden(case: Path) -> tuple[MeshStore, list[str]]:
    extra = case / "security.yaml"
    fields = (yaml.safe_load(extra.read_text()) or {}) if extra.exists() else {}
    store = MeshStore(security=MeshSecurity(**fields))
    result = convert_text((case / "in.yaml").read_text(), file="in.yaml")
    store.replace_source("golden", result.objects, result.diagnostics)
    listed = case / "proxies.txt"
    nodes = [n.strip() for n in (listed.read_text().splitlines() if listed.exists() else [])
             if n.strip() and not n.startswith("#")]
    return store, nodes


@pytest.mark.parametrize("case", GOLDEN, ids=lambda p: p.name)
def test_every_golden_case_is_served_as_rebuilt(case: Path) -> None:
    store, nodes = load_golden(case)
    assert_serves_a_rebuild(Pipeline(store, SnapshotCache(), Metrics()), store, nodes)


# -- what is kept ------------------------------------------------------------------

Kept = Callable[[Snapshot, Snapshot, str, str], bool]


def snapshots_around(change: str) -> tuple[dict[str, Snapshot], dict[str, Snapshot]]:
    store = load_shop()
    pipeline = Pipeline(store, SnapshotCache(), Metrics())
    nodes = NODES[:5]
    before = {n: pipeline.snapshot_for(n) for n in nodes}
    apply(store, change)
    after = {n: pipeline.snapshot_for(n) for n in nodes}
    assert all(isinstance(s, Snapshot) for s in [*before.values(), *after.values()])
    return before, after  # type: ignore[return-value]


def test_an_endpoint_change_keeps_every_proxys_own_resources_and_routes() -> None:
    before, after = snapshots_around("endpoint")
    for node, old in before.items():
        new = after[node]
        for type_url in (LISTENER, ROUTE):
            for name, r in new.of_type(type_url).items():
                assert r is old.of_type(type_url)[name], (node, name)  # not retranslated
        assert new.version(ENDPOINT) != old.version(ENDPOINT)  # catalog has one more
    inbound = [after[n].of_type(CLUSTER).get("inbound|9080||") for n in after]
    assert len({id(r) for r in inbound if r is not None}) < len(inbound)  # interned


def test_a_routing_edit_keeps_every_proxys_listeners() -> None:
    before, after = snapshots_around("weights")
    for node, old in before.items():
        new = after[node]
        assert new.version(ROUTE) != old.version(ROUTE), node  # the split changed
        for name, r in new.of_type(LISTENER).items():
            assert r is old.of_type(LISTENER)[name], (node, name)


def test_a_fault_adds_the_filter_to_every_outbound_listener() -> None:
    before, after = snapshots_around("fault")
    for node, old in before.items():
        name = next(n for n in old.of_type(LISTENER) if n.endswith("_15001"))
        assert b"envoy.filters.http.fault" not in old.of_type(LISTENER)[name].body
        assert b"envoy.filters.http.fault" in after[node].of_type(LISTENER)[name].body


def test_a_service_change_retranslates_its_namespace() -> None:
    before, after = snapshots_around("ports")
    old, new = before["payment-v1.shop"], after["payment-v1.shop"]
    assert "inbound|5432||" in new.of_type(CLUSTER)
    assert new.of_type(ROUTE)["http_proxy"] is not old.of_type(ROUTE)["http_proxy"]
