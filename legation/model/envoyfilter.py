"""EnvoyFilter (`networking.istio.io` v1alpha3): patches to the Envoy config of selected proxies.

Istio's semantics (istio/api networking/v1alpha3/envoy_filter.proto):
- which proxies: `workloadSelector.labels` (workloads of the filter's namespace,
  or of every namespace for a filter in the root namespace), `targetRefs` to a
  Gateway API Gateway (its workloads), or, with neither, every proxy of the
  namespace (every proxy of the mesh from the root namespace);
- in which order: by `priority` (lower first, default 0), then root-namespace
  filters before the workload namespace's, then by name (Istio: creation time);
  each filter's `configPatches` in order;
- each patch: `applyTo` what, `match` where (`context` SIDECAR_INBOUND /
  SIDECAR_OUTBOUND / GATEWAY / ANY and the listener, route configuration or
  cluster it must be in), `patch.operation` and `patch.value` (Envoy v3 JSON,
  parsed when read: `value` holds the serialized message of the patched kind).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from legation.model.diagnostics import SourceRef
from legation.model.labels import Labels, selector_matches


class ApplyTo(StrEnum):
    LISTENER = "LISTENER"
    FILTER_CHAIN = "FILTER_CHAIN"
    NETWORK_FILTER = "NETWORK_FILTER"
    HTTP_FILTER = "HTTP_FILTER"
    LISTENER_FILTER = "LISTENER_FILTER"
    ROUTE_CONFIGURATION = "ROUTE_CONFIGURATION"
    VIRTUAL_HOST = "VIRTUAL_HOST"
    HTTP_ROUTE = "HTTP_ROUTE"
    CLUSTER = "CLUSTER"


class PatchContext(StrEnum):
    ANY = "ANY"
    SIDECAR_INBOUND = "SIDECAR_INBOUND"
    SIDECAR_OUTBOUND = "SIDECAR_OUTBOUND"
    GATEWAY = "GATEWAY"


class Operation(StrEnum):
    MERGE = "MERGE"
    ADD = "ADD"
    REMOVE = "REMOVE"
    INSERT_BEFORE = "INSERT_BEFORE"
    INSERT_AFTER = "INSERT_AFTER"
    INSERT_FIRST = "INSERT_FIRST"
    REPLACE = "REPLACE"


# What each kind may do (Istio's envoy_filter.proto: which operations apply where)
OPERATIONS: dict[ApplyTo, frozenset[Operation]] = {
    ApplyTo.LISTENER: frozenset({Operation.MERGE, Operation.ADD, Operation.REMOVE}),
    ApplyTo.FILTER_CHAIN: frozenset({Operation.MERGE, Operation.ADD, Operation.REMOVE,
                                     Operation.INSERT_FIRST}),
    ApplyTo.NETWORK_FILTER: frozenset(Operation),
    ApplyTo.HTTP_FILTER: frozenset(Operation),
    ApplyTo.LISTENER_FILTER: frozenset(Operation),
    ApplyTo.ROUTE_CONFIGURATION: frozenset({Operation.MERGE}),
    ApplyTo.VIRTUAL_HOST: frozenset({Operation.MERGE, Operation.ADD, Operation.REMOVE}),
    ApplyTo.HTTP_ROUTE: frozenset({Operation.MERGE, Operation.REMOVE, Operation.REPLACE,
                                   Operation.INSERT_BEFORE, Operation.INSERT_AFTER,
                                   Operation.INSERT_FIRST, Operation.ADD}),
    ApplyTo.CLUSTER: frozenset({Operation.MERGE, Operation.ADD, Operation.REMOVE}),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerMatch:
    port: int = 0  # portNumber: the listener's port (or a filter chain's destination port)
    name: str = ""
    chain: str = ""  # filterChain.name
    sni: str = ""
    transport_protocol: str = ""
    application_protocols: tuple[str, ...] = ()
    destination_port: int = 0
    filter: str = ""  # filterChain.filter.name
    sub_filter: str = ""  # filterChain.filter.subFilter.name (an HTTP filter)
    listener_filter: str = ""  # listenerFilter


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    port: int = 0
    name: str = ""
    vhost: str = ""
    route: str = ""
    action: str = ""  # ANY, ROUTE, REDIRECT, DIRECT_RESPONSE ("": ANY)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterMatch:
    port: int = 0
    service: str = ""
    subset: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigPatch:
    apply_to: ApplyTo
    context: PatchContext = PatchContext.ANY
    listener: ListenerMatch | None = None
    route: RouteMatch | None = None
    cluster: ClusterMatch | None = None
    operation: Operation
    value: bytes = b""  # the serialized message of `apply_to`'s kind
    index: int = 0  # its place in configPatches (for messages)


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvoyFilter:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels = ()
    gateways: tuple[str, ...] = ()  # targetRefs: Gateway API Gateways of the namespace
    priority: int = 0
    patches: tuple[ConfigPatch, ...] = ()

    def selects(self, *, namespace: str, labels: Labels, root_namespace: str,
                gateway_name: str = "") -> bool:
        """Whether it applies to a proxy of `namespace` with `labels` (`gateway_name`:
        the Gateway API Gateway it serves, if any)."""
        if self.namespace != namespace and self.namespace != root_namespace:
            return False
        if self.gateways:
            return self.namespace == namespace and gateway_name in self.gateways
        return selector_matches(self.selector, labels) if self.selector else True


def ordered(filters: list[EnvoyFilter], root_namespace: str) -> list[EnvoyFilter]:
    """In application order: priority, root namespace first, then by name."""
    return sorted(filters, key=lambda f: (f.priority, f.namespace != root_namespace,
                                          f.namespace, f.name))
