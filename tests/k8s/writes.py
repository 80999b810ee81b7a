"""The emulated API server's write side: create / update / delete of the writable
kinds (Secrets, Leases) and the TokenReview API, as the real server answers them.

- `POST .../namespaces/<ns>/<plural>`: 201 and the stored object; 409 with a
  `Status` of reason `AlreadyExists` (and `details.name`/`kind`) when the name is
  taken; 400 if the body's namespace or kind disagrees with the path, or a
  Secret's `data` value is not base64.
- `PUT .../<plural>/<name>`: 200; 404 if absent; 409 reason `Conflict` ("the
  object has been modified") when `metadata.resourceVersion` is set and is not
  the stored one: optimistic concurrency. Without a resourceVersion the update
  is unconditional, as for a real server.
- `DELETE .../<plural>/<name>`: 200 with a `Status` of `Success`; 404 if absent.
- `POST /apis/authentication.k8s.io/v1/tokenreviews`: looks the token up in the
  tokens the test registered (`ApiServer.add_token`). Authenticated when the
  token is known, its audiences intersect `spec.audiences` (or no audiences
  were asked for), and, for a token bound to a pod, that pod still exists with
  the same uid (bound-token invalidation). `status.audiences` is the
  intersection; `status.user.extra` carries `authentication.kubernetes.io/pod-name`
  and `pod-uid` for a pod-bound token, as the real server does.

Writes go through `ClusterState.put/remove`, so watchers see them like any change.
- `PATCH .../<plural>/<name>/status` of a custom resource (JSON merge patch):
  only `status` changes; a new resourceVersion, a MODIFIED event.

Not covered: generateName, dry-run, field managers, other PATCH forms, admission,
RBAC.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from . import resources as res
from .state import AlreadyExists, ClusterState, Conflict, NotFound, TokenInfo

Reply = tuple[int, dict[str, Any]]


def write(state: ClusterState, method: str, rtype: res.ResourceType, version: str,
          namespace: str | None, name: str | None, body: bytes) -> Reply:
    """Answer one POST/PUT/DELETE (path already routed to `rtype`)."""
    if rtype.virtual:
        if method != "POST" or name is not None:
            return _method_not_allowed(method, rtype)
        return _token_review(state, body)
    if "create" not in rtype.verbs:
        return _method_not_allowed(method, rtype)
    if rtype.namespaced and namespace is None:
        return 405, res.status(405, "MethodNotAllowed", f"{rtype.plural} are namespaced")
    if method == "DELETE":
        return _delete(state, rtype, version, namespace or "", name)
    try:
        obj = json.loads(body or b"null")
    except ValueError:
        return 400, res.status(400, "BadRequest", "the request body is not JSON")
    problem = _check_body(obj, rtype, version, namespace, name, create=method == "POST")
    if problem:
        return 400, res.status(400, "BadRequest", problem)
    obj = {**obj, "apiVersion": rtype.api_version(version), "kind": rtype.kind}
    try:
        if method == "POST":
            return 201, state.put(obj, must_exist=False)
        return 200, state.put(obj, must_exist=True, precondition=True)
    except AlreadyExists:
        return 409, _reasoned(409, "AlreadyExists",
                              f'{rtype.plural} "{obj["metadata"]["name"]}" already exists',
                              rtype, obj["metadata"]["name"])
    except NotFound:
        return 404, _reasoned(404, "NotFound", f'{rtype.plural} "{name}" not found', rtype, name)
    except Conflict:
        return 409, _reasoned(
            409, "Conflict",
            f'Operation cannot be fulfilled on {rtype.plural} "{name}": the object has been '
            "modified; please apply your changes to the latest version and try again",
            rtype, name)


def _check_body(obj: Any, rtype: res.ResourceType, version: str, namespace: str | None,
                name: str | None, *, create: bool) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
        return "the body must be an object with metadata"
    meta = obj["metadata"]
    if obj.get("kind") not in (None, rtype.kind):
        return f"kind {obj.get('kind')!r} does not match the path ({rtype.kind})"
    if obj.get("apiVersion") not in (None, rtype.api_version(version)):
        return f"apiVersion {obj.get('apiVersion')!r} does not match the path"
    if meta.get("namespace") not in (None, namespace):
        return (f"the namespace of the provided object ({meta.get('namespace')}) does not "
                f"match the namespace sent on the request ({namespace})")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        return "metadata.name: Required value: name or generateName is required"
    if not create and meta["name"] != name:
        return "the name of the object does not match the name on the URL"
    if create and meta.get("resourceVersion"):
        return "resourceVersion should not be set on objects to be created"
    meta["namespace"] = namespace
    for key, value in (obj.get("data") or {}).items() if rtype.kind == "Secret" else ():
        try:
            base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            return f"data[{key}]: illegal base64 data"
    return ""


def _delete(state: ClusterState, rtype: res.ResourceType, version: str, namespace: str,
            name: str | None) -> Reply:
    if name is None:
        return _method_not_allowed("DELETE", rtype)
    try:
        state.remove(rtype.api_version(version), rtype.kind, name, namespace)
    except NotFound:
        return 404, _reasoned(404, "NotFound", f'{rtype.plural} "{name}" not found', rtype, name)
    return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                 "details": {"name": name, "kind": rtype.plural}}


def _token_review(state: ClusterState, body: bytes) -> Reply:
    try:
        review = json.loads(body or b"null")
        spec = review["spec"]
        token = spec.get("token") or ""
        wanted = tuple(spec.get("audiences") or ())
    except (ValueError, KeyError, TypeError, AttributeError):
        return 400, res.status(400, "BadRequest", "a TokenReview needs spec.token")
    with state.cond:
        state.token_reviews.append(dict(spec))
    status = review_status(state, token, wanted)
    return 201, {"kind": "TokenReview", "apiVersion": "authentication.k8s.io/v1",
                 "metadata": {"creationTimestamp": None}, "spec": spec, "status": status}


def review_status(state: ClusterState, token: str, wanted: tuple[str, ...]) -> dict[str, Any]:
    """The `status` of a TokenReview of `token` for audiences `wanted`."""
    with state.cond:
        info: TokenInfo | None = state.tokens.get(token)
        pod = state.get(res.by_kind("", "Pod"), info.namespace, info.pod) if info and info.pod \
            else None
    if info is None:
        return {"authenticated": False, "user": {}, "error": "[invalid bearer token]"}
    audiences = [a for a in info.audiences if not wanted or a in wanted]
    if not audiences:
        return {"authenticated": False, "user": {},
                "error": "[invalid bearer token, token audiences is invalid for the target "
                         "audiences]"}
    extra: dict[str, list[str]] = {}
    if info.pod:
        uid = pod["metadata"].get("uid") if pod else None
        if pod is None or (info.pod_uid and uid != info.pod_uid):
            return {"authenticated": False, "user": {},
                    "error": f"[invalid bearer token, pod \"{info.pod}\" not found]"}
        extra = {"authentication.kubernetes.io/pod-name": [info.pod],
                 "authentication.kubernetes.io/pod-uid": [str(uid)]}
    user = {"username": info.username, "uid": f"uid-{info.namespace}-{info.service_account}",
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{info.namespace}",
                       "system:authenticated"]}
    if extra:
        user["extra"] = extra
    return {"authenticated": True, "user": user, "audiences": audiences}


def _reasoned(code: int, reason: str, message: str, rtype: res.ResourceType,
              name: str | None) -> dict[str, Any]:
    out = res.status(code, reason, message)
    out["details"] = {"name": name or "", "kind": rtype.plural}
    if rtype.group:
        out["details"]["group"] = rtype.group
    return out


def _method_not_allowed(method: str, rtype: res.ResourceType) -> Reply:
    return 405, res.status(405, "MethodNotAllowed",
                           f"the server does not allow this method ({method}) on {rtype.plural}")


def patch_status(state: ClusterState, method: str, content_type: str, rtype: res.ResourceType,
                 version: str, namespace: str | None, name: str, body: bytes) -> Reply:
    """`PATCH .../<plural>/<name>/status` with a JSON merge patch (what the official
    client sends for a dict body): 200 and the object; 404 if absent; 415 for another
    patch type (only merge patches are emulated); 405 for other methods."""
    if method != "PATCH":
        return 405, res.status(405, "MethodNotAllowed", "the status subresource: PATCH only")
    if content_type.split(";")[0].strip() != "application/merge-patch+json":
        return 415, res.status(415, "UnsupportedMediaType",
                               f"the body of the request was in an unknown format: "
                               f"{content_type}")
    if rtype.namespaced and namespace is None:
        return 404, res.status(404, "NotFound", f"{rtype.plural} are namespaced")
    try:
        patch = json.loads(body or b"null")
    except ValueError:
        return 400, res.status(400, "BadRequest", "the request body is not JSON")
    if not isinstance(patch, dict):
        return 400, res.status(400, "BadRequest", "a merge patch must be a JSON object")
    try:
        data = state.patch_status(rtype, namespace or "", name, patch)
    except NotFound as e:
        return 404, res.status(404, "NotFound", str(e))
    return 200, state.render(rtype, version, data)
