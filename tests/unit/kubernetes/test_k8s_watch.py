"""KubernetesSource while watching: changes, 410 Gone, bookmarks, timeouts, bad objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from k8s import ApiServer, objects
from k8s.harness import RecordingStore, api_client, diagnostics, expected, running, until

from legation.model import OutboundPolicy, Service, Severity
from legation.sources.kube.kinds import WATCHED_KINDS
from legation.sources.kubernetes import KubernetesSource

Obj = dict[str, Any]


def _source(store: RecordingStore, api: Any, **kw: Any) -> KubernetesSource:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_cap_s", 0.1)
    return KubernetesSource(store, api, **kw)


def _in_sync(apiserver: ApiServer, store: RecordingStore) -> Callable[[], bool]:
    return lambda: store.objects("k8s") == expected(apiserver.objects())


def _relabel(obj: Obj, **labels: str) -> Obj:
    meta = {**obj["metadata"], "labels": {**obj["metadata"].get("labels", {}), **labels}}
    return {**obj, "metadata": meta}


# (kind, a new object, the same object modified)
KINDS: list[tuple[str, Obj, Obj]] = [
    ("Namespace", objects.namespace("new"), objects.namespace("new", {"team": "x"})),
    ("Node", objects.node("n9", zone="a"), objects.node("n9", zone="b")),
    ("Pod", objects.pod("p", "new", "10.1.1.1"), objects.pod("p", "new", "10.1.1.1", ready=False)),
    ("Service", objects.service("s", "new"),
     objects.service("s", "new", ports=[("grpc", 90, 9090)])),
    ("EndpointSlice", objects.endpoint_slice("e", "new", "s", [("p", "10.1.1.1")]),
     objects.endpoint_slice("e", "new", "s", [("p", "10.1.1.1"), ("q", "10.1.1.2")])),
    ("WorkloadEntry", objects.workload_entry("w", "new", "10.2.0.1"),
     objects.workload_entry("w", "new", "10.2.0.2")),
    ("ServiceEntry", objects.service_entry("se", "new", "a.example.com"),
     objects.service_entry("se", "new", "b.example.com")),
    ("VirtualService", objects.virtual_service("vs", "new", "s"),
     objects.virtual_service("vs", "new", "s", timeout="9s")),
    ("DestinationRule", objects.destination_rule("dr", "new", "s"),
     objects.destination_rule("dr", "new", "t")),
    ("PeerAuthentication", objects.peer_authentication("pa", "new"),
     objects.peer_authentication("pa", "new", mode="PERMISSIVE")),
    ("AuthorizationPolicy", objects.authorization_policy("ap", "new", app="a", principal="x"),
     objects.authorization_policy("ap", "new", app="a", principal="y")),
    ("RequestAuthentication",
     objects.request_authentication("ra", "new", issuer="https://a.example.com"),
     objects.request_authentication("ra", "new", issuer="https://b.example.com", app="a")),
    ("ConfigMap", objects.mesh_config("ALLOW_ANY", "new-cp"),
     objects.mesh_config("REGISTRY_ONLY", "new-cp")),
]


@pytest.mark.parametrize(("kind", "new", "modified"), KINDS, ids=[k[0] for k in KINDS])
async def test_add_modify_delete_of_each_kind_reach_the_store(
    apiserver: ApiServer, api: Any, kind: str, new: Obj, modified: Obj
) -> None:
    for o in objects.cluster(pods=6, services=2, namespaces=1, nodes=1):
        apiserver.apply(o)
    store = RecordingStore()
    async with running(_source(store, api, config_namespace="new-cp")):
        await until(lambda: store.ready)
        key = (kind, new["metadata"].get("namespace", ""), new["metadata"]["name"])
        before = store.objects("k8s")

        created = apiserver.create(new)
        await until(lambda: key in store.objects("k8s"))
        assert store.objects("k8s")[key] == expected([created])[key]

        changed = apiserver.update(modified)
        want = expected([changed])[key]
        assert want != expected([created])[key]  # the modification is visible in the model
        await until(lambda: store.objects("k8s").get(key) == want)

        apiserver.delete_object(modified)
        await until(lambda: key not in store.objects("k8s"))
        assert store.objects("k8s") == before
        assert store.upserts == [key, key] and store.deletes == [key]


@pytest.mark.parametrize("gone_as", ["error-event", "http-status"])
async def test_410_in_a_burst_relists_and_emits_exactly_what_changed(gone_as: str) -> None:
    with ApiServer(gone_as_http_status=gone_as == "http-status") as apiserver:
        api = api_client(apiserver.url)
        cluster = [apiserver.apply(o) for o in objects.cluster(pods=120, services=12)]
        pods = [o for o in cluster if o["kind"] == "Pod"]
        services = [o for o in cluster if o["kind"] == "Service"]
        store = RecordingStore()
        async with running(_source(store, api)):
            await until(lambda: store.ready)
            store.forget_calls()
            with apiserver.paused():  # the watchers fall behind the burst
                for p in pods[:20]:
                    apiserver.update(_relabel(p, version="v2"))
                for p in pods[20:35]:
                    apiserver.delete_object(p)
                added = [apiserver.create(objects.pod(f"new-{i}", "team-0", f"10.250.0.{i + 1}"))
                         for i in range(10)]
                apiserver.update(_relabel(pods[40], version="v3"))
                apiserver.delete_object(pods[40])  # modified, then deleted: one delete
                flash = apiserver.create(objects.pod("flash", "team-0", "10.250.1.1"))
                apiserver.delete_object(flash)  # created and deleted: never seen
                apiserver.delete_object(services[0])
                if gone_as == "error-event":
                    apiserver.compact()  # watchers holding the burst end with ERROR 410
                else:
                    apiserver.compact(cut_behind=False)
                    apiserver.drop_watches(clean=True)  # re-watch from a compacted rv: HTTP 410
            await until(_in_sync(apiserver, store))

        def key(o: Obj) -> tuple[str, str, str]:
            return (o["kind"], o["metadata"]["namespace"], o["metadata"]["name"])

        assert sorted(store.upserts) == sorted(key(o) for o in pods[:20] + added)
        deleted = [*pods[20:35], pods[40], services[0]]
        assert sorted(store.deletes) == sorted(key(o) for o in deleted)
        assert ("Pod", "team-0", "flash") not in store.objects("k8s")
        assert len(apiserver.lists("pods")) == 2  # the initial list and one re-list
        api.close()


async def test_bookmarks_move_the_resource_version_so_compaction_needs_no_relist(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.service("web", "shop"))
    store = RecordingStore()
    source = _source(store, api)
    async with running(source):
        await until(lambda: store.ready)
        for i in range(30):  # other kinds move the global resourceVersion
            apiserver.apply(objects.pod(f"p{i}", "shop", f"10.3.0.{i + 1}"))
        await until(lambda: len(store.objects("k8s")) == 31)
        await until(lambda: apiserver.watch_count() == len(WATCHED_KINDS))
        service_rv = next(s.resource_version for s in source.status() if s.kind == "Service")
        rv = apiserver.bookmark()
        assert int(service_rv) < rv
        await until(lambda: next(s.resource_version for s in source.status()
                                 if s.kind == "Service") == str(rv))
        apiserver.compact()
        apiserver.drop_watches(clean=True)
        await until(lambda: any(r.query.get("resourceVersion") == str(rv)
                                for r in apiserver.watches("services")))
        apiserver.apply(objects.service("api", "shop"))
        await until(lambda: ("Service", "shop", "api") in store.objects("k8s"))
    assert len(apiserver.lists("services")) == 1  # resumed from the bookmark, no 410
    watches = apiserver.watches("services")
    assert all(r.query.get("allowWatchBookmarks") == "true" for r in watches)


async def test_server_side_timeouts_resume_the_watch_without_relisting() -> None:
    with ApiServer(max_watch_timeout_s=0.1) as apiserver:
        api = api_client(apiserver.url)
        store = RecordingStore()
        async with running(_source(store, api, watch_timeout_s=300)):
            await until(lambda: store.ready)
            await until(lambda: len(apiserver.watches("pods")) >= 4)
            apiserver.apply(objects.pod("late", "default", "10.4.0.1"))
            await until(_in_sync(apiserver, store))
            await until(lambda: len(apiserver.watches("pods")) >= 6)
        assert len(apiserver.lists("pods")) == 1
        timeouts = {int(r.query["timeoutSeconds"]) for r in apiserver.watches("pods")}
        assert all(300 <= t <= 600 for t in timeouts)
        api.close()


async def test_an_invalid_object_keeps_its_last_good_version_with_a_diagnostic(
    apiserver: ApiServer, api: Any
) -> None:
    good = apiserver.apply(objects.service("web", "shop"))
    store = RecordingStore()
    key = ("Service", "shop", "web")
    async with running(_source(store, api)):
        await until(lambda: store.ready)
        last_good = store.objects("k8s")[key]
        assert isinstance(last_good, Service)

        bad = objects.service("web", "shop", ports=[("http", 70000, 8080)])
        apiserver.update(bad)
        await until(lambda: bool(diagnostics(store, "service.port-invalid")))
        (diag,) = diagnostics(store, "service.port-invalid")
        assert diag.severity is Severity.ERROR
        assert (diag.ref.namespace, diag.ref.name) == ("shop", "web")
        assert diag.field == "spec.ports[0].port"
        assert store.objects("k8s")[key] == last_good

        fixed = apiserver.update(objects.service("web", "shop", ports=[("http", 81, 8080)]))
        await until(lambda: store.objects("k8s")[key] == expected([fixed])[key])
        assert diagnostics(store, "service.port-invalid") == []
        assert expected([good])[key] == last_good


async def test_a_pod_that_finishes_leaves_the_mesh_and_deleting_an_invalid_object_clears_it(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.pod("job", "shop", "10.5.0.1"))
    apiserver.apply(objects.service("web", "shop", ports=[("http", 0, 8080)]))
    store = RecordingStore()
    async with running(_source(store, api)):
        await until(lambda: store.ready)
        assert diagnostics(store, "service.port-invalid")
        assert ("Service", "shop", "web") not in store.objects("k8s")

        apiserver.update(objects.pod("job", "shop", "10.5.0.1", phase="Succeeded"))
        await until(lambda: ("Pod", "shop", "job") not in store.objects("k8s"))

        apiserver.delete("v1", "Service", "web", "shop")
        await until(lambda: not diagnostics(store, "service.port-invalid"))


async def test_only_the_mesh_config_map_of_the_control_plane_namespace_is_read(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.namespace("cp"))
    for decoy in (objects.mesh_config("REGISTRY_ONLY", "elsewhere"),
                  objects.config_map("app-settings", "cp", {"mesh": "x: 1"})):
        apiserver.apply(decoy)
    apiserver.apply(objects.mesh_config("REGISTRY_ONLY", "cp"))
    store = RecordingStore(config_namespace="cp")
    async with running(_source(store, api, config_namespace="cp")):
        await until(lambda: store.ready)
        assert store.snapshot().config.outbound_policy is OutboundPolicy.REGISTRY_ONLY
        assert [k for k in store.objects("k8s") if k[0] == "ConfigMap"] == [
            ("ConfigMap", "cp", "istio")]
        lists = apiserver.lists("configmaps") + apiserver.watches("configmaps")
        assert lists and all(r.namespace == "cp" for r in lists)
        assert all(r.query.get("fieldSelector") == "metadata.name=istio" for r in lists)
        apiserver.update(objects.mesh_config("ALLOW_ANY", "cp"))  # applied without restart
        await until(lambda: store.snapshot().config.outbound_policy is OutboundPolicy.ALLOW_ANY)
