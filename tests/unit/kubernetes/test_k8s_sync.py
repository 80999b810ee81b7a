"""KubernetesSource: the initial sync of a realistic cluster, all or nothing."""

from __future__ import annotations

import threading
from typing import Any

from k8s import ApiServer, objects
from k8s.harness import RecordingStore, api_client, expected, running, settle, until

from legation.model import Service, Workload, WorkloadKind
from legation.model.mesh import qualified_kind
from legation.sources.kube.kinds import WATCHED_KINDS
from legation.sources.kubernetes import KubernetesSource, scopes


def _source(store: RecordingStore, api: Any, **kw: Any) -> KubernetesSource:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_cap_s", 0.1)
    return KubernetesSource(store, api, **kw)


async def test_initial_sync_delivers_the_whole_cluster_once_every_kind_is_listed(
    apiserver: ApiServer, api: Any
) -> None:
    applied = [apiserver.apply(o) for o in objects.cluster(pods=300, services=30)]
    want = expected(applied)
    store = RecordingStore()
    apiserver.block_lists("pods")  # the biggest list is slow
    source = _source(store, api)
    assert not store.ready
    async with running(source):
        others = [k.plural for k in WATCHED_KINDS if k.plural != "pods"]
        # every other kind listed and watching: their results were posted to the loop
        await until(lambda: all(apiserver.watches(p) for p in others))
        await settle()
        assert not source.synced
        assert not store.ready
        assert store.objects("k8s") == {}
        assert store.replaces == 0

        apiserver.unblock_lists()
        await until(lambda: store.ready)
        assert source.synced
        assert store.replaces == 1
        assert store.objects("k8s") == want
        assert store.upserts == [] and store.deletes == []  # one whole picture, no trickle

    mesh = store.snapshot()
    pods = [w for w in mesh.workloads if w.kind is WorkloadKind.POD]
    assert len(pods) == 300
    assert len([s for s in mesh.services if s.entry is None]) == 30
    assert len([s for s in mesh.services if s.entry is not None]) == 3  # a host per entry
    assert len(mesh.endpoint_slices) == 30
    assert len(mesh.nodes) == 5 and len(mesh.namespaces) == 3
    # every kind made it (Opaque Secrets are read, and skipped: no TLS credential)
    assert {key[0] for key in want} == {qualified_kind(k.group, k.kind) for k in WATCHED_KINDS
                                        if k.kind != "Secret"}
    assert len(apiserver.lists("pods")) == 1


async def test_the_store_holds_what_the_converters_make_of_each_kind(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.namespace("shop"))
    apiserver.apply(objects.node("n1", zone="z1"))
    apiserver.apply(objects.pod("web-1", "shop", "10.0.0.5", labels={"app": "web"},
                                service_account="web", node_name="n1"))
    apiserver.apply(objects.service("web", "shop"))
    apiserver.apply(objects.workload_entry("vm", "shop", "192.168.1.9"))
    store = RecordingStore()
    async with running(_source(store, api)):
        await until(lambda: store.ready)
    mesh = store.snapshot()
    pod = mesh.workload("shop", "web-1")
    assert isinstance(pod, Workload)
    assert (pod.kind, pod.address, pod.service_account, pod.node_name) == (
        WorkloadKind.POD, "10.0.0.5", "web", "n1")
    assert dict(pod.labels) == {"app": "web"}
    svc = mesh.services[0]
    assert isinstance(svc, Service) and (svc.namespace, svc.name) == ("shop", "web")
    assert mesh.nodes[0].locality.zone == "z1"
    vm = mesh.workload("shop", "vm")
    assert vm is not None and vm.kind is WorkloadKind.WORKLOAD_ENTRY


async def test_watch_namespaces_limit_namespaced_kinds_but_not_namespaces_and_nodes(
    apiserver: ApiServer, api: Any
) -> None:
    applied = [apiserver.apply(o) for o in objects.cluster(pods=30, services=6)]
    store = RecordingStore()
    source = _source(store, api, namespaces=["team-0", "team-2", "team-0"])
    assert len(source.status()) == len(scopes(["team-0", "team-2"]))
    async with running(source):
        await until(lambda: store.ready)
        # the MeshConfig's ConfigMap is read from the control plane's namespace regardless
        want = expected(o for o in applied
                        if o["metadata"].get("namespace", "team-0") in ("team-0", "team-2")
                        or o["kind"] == "ConfigMap")
        assert store.objects("k8s") == want
        assert {k[0] for k in want if k[1] == ""} == {"Namespace", "Node", "GatewayClass"}
        paths = {r.path for r in apiserver.requests if r.plural == "pods"}
        assert paths == {"/api/v1/namespaces/team-0/pods", "/api/v1/namespaces/team-2/pods"}
        assert {r.path for r in apiserver.requests if r.plural == "nodes"} == {"/api/v1/nodes"}

        apiserver.apply(objects.pod("late", "team-1", "10.9.9.9"))  # not watched
        apiserver.apply(objects.pod("late", "team-2", "10.9.9.8"))
        await until(lambda: ("Pod", "team-2", "late") in store.objects("k8s"))
        assert ("Pod", "team-1", "late") not in store.objects("k8s")


async def test_cancelling_run_closes_every_watch_and_stops_every_thread(
    apiserver: ApiServer,
) -> None:
    api = api_client(apiserver.url)
    store = RecordingStore()
    source = _source(store, api)
    async with running(source):
        await until(lambda: store.ready)
        await until(lambda: apiserver.watch_count() == len(WATCHED_KINDS))
    assert not [t for t in threading.enumerate() if t.name.startswith("k8s-")]
    await until(lambda: apiserver.watch_count() == 0)
    api.close()


async def test_status_reports_each_scope(apiserver: ApiServer, api: Any) -> None:
    apiserver.apply(objects.namespace("a"))
    store = RecordingStore()
    source = _source(store, api)
    assert {s.listed for s in source.status()} == {False}
    async with running(source):
        await until(lambda: store.ready)
        status = {s.kind: s for s in source.status()}
    assert set(status) == {k.kind for k in WATCHED_KINDS}
    assert status["Namespace"].objects == 1 and status["Namespace"].listed
    assert status["VirtualService"].version == "v1"
    assert all(s.resource_version for s in status.values())
