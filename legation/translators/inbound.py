"""Which ports a workload's sidecar serves inbound, and where each one goes.

Shared by the inbound clusters (clusters.py) and listeners (listeners.py) so
both agree. Every service port that selects the workload contributes its
target port, resolved as the endpoint port the rest of the mesh dials (the
same rule as `MeshSnapshot.endpoints`): a WorkloadEntry's ``ports[<port
name>]``, else a numeric ``targetPort``, else the workload port named by
``targetPort``. Several service ports sharing a target port share one
listener and one cluster; the first (services sorted by namespace/name, ports
in declaration order) decides its protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

from legation.model import (
    AppAddress,
    Diagnostic,
    MeshSnapshot,
    Protocol,
    Service,
    ServicePort,
    Severity,
    Workload,
)
from legation.translators.names import OUTBOUND_PROXY_PORT


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundPort:
    port: int  # the target port: bound on the workload address
    protocol: Protocol
    app: AppAddress  # where the sidecar forwards it


def inbound_ports(
    mesh: MeshSnapshot, workload: Workload
) -> tuple[tuple[InboundPort, ...], list[Diagnostic]]:
    """The workload's inbound ports, sorted by port, and what went wrong."""
    found: dict[int, InboundPort] = {}
    diagnostics: list[Diagnostic] = []
    for svc in mesh.services_selecting(workload):
        for index, sp in enumerate(svc.ports):
            target = workload.endpoint_port(sp)
            if target is None:
                diagnostics.append(_unresolved(svc, index, sp, workload))
                continue
            if target == OUTBOUND_PROXY_PORT:
                diagnostics.append(_reserved(svc, index, sp, workload))
                continue
            known = found.get(target)
            if known is None:
                found[target] = InboundPort(
                    port=target, protocol=sp.protocol, app=workload.app_address(target)
                )
            elif known.protocol is not sp.protocol:
                diagnostics.append(_conflict(svc, index, sp, known))
    ports = []
    for target in sorted(found):
        inbound = found[target]
        if inbound.app.host == workload.address and inbound.app.port == target:
            diagnostics.append(_loop(workload, target))
            continue
        ports.append(inbound)
    return tuple(ports), diagnostics


def _unresolved(svc: Service, index: int, sp: ServicePort, w: Workload) -> Diagnostic:
    return Diagnostic(
        ref=svc.ref,
        field=f"spec.ports[{index}].targetPort",
        code="service.target-port-unresolved",
        message=(
            f"targetPort {sp.target_port!r} names no port of {w.kind} {w.namespace}/{w.name}; "
            "that workload gets no inbound listener for it (expected a port the workload "
            "declares, or a number)"
        ),
        severity=Severity.WARNING,
    )


def _reserved(svc: Service, index: int, sp: ServicePort, w: Workload) -> Diagnostic:
    return Diagnostic(
        ref=svc.ref,
        field=f"spec.ports[{index}].targetPort",
        code="service.target-port-reserved",
        message=(
            f"port {sp.port} targets port {OUTBOUND_PROXY_PORT} of {w.kind} "
            f"{w.namespace}/{w.name}, which its sidecar uses for the outbound HTTP proxy; "
            "no inbound listener is built for it (expected any other port)"
        ),
    )


def _conflict(svc: Service, index: int, sp: ServicePort, known: InboundPort) -> Diagnostic:
    return Diagnostic(
        ref=svc.ref,
        field=f"spec.ports[{index}]",
        code="service.target-port-protocol-conflict",
        message=(
            f"port {sp.port} ({sp.protocol}) targets port {known.port}, which another service "
            f"port already declares as {known.protocol}; the sidecar serves it as "
            f"{known.protocol} (expected one protocol per target port)"
        ),
        severity=Severity.WARNING,
    )


def _loop(w: Workload, port: int) -> Diagnostic:
    return Diagnostic(
        ref=w.ref,
        field="metadata.annotations[sidecar.legation.io/app-ports]",
        code="workload.inbound-loop",
        message=(
            f"the sidecar would listen on {w.address}:{port} and forward to the same address; "
            "no inbound listener is built for it (map the app elsewhere with "
            f'sidecar.legation.io/app-ports: "{port}=<app port>")'
        ),
    )
