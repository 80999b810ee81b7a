"""Small builders of model objects for translator tests (no YAML, no converter)."""

from __future__ import annotations

from legation.model import (
    AppAddress,
    EndpointSlice,
    HealthStatus,
    Locality,
    MeshSnapshot,
    Node,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    SliceEndpoint,
    SlicePort,
    SourceRef,
    Workload,
    WorkloadKind,
    labels_of,
)
from legation.model.proxy import InterceptionMode


def ref(kind: str, name: str, namespace: str = "shop") -> SourceRef:
    return SourceRef(kind=kind, namespace=namespace, name=name, file="mesh.yaml", line=1)


def port(
    number: int,
    protocol: Protocol = Protocol.HTTP,
    *,
    name: str | None = None,
    target: int | str | None = None,
) -> ServicePort:
    return ServicePort(
        name=f"{protocol.lower()}-{number}" if name is None else name,
        port=number,
        target_port=number if target is None else target,
        protocol=protocol,
    )


def service(
    name: str = "catalog",
    namespace: str = "shop",
    *ports: ServicePort,
    selector: dict[str, str] | None = None,
) -> Service:
    return Service(
        ref=ref("Service", name, namespace),
        name=name,
        namespace=namespace,
        selector=labels_of({"app": name} if selector is None else selector),
        ports=ports or (port(9080),),
    )


def workload(
    name: str,
    address: str,
    namespace: str = "shop",
    *,
    app: str = "catalog",
    kind: WorkloadKind = WorkloadKind.WORKLOAD_ENTRY,
    ports: dict[str, int] | None = None,
    labels: dict[str, str] | None = None,
    app_ports: dict[int, AppAddress] | None = None,
    locality: Locality | None = None,
    health: HealthStatus = HealthStatus.HEALTHY,
    weight: int = 0,
    node_name: str = "",
) -> Workload:
    return Workload(
        ref=ref(kind.value, name, namespace),
        kind=kind,
        name=name,
        namespace=namespace,
        address=address,
        labels=labels_of({"app": app} if labels is None else labels),
        ports=tuple(sorted((ports or {}).items())),
        app_ports=tuple(sorted((app_ports or {}).items())),
        locality=locality or Locality(),
        health=health,
        weight=weight,
        node_name=node_name,
    )


def endpoint_slice(
    service_name: str,
    namespace: str = "shop",
    *endpoints: SliceEndpoint,
    ports: dict[str, int] | None = None,
    name: str | None = None,
) -> EndpointSlice:
    return EndpointSlice(
        ref=ref("EndpointSlice", name or f"{service_name}-abc", namespace),
        name=name or f"{service_name}-abc",
        namespace=namespace,
        service_name=service_name,
        ports=tuple(SlicePort(name=n, port=p) for n, p in sorted((ports or {}).items())),
        endpoints=endpoints,
    )


def node(name: str, region: str = "", zone: str = "") -> Node:
    return Node(ref=ref("Node", name, ""), name=name, locality=Locality(region=region, zone=zone))


def mesh(
    *objects: Service | Workload | EndpointSlice | Node,
    domain: str = "cluster.local",
) -> MeshSnapshot:
    def ordered(kind: type) -> tuple:  # type: ignore[type-arg]
        items = [o for o in objects if isinstance(o, kind)]
        return tuple(sorted(items, key=lambda o: (getattr(o, "namespace", ""), o.name)))

    return MeshSnapshot(
        domain=domain,
        services=ordered(Service),
        workloads=ordered(Workload),
        endpoint_slices=ordered(EndpointSlice),
        nodes=ordered(Node),
    )


def proxy(
    w: Workload, mode: InterceptionMode = InterceptionMode.EXPLICIT, node_id: str = ""
) -> Proxy:
    return Proxy(node_id=node_id or f"{w.name}.{w.namespace}", workload=w, mode=mode)
