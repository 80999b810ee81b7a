"""Writes the Gateway API status conditions Legation computes back to the objects.

`legation.mesh.gatewayapi` computes, per snapshot, the conditions of every
GatewayClass, Gateway (and listener) and route parent Legation handles
(`MeshSnapshot.gateway_status`). This writer turns them into each object's
`status` as the Gateway API defines it, and sends only what changed, as a
JSON merge patch of the `status` subresource:

- GatewayClass: `status.conditions`;
- Gateway: `status.conditions` and `status.listeners[]` (name,
  supportedKinds, attachedRoutes, conditions);
- HTTPRoute / GRPCRoute: `status.parents[]` (parentRef, controllerName,
  conditions). A merge patch replaces the list: parents other controllers
  wrote on the same route are replaced too (Istio patches the same way).

Conditions carry `lastTransitionTime`, kept while a condition's status stays
the same and set to now when it changes (metav1.Condition). An object
that disappeared is forgotten; a write that fails (the object was just
deleted, a conflict) is retried with the next snapshot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog
from kubernetes import client as k8s

from legation.model.gatewayapi import GATEWAY_API_GROUP, Condition, ObjectStatus
from legation.security.clock import utc_now

_log = structlog.get_logger("legation.kube.gatewaystatus")

VERSION = "v1"
PLURALS = {"GatewayClass": "gatewayclasses", "Gateway": "gateways",
           "HTTPRoute": "httproutes", "GRPCRoute": "grpcroutes"}
ObjectKey = tuple[str, str, str]  # (kind, namespace, name)


def send_changed(written: dict[Any, dict[str, Any]], wanted: dict[Any, dict[str, Any]],
                 patch: Callable[[Any, dict[str, Any]], bool]) -> int:
    """Patch each object whose wanted status differs from what it was last `written`
    (updated; objects no longer wanted are forgotten); how many were sent."""
    sent = 0
    for key, body in wanted.items():
        if written.get(key) != body and patch(key, body):
            written[key] = body
            sent += 1
    for key in set(written) - set(wanted):
        del written[key]
    return sent


class GatewayStatusWriter:
    """`sync` is called with each new snapshot's statuses (the app's loop, in a thread:
    the client blocks)."""

    def __init__(self, api: Any, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self._clock = clock
        self._written: dict[ObjectKey, dict[str, Any]] = {}  # what each object last got
        # (object, part, condition type) -> (status, lastTransitionTime)
        self._since: dict[tuple[ObjectKey, str, str], tuple[bool, str]] = {}

    def sync(self, statuses: Iterable[ObjectStatus]) -> int:
        """Patch every object whose status differs from what it last got; how many."""
        wanted = self.desired(statuses)
        written = send_changed(self._written, wanted, self._patch)
        self._since = {k: v for k, v in self._since.items() if k[0] in wanted}
        return written

    def desired(self, statuses: Iterable[ObjectStatus]) -> dict[ObjectKey, dict[str, Any]]:
        """The `status` body of each object, from its computed statuses."""
        out: dict[ObjectKey, dict[str, Any]] = {}
        for st in statuses:
            kind = st.ref.kind
            if kind not in PLURALS:
                continue
            key = (kind, st.ref.namespace, st.ref.name)
            body = out.setdefault(key, {})
            conditions = self._conditions(key, st.part, st.conditions)
            if st.parent is not None:
                ref: dict[str, Any] = {"group": st.parent.group, "kind": st.parent.kind,
                                       "namespace": st.parent.namespace,
                                       "name": st.parent.name}
                if st.parent.section_name:
                    ref["sectionName"] = st.parent.section_name
                if st.parent.port:
                    ref["port"] = st.parent.port
                body.setdefault("parents", []).append(
                    {"parentRef": ref, "controllerName": st.controller,
                     "conditions": conditions})
            elif st.listener:
                body.setdefault("listeners", []).append({
                    "name": st.listener,
                    "supportedKinds": [{"group": GATEWAY_API_GROUP, "kind": k}
                                       for k in st.supported_kinds],
                    "attachedRoutes": st.attached_routes,
                    "conditions": conditions,
                })
            else:
                body["conditions"] = conditions
        return out

    def _conditions(self, key: ObjectKey, part: str, conditions: Iterable[Condition]
                    ) -> list[dict[str, Any]]:
        out = []
        for c in conditions:
            since = self._since.get((key, part, c.type))
            if since is None or since[0] != c.status:
                stamp = self._clock().strftime("%Y-%m-%dT%H:%M:%SZ")
                since = self._since[(key, part, c.type)] = (c.status, stamp)
            out.append({"type": c.type, "status": "True" if c.status else "False",
                        "reason": c.reason, "message": c.message[:32768],
                        "lastTransitionTime": since[1]})
        return out

    def _patch(self, key: ObjectKey, body: dict[str, Any]) -> bool:
        kind, namespace, name = key
        plural = PLURALS[kind]
        try:
            if kind == "GatewayClass":
                self._custom.patch_cluster_custom_object_status(
                    GATEWAY_API_GROUP, VERSION, plural, name, {"status": body})
            else:
                self._custom.patch_namespaced_custom_object_status(
                    GATEWAY_API_GROUP, VERSION, namespace, plural, name, {"status": body})
        except k8s.ApiException as e:
            _log.warning("gatewayapi.status-failed", kind=kind, namespace=namespace, name=name,
                         status=e.status, reason=e.reason)
            return False
        except OSError as e:  # the API server is unreachable: retried with the next change
            _log.warning("gatewayapi.status-failed", kind=kind, namespace=namespace, name=name,
                         error=str(e))
            return False
        _log.info("gatewayapi.status", kind=kind, namespace=namespace, name=name)
        return True
