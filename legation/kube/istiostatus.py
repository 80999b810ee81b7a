"""Writes whether each Istio object is in force back to its `status` (as istiod does with
`PILOT_ENABLE_STATUS`), so `kubectl get virtualservice -o yaml` says so.

For every Istio object the Kubernetes source read (and every one it could not read:
an invalid version has diagnostics but no object), a JSON merge patch of the
`status` subresource, sent only when it changed:

- `observedGeneration`: the newest `metadata.generation` Legation has seen;
- `conditions`: `Reconciled`, True when that generation is in force (reason
  `InForce`), False when it is not (reason `Invalid`: its diagnostics are errors
  and the last good version serves instead, if any; `Rejected`: Envoy refused the
  configuration it produced and NACK containment holds it back), with the first
  error as message and `lastTransitionTime` kept while the status stays;
- `validationMessages`: its findings at that generation, in Istio's analysis
  message shape (`level`, `type.code`/`type.name`) plus Legation's `message` and
  `field` (Istio's CRDs keep unknown status fields).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import structlog
from kubernetes import client as k8s

from legation.kube.gatewaystatus import send_changed
from legation.model import Diagnostic, Severity, SourceRef
from legation.security.clock import utc_now

_log = structlog.get_logger("legation.kube.istiostatus")

# kind -> (group, version, plural): the versions Legation watches first
KINDS: dict[str, tuple[str, str, str]] = {
    "VirtualService": ("networking.istio.io", "v1", "virtualservices"),
    "DestinationRule": ("networking.istio.io", "v1", "destinationrules"),
    "Gateway": ("networking.istio.io", "v1", "gateways"),
    "ServiceEntry": ("networking.istio.io", "v1", "serviceentries"),
    "Sidecar": ("networking.istio.io", "v1", "sidecars"),
    "WorkloadEntry": ("networking.istio.io", "v1", "workloadentries"),
    "EnvoyFilter": ("networking.istio.io", "v1alpha3", "envoyfilters"),
    "PeerAuthentication": ("security.istio.io", "v1", "peerauthentications"),
    "AuthorizationPolicy": ("security.istio.io", "v1", "authorizationpolicies"),
    "RequestAuthentication": ("security.istio.io", "v1", "requestauthentications"),
    "Telemetry": ("telemetry.istio.io", "v1", "telemetries"),
}
REJECTED_CODE = "envoy.rejected"
_MAX_MESSAGES = 20
Key = tuple[str, str, str]  # (kind, namespace, name)


class IstioStatusWriter:
    def __init__(self, api: Any, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._custom = k8s.CustomObjectsApi(api)
        self._clock = clock
        self._written: dict[Key, dict[str, Any]] = {}
        self._since: dict[Key, tuple[bool, str]] = {}  # Reconciled status, since when

    def sync(self, objects: Iterable[SourceRef], diagnostics: Iterable[Diagnostic]) -> int:
        """Patch every object whose status changed; how many were written."""
        wanted = self.desired(objects, diagnostics)
        written = send_changed(self._written, wanted, self._patch)
        self._since = {k: v for k, v in self._since.items() if k in wanted}
        return written

    def desired(self, objects: Iterable[SourceRef], diagnostics: Iterable[Diagnostic]
                ) -> dict[Key, dict[str, Any]]:
        generation: dict[Key, int] = {}
        for ref in [*objects, *(d.ref for d in diagnostics)]:
            if ref.kind in KINDS and not ref.file:  # Kubernetes objects only
                key = (ref.kind, ref.namespace, ref.name)
                generation[key] = max(generation.get(key, 0), ref.generation)
        found: dict[Key, list[Diagnostic]] = {k: [] for k in generation}
        for d in diagnostics:
            key = (d.ref.kind, d.ref.namespace, d.ref.name)
            if key in found and d.ref.generation == generation[key]:
                found[key].append(d)
        return {key: self._body(key, generation[key], found[key]) for key in generation}

    def _body(self, key: Key, generation: int, found: list[Diagnostic]) -> dict[str, Any]:
        errors = [d for d in found if d.severity == Severity.ERROR]
        in_force = not errors
        reason = ("InForce" if in_force else
                  "Rejected" if any(d.code == REJECTED_CODE for d in errors) else "Invalid")
        message = ("this generation is in force" if in_force else errors[0].message)
        since = self._since.get(key)
        if since is None or since[0] != in_force:
            since = self._since[key] = (in_force, self._clock().strftime("%Y-%m-%dT%H:%M:%SZ"))
        ordered = sorted(found, key=lambda d: (_LEVELS[str(d.severity)], d.code, d.field))
        return {
            "observedGeneration": generation,
            "conditions": [{"type": "Reconciled", "status": "True" if in_force else "False",
                            "reason": reason, "message": message[:4096],
                            "lastTransitionTime": since[1]}],
            "validationMessages": [
                {"level": str(d.severity).upper(), "type": {"code": d.code, "name": d.code},
                 "message": d.message[:1024], **({"field": d.field} if d.field else {})}
                for d in ordered[:_MAX_MESSAGES]],
        }

    def _patch(self, key: Key, body: dict[str, Any]) -> bool:
        kind, namespace, name = key
        group, version, plural = KINDS[kind]
        try:
            self._custom.patch_namespaced_custom_object_status(
                group, version, namespace, plural, name, {"status": body})
        except k8s.ApiException as e:  # gone meanwhile, or a conflict: the next sync retries
            _log.warning("istio.status-failed", kind=kind, namespace=namespace, name=name,
                         status=e.status, reason=e.reason)
            return False
        except OSError as e:
            _log.warning("istio.status-failed", kind=kind, namespace=namespace, name=name,
                         error=str(e))
            return False
        _log.info("istio.status", kind=kind, namespace=namespace, name=name,
                  generation=body["observedGeneration"])
        return True


_LEVELS = {"error": 0, "warning": 1, "info": 2}
