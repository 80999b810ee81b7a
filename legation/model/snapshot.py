"""MeshSnapshot: an immutable picture of the whole mesh, with its indexes.

Built by the MeshStore from the current objects of every source. Collections
are tuples sorted by (namespace, name) so that translators iterate in a
deterministic order. Indexes are computed once per snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from legation.model.diagnostics import Diagnostic
from legation.model.mesh import (
    DEFAULT_DOMAIN,
    Endpoint,
    EndpointSlice,
    HealthStatus,
    Locality,
    Namespace,
    Node,
    PolicyObject,
    Service,
    ServicePort,
    Workload,
    WorkloadKind,
    selector_matches,
)


def _by_ns_name(obj: Service | Workload | EndpointSlice | PolicyObject) -> tuple[str, str]:
    return (obj.namespace, obj.name)


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSnapshot:
    version: int = 0  # the store's change counter; NOT an xDS version
    domain: str = DEFAULT_DOMAIN
    root_namespace: str = "istio-system"
    namespaces: tuple[Namespace, ...] = ()
    services: tuple[Service, ...] = ()
    workloads: tuple[Workload, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    nodes: tuple[Node, ...] = ()
    policies: tuple[
        PolicyObject, ...
    ] = ()  # VirtualService, DestinationRule, ... by (kind, ns, name)
    diagnostics: tuple[Diagnostic, ...] = ()

    _services: dict[tuple[str, str], Service] = field(init=False, repr=False, compare=False)
    _workloads: dict[tuple[str, str, str], Workload] = field(init=False, repr=False, compare=False)
    _slices: dict[tuple[str, str], tuple[EndpointSlice, ...]] = field(
        init=False, repr=False, compare=False
    )
    _nodes: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_services", {_by_ns_name(s): s for s in self.services})
        object.__setattr__(
            self, "_workloads", {(w.kind.value, w.namespace, w.name): w for w in self.workloads}
        )
        slices: dict[tuple[str, str], list[EndpointSlice]] = defaultdict(list)
        for es in self.endpoint_slices:
            slices[(es.namespace, es.service_name)].append(es)
        object.__setattr__(self, "_slices", {k: tuple(v) for k, v in slices.items()})
        object.__setattr__(self, "_nodes", {n.name: n for n in self.nodes})

    # -- lookups ---------------------------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        return self._services.get((namespace, name))

    def workload(self, namespace: str, name: str) -> Workload | None:
        """A WorkloadEntry or Pod by name; a WorkloadEntry wins a tie."""
        return self._workloads.get(
            (WorkloadKind.WORKLOAD_ENTRY.value, namespace, name)
        ) or self._workloads.get((WorkloadKind.POD.value, namespace, name))

    def policies_of(self, kind: str) -> tuple[PolicyObject, ...]:
        return tuple(p for p in self.policies if p.kind == kind)

    def services_selecting(self, workload: Workload) -> tuple[Service, ...]:
        """Services of the workload's namespace whose selector matches its labels."""
        return tuple(
            s
            for s in self.services
            if s.namespace == workload.namespace and selector_matches(s.selector, workload.labels)
        )

    # -- endpoints -------------------------------------------------------

    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Every endpoint of one service port, sorted by (address, port).

        EndpointSlices labelled with the service are authoritative for Pods
        (as in Kubernetes); WorkloadEntries selected by the service's selector
        are added (as Istio does); Pods are selected directly only when the
        service has no EndpointSlice at all (the file source has none).
        """
        found: dict[tuple[str, int], Endpoint] = {}
        slices = self._slices.get((service.namespace, service.name), ())
        for es in slices:
            self._slice_endpoints(es, port, found)
        for w in self.workloads:
            if w.namespace != service.namespace or not selector_matches(service.selector, w.labels):
                continue
            if w.kind is WorkloadKind.POD and slices:
                continue
            target = w.endpoint_port(port)
            if target is None or w.health is HealthStatus.UNHEALTHY:
                continue
            found.setdefault((w.address, target), self._endpoint(w, w.address, target, w.health))
        return tuple(found[k] for k in sorted(found))

    def _slice_endpoints(
        self, es: EndpointSlice, port: ServicePort, found: dict[tuple[str, int], Endpoint]
    ) -> None:
        slice_port = next((p for p in es.ports if p.name == port.name), None)
        if slice_port is None:
            return
        for ep in es.endpoints:
            health = ep.health
            if health is None:
                continue
            pod = (
                self._workloads.get((WorkloadKind.POD.value, es.namespace, ep.target_name))
                if ep.target_kind == "Pod"
                else None
            )
            for address in ep.addresses:
                if pod is not None:
                    e = self._endpoint(pod, address, slice_port.port, health)
                else:
                    e = Endpoint(
                        address=address,
                        port=slice_port.port,
                        health=health,
                        locality=self._locality(ep.node_name, ep.zone),
                        labels=(),
                        service_account="",
                        workload="",
                    )
                found.setdefault((address, slice_port.port), e)

    def _endpoint(self, w: Workload, address: str, port: int, health: HealthStatus) -> Endpoint:
        locality = w.locality
        if w.kind is WorkloadKind.POD and not (locality.region or locality.zone):
            locality = self._locality(w.node_name, "")
        return Endpoint(
            address=address,
            port=port,
            health=health,
            locality=locality,
            labels=w.labels,
            service_account=w.service_account,
            workload=f"{w.namespace}/{w.name}",
            weight=w.weight,
            has_sidecar=dict(w.labels).get("security.istio.io/tlsMode") == "istio",
        )

    def _locality(self, node_name: str, zone: str) -> Locality:
        node = self._nodes.get(node_name)
        if node is None:
            return Locality(zone=zone)
        if zone and not node.locality.zone:
            return Locality(region=node.locality.region, zone=zone)
        return node.locality
