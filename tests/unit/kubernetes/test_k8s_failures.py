"""KubernetesSource under failure: outages, restarts, dropped connections, missing CRDs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from k8s import ApiServer, objects
from k8s.harness import RecordingStore, api_client, diagnostics, expected, running, until
from k8s.resources import GATEWAY_API, ISTIO_NETWORKING, ISTIO_SECURITY, ISTIO_TELEMETRY
from structlog.testing import capture_logs

from legation.model import Severity
from legation.sources.kube.kinds import WATCHED_KINDS
from legation.sources.kubernetes import KubernetesSource

CAP_S = 0.1


def _source(store: RecordingStore, api: Any, **kw: Any) -> KubernetesSource:
    kw.setdefault("backoff_base_s", 0.01)
    kw.setdefault("backoff_cap_s", CAP_S)
    return KubernetesSource(store, api, **kw)


def _in_sync(apiserver: ApiServer, store: RecordingStore) -> Callable[[], bool]:
    return lambda: store.objects("k8s") == expected(apiserver.objects())


def _backoffs(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [e for e in logs if e["event"] == "k8s.backoff"]


async def test_an_outage_keeps_the_last_picture_then_resyncs_what_changed_meanwhile(
    apiserver: ApiServer, api: Any
) -> None:
    cluster = [apiserver.apply(o) for o in objects.cluster(pods=60, services=6)]
    store = RecordingStore()
    with capture_logs() as logs:
        async with running(_source(store, api)):
            await until(lambda: store.ready)
            before = store.objects("k8s")
            assert before == expected(cluster)

            apiserver.stop()
            # every list/watch noticed, and keeps retrying with growing backoff
            await until(lambda: {e["kind"] for e in _backoffs(logs) if e["attempt"] >= 3}
                        == {k.kind for k in WATCHED_KINDS})
            pod, svc = cluster[10], next(o for o in cluster if o["kind"] == "Service")
            apiserver.delete_object(pod)  # changes while the API server is unreachable
            apiserver.delete_object(svc)
            apiserver.apply(objects.pod("born-in-outage", "team-0", "10.6.0.1"))
            assert store.objects("k8s") == before  # nothing deleted, nothing invented
            assert store.ready

            apiserver.start()
            await until(_in_sync(apiserver, store))
            assert ("Pod", "team-0", "born-in-outage") in store.objects("k8s")
            assert (pod["kind"], pod["metadata"]["namespace"], pod["metadata"]["name"]) \
                not in store.objects("k8s")

    delays = [e["delay_s"] for e in _backoffs(logs)]
    assert delays and all(0 <= d <= CAP_S for d in delays)
    for kind in ("Pod", "Node"):  # exponential: attempts of one reflector count up
        attempts = [e["attempt"] for e in _backoffs(logs) if e["kind"] == kind]
        assert attempts[:3] == [1, 2, 3]


async def test_a_restart_of_the_api_server_is_followed_by_live_watches_again(
    apiserver: ApiServer, api: Any
) -> None:
    for o in objects.cluster(pods=30, services=3):
        apiserver.apply(o)
    store = RecordingStore()
    async with running(_source(store, api)):
        await until(lambda: store.ready)
        await until(lambda: apiserver.watch_count() == len(WATCHED_KINDS))  # all past their list
        apiserver.restart()
        await until(lambda: all(len(apiserver.lists(k.plural)) >= 2 for k in WATCHED_KINDS))
        store.forget_calls()
        apiserver.apply(objects.pod("after-restart", "team-1", "10.7.0.1"))
        await until(_in_sync(apiserver, store))
        assert store.upserts == [("Pod", "team-1", "after-restart")]
        assert store.deletes == []


async def test_dropped_watch_connections_resync_without_duplicates(
    apiserver: ApiServer, api: Any
) -> None:
    cluster = [apiserver.apply(o) for o in objects.cluster(pods=40, services=4)]
    store = RecordingStore()
    async with running(_source(store, api)):
        await until(lambda: store.ready)
        await until(lambda: apiserver.watch_count() == len(WATCHED_KINDS))
        store.forget_calls()
        with apiserver.paused():
            dropped = apiserver.drop_watches()
            victim = cluster[-1]
            apiserver.delete_object(victim)
        assert dropped == len(WATCHED_KINDS)
        await until(_in_sync(apiserver, store))
        await until(lambda: all(len(apiserver.lists(k.plural)) >= 2 for k in WATCHED_KINDS))
        key = (victim["kind"], victim["metadata"]["namespace"], victim["metadata"]["name"])
        assert store.deletes == [key]
        assert store.upserts == []  # nothing changed: the re-list diff re-sends nothing


async def test_a_crd_that_appears_late_is_a_warning_first_then_its_objects_flow() -> None:
    # networking at v1 and v1alpha3: Istio's EnvoyFilter exists at v1alpha3 only
    with ApiServer(crds={ISTIO_NETWORKING: ("v1", "v1alpha3"), ISTIO_SECURITY: (),
                         GATEWAY_API: ("v1",), ISTIO_TELEMETRY: ("v1",)}) as apiserver:
        api = api_client(apiserver.url)
        apiserver.apply(objects.service("web", "shop"))
        store = RecordingStore()
        async with running(_source(store, api, crd_retry_s=0.05)):
            await until(lambda: store.ready)  # a missing CRD does not hold readiness
            missing = diagnostics(store, "kubernetes.crd-missing")
            assert {d.ref.name for d in missing} == {
                "peerauthentications.security.istio.io", "authorizationpolicies.security.istio.io",
                "requestauthentications.security.istio.io"}
            assert all(d.severity is Severity.WARNING for d in missing)
            assert ("Service", "shop", "web") in store.objects("k8s")

            apiserver.set_served(ISTIO_SECURITY, ("v1beta1",))  # the CRD is installed
            pa = apiserver.create(objects.peer_authentication("default", "shop", version="v1beta1"))
            await until(lambda: ("PeerAuthentication", "shop", "default") in store.objects("k8s"))
            await until(lambda: not diagnostics(store, "kubernetes.crd-missing"))
            assert store.objects("k8s") == expected(apiserver.objects())
            key = ("PeerAuthentication", "shop", "default")
            assert store.objects("k8s")[key] == expected([pa])[key]
        assert {r.version for r in apiserver.watches("peerauthentications")} == {"v1beta1"}
        assert {r.version for r in apiserver.lists("peerauthentications")} >= {"v1", "v1beta1"}
        api.close()


async def test_the_first_served_crd_version_is_used() -> None:
    with ApiServer(crds={ISTIO_NETWORKING: ("v1alpha3",), ISTIO_SECURITY: ("v1beta1", "v1"),
                         GATEWAY_API: ("v1",), ISTIO_TELEMETRY: ("v1",)}) as apiserver:
        api = api_client(apiserver.url)
        vs = apiserver.apply(objects.virtual_service("r", "shop", "r", version="v1alpha3"))
        store = RecordingStore()
        source = _source(store, api)
        async with running(source):
            await until(lambda: store.ready)
            versions = {s.kind: s.version for s in source.status()}
        assert versions["VirtualService"] == "v1alpha3"
        assert versions["PeerAuthentication"] == "v1"  # preferred v1 over v1beta1
        assert store.objects("k8s") == expected([vs])
        assert diagnostics(store, "kubernetes.crd-missing") == []
        api.close()


async def test_a_crd_that_stops_being_served_keeps_its_objects_with_a_warning(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.authorization_policy("deny", "shop", app="db", principal="x"))
    store = RecordingStore()
    async with running(_source(store, api, crd_retry_s=0.05)):
        await until(lambda: store.ready)
        key = ("AuthorizationPolicy", "shop", "deny")
        assert key in store.objects("k8s")
        apiserver.set_served(ISTIO_SECURITY, ())
        await until(lambda: bool(diagnostics(store, "kubernetes.crd-missing")))
        assert key in store.objects("k8s")  # a transient 404 must not drop security policy
        apiserver.set_served(ISTIO_SECURITY, ("v1",))
        await until(lambda: not diagnostics(store, "kubernetes.crd-missing"))
        assert store.objects("k8s") == expected(apiserver.objects())


async def test_after_an_outage_every_kind_relists_when_the_first_one_can(
    apiserver: ApiServer, api: Any
) -> None:
    """Issue 14: each kind used to wait out its own backoff after an outage (kinds came
    back 12-20 s apart). Backoffs here are drawn from 0-30 s with a fixed seed: some
    kind waits more than 20 s, one less than 3 s; when that one lists again it wakes
    the others, and the whole picture is back long before the slowest backoff ends."""
    import random

    for o in objects.cluster(pods=10, services=2):
        apiserver.apply(o)
    store = RecordingStore()
    source = _source(store, api, backoff_base_s=30.0, backoff_cap_s=30.0,
                     rng=random.Random(7))
    with capture_logs() as logs:
        async with running(source):
            await until(lambda: store.ready)
            apiserver.stop()
            await until(lambda: {e["kind"] for e in _backoffs(logs)}
                        == {k.kind for k in WATCHED_KINDS})
            delays = [e["delay_s"] for e in _backoffs(logs)]
            assert max(delays) > 20 and min(delays) < 3, delays  # the seed's draw
            apiserver.apply(objects.pod("born-in-outage", "team-0", "10.6.0.1"))
            apiserver.start()
            # every kind listed again (a list before the outage, one after it)
            await until(lambda: all(len(apiserver.lists(k.plural)) >= 2
                                    for k in WATCHED_KINDS), timeout=12)
            await until(_in_sync(apiserver, store))
