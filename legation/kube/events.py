"""Kubernetes Events for configuration Envoy refused: `kubectl describe virtualservice X`
(and `kubectl get events`) shows that a proxy NACKed what X produced and why.

`NackEvents.rejected` is called when NACK containment holds an object back
(app: `_contain`): one Warning Event (reason `EnvoyRejected`, reporting component
`legation`) on the object, naming the proxy, the xDS type and Envoy's message.
Named `<object>.<time in hex>` as client-go names its events; a failure to write
is logged, never retried (the diagnostic and the status say it too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import structlog
from kubernetes import client as k8s

from legation.kube.istiostatus import KINDS
from legation.model import SourceRef
from legation.security.clock import utc_now

_log = structlog.get_logger("legation.kube.events")

REASON = "EnvoyRejected"
COMPONENT = "legation"


class NackEvents:
    def __init__(self, api: Any, *, instance: str = "", clock: Callable[[], datetime] = utc_now
                 ) -> None:
        self._core = k8s.CoreV1Api(api)
        self._instance = instance
        self._clock = clock

    def rejected(self, ref: SourceRef, *, node: str, type_name: str, message: str) -> bool:
        """A Warning Event on the object `ref` names; whether it was written."""
        if ref.kind not in KINDS or not ref.namespace:
            return False
        group, version, _ = KINDS[ref.kind]
        now = self._clock()
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{ref.name}.{int(now.timestamp() * 1e9):x}",
                         "namespace": ref.namespace},
            "involvedObject": {"apiVersion": f"{group}/{version}", "kind": ref.kind,
                               "name": ref.name, "namespace": ref.namespace},
            "reason": REASON, "type": "Warning",
            "message": (f"proxy {node} rejected the {type_name} configuration built from "
                        f"this object, which is held back (the last good version serves): "
                        f"{message}")[:1024],
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT, "reportingInstance": self._instance,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        try:
            self._core.create_namespaced_event(ref.namespace, body)
        except (k8s.ApiException, OSError) as e:
            _log.warning("k8s.event-failed", kind=ref.kind, namespace=ref.namespace,
                         name=ref.name, error=str(e)[:200])
            return False
        return True
