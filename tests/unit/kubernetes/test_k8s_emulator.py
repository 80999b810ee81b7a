"""The emulated API server behaves like kube-apiserver for the official client."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
import urllib3
from k8s import ApiServer, objects
from k8s.resources import ISTIO_SECURITY
from kubernetes import client as k8s
from kubernetes.watch.watch import iter_resp_lines

TIMEOUT = (2, 5)  # (connect, read) seconds: no call can hang a test


def _events(resp: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in iter_resp_lines(resp)]


def _watch(api: Any, **kw: Any) -> Any:
    kw.setdefault("timeout_seconds", 1)
    return k8s.CoreV1Api(api).list_pod_for_all_namespaces(
        watch=True, _preload_content=False, _request_timeout=TIMEOUT, **kw)


def test_lists_carry_the_global_resource_version_and_real_type_meta(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.pod("a", "ns1", "10.0.0.1"))
    apiserver.apply(objects.virtual_service("vs", "ns1", "a"))
    rv = apiserver.resource_version
    pods = json.loads(k8s.CoreV1Api(api).list_pod_for_all_namespaces(
        _preload_content=False, _request_timeout=TIMEOUT).data)
    assert (pods["kind"], pods["apiVersion"]) == ("PodList", "v1")
    assert pods["metadata"]["resourceVersion"] == str(rv)  # not the pod's own rv
    assert "kind" not in pods["items"][0] and "apiVersion" not in pods["items"][0]
    assert pods["items"][0]["metadata"]["resourceVersion"] == str(rv - 1)
    vs = k8s.CustomObjectsApi(api).list_cluster_custom_object(
        "networking.istio.io", "v1beta1", "virtualservices", _request_timeout=TIMEOUT)
    assert vs["items"][0]["apiVersion"] == "networking.istio.io/v1beta1"
    typed = k8s.CoreV1Api(api).list_namespaced_pod("ns1", _request_timeout=TIMEOUT)
    assert [p.metadata.name for p in typed.items] == ["a"]  # the client's models parse it


def test_a_watch_replays_history_after_its_rv_then_streams_live_events(
    apiserver: ApiServer, api: Any
) -> None:
    apiserver.apply(objects.pod("a", "ns1", "10.0.0.1"))
    start = apiserver.resource_version
    apiserver.apply(objects.pod("b", "ns1", "10.0.0.2"))
    apiserver.apply(objects.service("s", "ns1"))  # another kind: not in this watch

    def later() -> None:
        apiserver.delete("v1", "Pod", "a", "ns1")

    timer = threading.Timer(0.2, later)
    timer.start()
    events = _events(_watch(api, resource_version=str(start)))
    timer.join()
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "b"), ("DELETED", "a")]
    assert events[1]["object"]["metadata"]["resourceVersion"] == str(apiserver.resource_version)
    assert events[0]["object"]["kind"] == "Pod"


def test_a_watch_from_a_compacted_rv_gets_an_error_event_410(
    apiserver: ApiServer, api: Any
) -> None:
    old = apiserver.resource_version
    apiserver.apply(objects.pod("a", "ns1", "10.0.0.1"))
    apiserver.compact()
    (event,) = _events(_watch(api, resource_version=str(old)))
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"]) == ("Status", 410)


def test_gone_can_be_an_http_410_instead() -> None:
    with ApiServer(gone_as_http_status=True) as apiserver:
        api = _client(apiserver)
        old = apiserver.resource_version
        apiserver.apply(objects.pod("a", "ns1", "10.0.0.1"))
        apiserver.compact()
        with pytest.raises(k8s.ApiException) as exc:
            _watch(api, resource_version=str(old))
        assert exc.value.status == 410
        api.close()


def test_bookmarks_only_for_watchers_that_ask(apiserver: ApiServer, api: Any) -> None:
    rv = str(apiserver.resource_version)
    results: dict[bool, list[dict[str, Any]]] = {}

    def watch(bookmarks: bool) -> None:
        results[bookmarks] = _events(_watch(api, resource_version=rv, timeout_seconds=1,
                                            allow_watch_bookmarks=bookmarks))

    threads = [threading.Thread(target=watch, args=(b,)) for b in (True, False)]
    for t in threads:
        t.start()
    while apiserver.watch_count() < 2:
        threading.Event().wait(0.01)
    apiserver.apply(objects.service("s", "ns1"))
    sent = apiserver.bookmark()
    for t in threads:
        t.join(timeout=5)
    assert results[False] == []
    (bookmark,) = results[True]
    assert bookmark["type"] == "BOOKMARK"
    assert bookmark["object"]["metadata"] == {"resourceVersion": str(sent)}


def test_namespaced_paths_and_unserved_crds(apiserver: ApiServer, api: Any) -> None:
    apiserver.apply(objects.pod("a", "ns1", "10.0.0.1"))
    apiserver.apply(objects.pod("b", "ns2", "10.0.0.2"))
    names = [p.metadata.name for p in
             k8s.CoreV1Api(api).list_namespaced_pod("ns2", _request_timeout=TIMEOUT).items]
    assert names == ["b"]
    apiserver.set_served(ISTIO_SECURITY, ())
    with pytest.raises(k8s.ApiException) as exc:
        k8s.CustomObjectsApi(api).list_cluster_custom_object(
            ISTIO_SECURITY, "v1", "peerauthentications", _request_timeout=TIMEOUT)
    assert exc.value.status == 404
    groups = k8s.ApisApi(api).get_api_versions(_request_timeout=TIMEOUT)
    assert ISTIO_SECURITY not in {g.name for g in groups.groups}
    assert "networking.istio.io" in {g.name for g in groups.groups}


def test_dropped_watches_break_the_stream_and_an_outage_refuses_connections(
    apiserver: ApiServer, api: Any
) -> None:
    resp = _watch(api, resource_version=str(apiserver.resource_version), timeout_seconds=30)
    threading.Timer(0.1, apiserver.drop_watches).start()
    with pytest.raises(urllib3.exceptions.HTTPError):
        _events(resp)
    apiserver.apply(objects.namespace("kept"))
    apiserver.stop()
    with pytest.raises(urllib3.exceptions.HTTPError):
        k8s.CoreV1Api(api).list_namespace(_request_timeout=TIMEOUT)
    apiserver.start()  # same port, same state
    assert [n.metadata.name for n in
            k8s.CoreV1Api(api).list_namespace(_request_timeout=TIMEOUT).items] == ["kept"]


def _client(apiserver: ApiServer) -> Any:
    cfg = k8s.Configuration()
    cfg.host = apiserver.url
    cfg.retries = False
    return k8s.ApiClient(cfg)
