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
- `split_virtual_hosts(config)`: a route configuration for a delta ADS proxy,
  its virtual hosts as VHDS resources of their own (vhds.py).
- `gateway_resources(mesh, proxy)`: a gateway proxy's listeners and route
  configurations (Istio Gateways selecting its workload; gateway.py).
- `translate_proxy(mesh, proxy)`: what belongs to one workload: its inbound
  clusters and its listeners (`translate_workload`), and the assignments
  locality load balancing changes for it (`assignments_for`).

The pipeline reuses work across mesh versions through views: the parts of
the mesh that route configurations (`route_view`) and a proxy's inbound
clusters and listeners (`proxy_view`) are computed from. An unchanged view
gives byte-identical output, so an endpoint-only change retranslates only
the mesh-wide resources. Locality load balancing is found once per mesh
(`locality_targets`) and computed once per `Client` (`client_of`).
"""

from legation.translators.gateway import gateway_resources
from legation.translators.result import Translated
from legation.translators.subsets import (
    Client,
    LocalityTarget,
    assignments_for,
    client_of,
    locality_targets,
    outbound_services,
    service_inputs,
    service_outbound,
)
from legation.translators.translate import (
    proxy_view,
    resolve_proxy,
    route_key,
    route_view,
    translate_mesh,
    translate_namespace,
    translate_proxy,
    translate_workload,
)
from legation.translators.vhds import split_virtual_hosts

__all__ = [
    "Client",
    "LocalityTarget",
    "Translated",
    "assignments_for",
    "client_of",
    "gateway_resources",
    "locality_targets",
    "outbound_services",
    "proxy_view",
    "resolve_proxy",
    "route_key",
    "route_view",
    "service_inputs",
    "service_outbound",
    "split_virtual_hosts",
    "translate_mesh",
    "translate_namespace",
    "translate_proxy",
    "translate_workload",
]
