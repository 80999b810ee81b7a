"""MeshSnapshot endpoint resolution: slices, WorkloadEntries, Pods, ports, health."""

from __future__ import annotations

from legation.model import (
    EndpointSlice,
    HealthStatus,
    Locality,
    MeshSnapshot,
    Node,
    Protocol,
    Service,
    ServicePort,
    SliceEndpoint,
    SlicePort,
    SourceRef,
    Workload,
    WorkloadKind,
    labels_of,
)


def _ref(kind: str, name: str, ns: str = "shop") -> SourceRef:
    return SourceRef(kind=kind, namespace=ns, name=name)


def svc(
    name: str = "catalog", *, target: int | str = 9080, selector: dict[str, str] | None = None
) -> Service:
    return Service(
        ref=_ref("Service", name),
        name=name,
        namespace="shop",
        selector=labels_of({"app": name} if selector is None else selector),
        ports=(ServicePort(name="http", port=9080, target_port=target, protocol=Protocol.HTTP),),
    )


def wle(
    name: str,
    address: str,
    *,
    app: str = "catalog",
    ports: dict[str, int] | None = None,
    health: HealthStatus = HealthStatus.HEALTHY,
    kind: WorkloadKind = WorkloadKind.WORKLOAD_ENTRY,
    node: str = "",
) -> Workload:
    return Workload(
        ref=_ref(kind.value, name),
        kind=kind,
        name=name,
        namespace="shop",
        address=address,
        labels=labels_of({"app": app}),
        ports=tuple((ports or {}).items()),
        health=health,
        node_name=node,
    )


def test_workload_entries_selected_by_labels() -> None:
    s = svc()
    mesh = MeshSnapshot(
        services=(s,),
        workloads=(
            wle("b", "127.0.0.2"),
            wle("a", "127.0.0.1"),
            wle("x", "127.0.0.9", app="other"),
        ),
    )
    eps = mesh.endpoints(s, s.ports[0])
    assert [(e.address, e.port, e.workload) for e in eps] == [
        ("127.0.0.1", 9080, "shop/a"),
        ("127.0.0.2", 9080, "shop/b"),
    ]


def test_workload_entry_port_map_wins_over_target_port() -> None:
    s = svc()
    mesh = MeshSnapshot(services=(s,), workloads=(wle("a", "127.0.0.1", ports={"http": 18080}),))
    assert [e.port for e in mesh.endpoints(s, s.ports[0])] == [18080]


def test_named_target_port_resolves_on_pod() -> None:
    s = svc(target="web")
    pod = wle("p", "10.0.0.1", kind=WorkloadKind.POD, ports={"web": 8080})
    mesh = MeshSnapshot(services=(s,), workloads=(pod,))
    assert [e.port for e in mesh.endpoints(s, s.ports[0])] == [8080]


def test_unhealthy_workloads_are_left_out() -> None:
    s = svc()
    mesh = MeshSnapshot(
        services=(s,), workloads=(wle("a", "127.0.0.1", health=HealthStatus.UNHEALTHY),)
    )
    assert mesh.endpoints(s, s.ports[0]) == ()


def test_slices_are_authoritative_for_pods_and_map_conditions() -> None:
    s = svc()
    pod = wle("p1", "10.0.0.1", kind=WorkloadKind.POD, node="n1")
    stray = wle("p2", "10.0.0.2", kind=WorkloadKind.POD)
    es = EndpointSlice(
        ref=_ref("EndpointSlice", "catalog-abc"),
        name="catalog-abc",
        namespace="shop",
        service_name="catalog",
        ports=(SlicePort(name="http", port=8080),),
        endpoints=(
            SliceEndpoint(addresses=("10.0.0.1",), target_kind="Pod", target_name="p1"),
            SliceEndpoint(
                addresses=("10.0.0.3",), ready=False, serving=True, terminating=True, zone="z"
            ),
            SliceEndpoint(addresses=("10.0.0.4",), ready=False, serving=False),
        ),
    )
    node = Node(
        ref=SourceRef(kind="Node", namespace="", name="n1"),
        name="n1",
        locality=Locality(region="r", zone="a"),
    )
    mesh = MeshSnapshot(services=(s,), workloads=(pod, stray), endpoint_slices=(es,), nodes=(node,))
    eps = {e.address: e for e in mesh.endpoints(s, s.ports[0])}
    assert set(eps) == {"10.0.0.1", "10.0.0.3"}  # p2 not in the slice; 10.0.0.4 not serving
    assert eps["10.0.0.1"].health is HealthStatus.HEALTHY
    assert eps["10.0.0.1"].workload == "shop/p1"
    assert eps["10.0.0.1"].locality == Locality(region="r", zone="a")
    assert eps["10.0.0.3"].health is HealthStatus.DRAINING
    assert eps["10.0.0.3"].locality.zone == "z"


def test_services_selecting_and_lookup() -> None:
    a, b = svc("catalog"), svc("catalog-canary", selector={"app": "catalog"})
    w = wle("a", "127.0.0.1")
    mesh = MeshSnapshot(services=(a, b), workloads=(w,))
    assert [s.name for s in mesh.services_selecting(w)] == ["catalog", "catalog-canary"]
    assert mesh.workload("shop", "a") is w
    assert mesh.workload("shop", "nope") is None
    assert mesh.service("shop", "catalog") is a


def test_empty_selector_selects_nothing() -> None:
    s = svc(selector={})
    mesh = MeshSnapshot(services=(s,), workloads=(wle("a", "127.0.0.1"),))
    assert mesh.endpoints(s, s.ports[0]) == ()
