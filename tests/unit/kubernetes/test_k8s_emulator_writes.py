"""The emulated API server's write side, driven by the official client: the conflict
semantics the CA Secret and the Lease rely on, and the TokenReview API."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from k8s import ApiServer, objects
from kubernetes import client as k8s

NS = "legation-system"


def _secret(name: str = "legation-ca", rv: str = "", **data: bytes) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if rv:
        meta["resourceVersion"] = rv
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque",
            "data": {k.replace("_", "-"): base64.b64encode(v).decode() for k, v in data.items()}}


def _body(exc: k8s.ApiException) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(exc.body)
    return body


def _call(fn: Any, *args: Any) -> dict[str, Any]:
    resp = fn(*args, _preload_content=False)
    data: dict[str, Any] = json.loads(resp.data)
    return data


def test_create_then_create_again_is_409_already_exists(apiserver: ApiServer, api: Any) -> None:
    core = k8s.CoreV1Api(api)
    created = _call(core.create_namespaced_secret, NS, _secret(root_pem=b"one"))

    with pytest.raises(k8s.ApiException) as err:
        core.create_namespaced_secret(NS, _secret(root_pem=b"two"))

    assert created["metadata"]["resourceVersion"]
    assert err.value.status == 409
    assert _body(err.value)["reason"] == "AlreadyExists"
    assert _body(err.value)["details"] == {"name": "legation-ca", "kind": "secrets"}
    stored = _call(core.read_namespaced_secret, "legation-ca", NS)
    assert base64.b64decode(stored["data"]["root-pem"]) == b"one"


def test_update_with_a_stale_resource_version_is_409_conflict(apiserver: ApiServer,
                                                              api: Any) -> None:
    core = k8s.CoreV1Api(api)
    rv = _call(core.create_namespaced_secret, NS, _secret(k=b"1"))["metadata"]["resourceVersion"]
    newer = _call(core.replace_namespaced_secret, "legation-ca", NS, _secret(rv=rv, k=b"2"))

    with pytest.raises(k8s.ApiException) as err:
        core.replace_namespaced_secret("legation-ca", NS, _secret(rv=rv, k=b"3"))

    assert err.value.status == 409 and _body(err.value)["reason"] == "Conflict"
    assert int(newer["metadata"]["resourceVersion"]) > int(rv)
    unconditional = _call(core.replace_namespaced_secret, "legation-ca", NS, _secret(k=b"4"))
    assert base64.b64decode(unconditional["data"]["k"]) == b"4"


@pytest.mark.parametrize(
    ("change", "status"),
    [
        (lambda s: s["metadata"].update(namespace="other"), 400),
        (lambda s: s["data"].update(k="not base64!"), 400),
        (lambda s: s["metadata"].update(resourceVersion="5"), 400),
        (lambda s: s.update(kind="ConfigMap"), 400),
    ],
    ids=["namespace-mismatch", "bad-base64", "rv-on-create", "wrong-kind"],
)
def test_invalid_creates_are_400(apiserver: ApiServer, api: Any, change: Any,
                                 status: int) -> None:
    body = _secret(k=b"x")
    change(body)

    with pytest.raises(k8s.ApiException) as err:
        k8s.CoreV1Api(api).create_namespaced_secret(NS, body)

    assert err.value.status == status
    assert apiserver.get("v1", "Secret", "legation-ca", NS) is None


def test_update_and_delete_of_a_missing_object_are_404(apiserver: ApiServer, api: Any) -> None:
    core = k8s.CoreV1Api(api)
    with pytest.raises(k8s.ApiException) as update:
        core.replace_namespaced_secret("nope", NS, _secret("nope", k=b"x"))
    with pytest.raises(k8s.ApiException) as delete:
        core.delete_namespaced_secret("nope", NS)

    assert update.value.status == delete.value.status == 404


def test_writes_are_seen_by_watchers_and_lists(apiserver: ApiServer, api: Any) -> None:
    core = k8s.CoreV1Api(api)
    start = apiserver.resource_version
    _call(core.create_namespaced_secret, NS, _secret(k=b"1"))
    core.delete_namespaced_secret("legation-ca", NS)

    resp = core.list_namespaced_secret(NS, watch=True, resource_version=str(start),
                                       timeout_seconds=1, _preload_content=False)
    events = [json.loads(line)["type"] for line in resp.data.splitlines() if line]

    assert events == ["ADDED", "DELETED"]
    assert [r.method for r in apiserver.writes("secrets")] == ["POST", "DELETE"]


def test_token_review_answers_like_the_real_api(apiserver: ApiServer, api: Any) -> None:
    apiserver.apply(objects.pod("catalog-1", "shop", "10.1.0.11", service_account="catalog"))
    apiserver.add_token("t", namespace="shop", service_account="catalog",
                        audiences=("legation", "vault"), pod="catalog-1")
    auth = k8s.AuthenticationV1Api(api)

    def review(token: str, audiences: list[str]) -> dict[str, Any]:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": audiences}}
        status: dict[str, Any] = _call(auth.create_token_review, body)["status"]
        return status

    ok = review("t", ["legation"])
    assert ok["authenticated"] is True
    assert ok["audiences"] == ["legation"]
    assert ok["user"]["username"] == "system:serviceaccount:shop:catalog"
    assert ok["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["catalog-1"]
    assert review("t", ["other"])["authenticated"] is False
    assert review("nope", ["legation"])["authenticated"] is False
    apiserver.delete("v1", "Pod", "catalog-1", "shop")
    assert review("t", ["legation"])["authenticated"] is False  # bound to a deleted pod
    with pytest.raises(urllib.error.HTTPError) as err:  # create-only
        urllib.request.urlopen(f"{apiserver.url}/apis/authentication.k8s.io/v1/tokenreviews")
    assert err.value.code == 405
    err.value.close()
