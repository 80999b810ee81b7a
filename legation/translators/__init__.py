"""Translators: pure functions from the mesh model to Envoy v3 messages.

Pure means: same input, byte-identical output; no I/O, no clock, no logging;
problems come back as `Diagnostic`s in the result. Translators import
`legation.model` and Envoy's generated protobuf modules, nothing else of
ours. Every resource name format lives in `names.py`.

Work is split by how widely a result is shared, so the pipeline computes each
piece once and every proxy that needs it gets the same serialized bytes:

- `translate_mesh(mesh)`: proxy-independent resources (outbound clusters and
  every ClusterLoadAssignment). Once per mesh version.
- `translate_namespace(mesh, namespace, key)`: the outbound RouteConfiguration
  as seen from one namespace (short service names resolve within it) and, when
  VirtualServices match on `sourceLabels`, from clients with those labels
  (`route_key(mesh, proxy)`). Once per (mesh version, namespace, key).
- `translate_proxy(mesh, proxy)`: what belongs to one workload: its inbound
  clusters and its listeners. Once per (mesh version, proxy).
"""

from legation.translators.result import Translated
from legation.translators.translate import (
    resolve_proxy,
    route_key,
    translate_mesh,
    translate_namespace,
    translate_proxy,
)

__all__ = [
    "Translated",
    "resolve_proxy",
    "route_key",
    "translate_mesh",
    "translate_namespace",
    "translate_proxy",
]
