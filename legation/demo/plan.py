"""What `legation demo` runs, derived from the mesh it is given.

Pure: a `MeshSnapshot` (and the directory's files, for the live change) in,
a `Plan` out; nothing is started here. Every WorkloadEntry gets a stock Envoy
sidecar on its own loopback address and a demo app wherever its sidecar
forwards inbound traffic (`sidecar.legation.io/app-ports`). The workload
that no service and no Gateway selects is the client: traffic enters the mesh
through its sidecar. A workload a Gateway selects is an ingress gateway: its
Envoy binds the Gateway's server ports, and an HTTPS server with a
credential whose Secret holds the CA (`ca.crt`) is probed from outside
(`Ingress`), the certificate verified against that CA. A ServiceEntry host
whose endpoint is on this machine (`localhost` or 127.x) is an external
service: a demo app runs there, outside the mesh (no sidecar), and the client
calls it through its sidecar by the entry's host name (`External`). Services
no app calls are the entry points; for the shop, order calls catalog and payment
through its own sidecar (`CALLS`). A service port of protocol gRPC gets a gRPC
app (grpcapps.py). A WorkloadEntry annotated as Istio marks proxyless pods
(``inject.istio.io/templates: grpc-agent``) gets no sidecar: it is a proxyless
gRPC client of the first gRPC service port of its namespace, which the client's
sidecar is called on too (`GrpcDemo`), so one VirtualService steers both.

The live change: with traffic rules in the directory (VirtualService,
DestinationRule), they are taken away and put back (the split changes);
otherwise the last workload of a service with several is removed and put
back (its traffic moves to the others).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from legation.model import MeshSnapshot, Service, Workload, WorkloadKind
from legation.model.protocol import Protocol
from legation.translators import names
from legation.translators.inbound import inbound_ports

# Who calls whom on `/shop`, by service name within a namespace.
CALLS: dict[str, tuple[str, ...]] = {"order": ("catalog", "payment")}
OUTBOUND_PORT = 15001  # the sidecar's HTTP proxy listener (DESIGN.md §4)
ENVOY_ADMIN_PORT = 15000  # each sidecar's Envoy admin, on its workload address
TRAFFIC_KINDS = frozenset({"VirtualService", "DestinationRule"})
# Istio's mark of a proxyless gRPC pod (its injection template)
PROXYLESS_ANNOTATION, PROXYLESS_TEMPLATE = "inject.istio.io/templates", "grpc-agent"
_DOC_SPLIT = re.compile(r"(?m)^---[ \t]*$")


class PlanError(Exception):
    """The mesh cannot be run as a demo; the message is one line for the user."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SidecarSpec:
    workload: str
    namespace: str
    address: str
    delta: bool  # DELTA_GRPC ADS, else state-of-the-world
    inbound: tuple[int, ...]  # ports its inbound listeners bind on `address`
    node_id: str  # what `legation proxy` names it: <workload>.<ns>, a gateway router~...


@dataclass(frozen=True, slots=True, kw_only=True)
class AppSpec:
    name: str  # the workload's name: answered as x-served-by
    host: str
    port: int
    calls: tuple[str, ...] = ()  # host:port of services called on /shop
    proxy: tuple[str, int] | None = None  # its sidecar's outbound listener
    grpc: bool = False  # a gRPC app (grpcapps.GrpcApp), else HTTP (app.DemoApp)


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """A file edit made live and undone: `path` holds `original`; `changed` replaces it
    (None: the file is taken away)."""

    title: str  # "remove WorkloadEntry catalog-v2"
    undo_title: str  # "put WorkloadEntry catalog-v2 back"
    path: Path
    original: str
    changed: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Ingress:
    """An HTTPS request from outside the mesh through an ingress gateway."""

    gateway: str  # the gateway workload
    address: str
    port: int
    host: str  # SNI and Host; the certificate must be valid for it
    ca_pem: str  # what the client trusts (the credential Secret's ca.crt)
    path: str = "/shop"


@dataclass(frozen=True, slots=True, kw_only=True)
class External:
    """A service outside the mesh, known by a ServiceEntry, called through the client."""

    host: str  # the entry's host, as the client names it
    port: int  # the entry's port
    app: str  # the demo app answering it (its name, answered as x-served-by)


@dataclass(frozen=True, slots=True, kw_only=True)
class GrpcDemo:
    """A gRPC service port called by a proxyless client and through the client's sidecar."""

    target: str  # host:port, as both callers name it
    workload: str  # the proxyless client
    namespace: str
    address: str
    service_account: str
    labels: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    sidecars: tuple[SidecarSpec, ...]
    apps: tuple[AppSpec, ...]
    client: SidecarSpec
    entries: tuple[str, ...]  # host:port the traffic asks the client's sidecar for
    change: Change | None
    ingress: Ingress | None = None
    external: External | None = None
    grpc: GrpcDemo | None = None


def make_plan(mesh: MeshSnapshot, config_dir: Path) -> Plan:
    proxyless = _proxyless(config_dir)
    entries_ = [w for w in mesh.workloads if w.kind is WorkloadKind.WORKLOAD_ENTRY]
    workloads = [w for w in entries_ if (w.namespace, w.name) not in proxyless]
    if not workloads:
        raise PlanError(f"{config_dir}: no WorkloadEntry to run (the demo runs WorkloadEntries)")
    sidecars = tuple(_sidecar(mesh, w, delta=i % 2 == 1) for i, w in enumerate(workloads))
    pairs = zip(sidecars, workloads, strict=True)
    clients = [s for s, w in pairs
               if not mesh.services_selecting(w) and not mesh.gateways_of(w.labels, w.namespace)]
    if not clients:
        raise PlanError(
            f"{config_dir}: every workload is behind a service; the demo needs a client "
            "workload that no service selects, to send traffic from"
        )
    apps = tuple(a for w in workloads for a in _apps(mesh, w))
    called = {c for a in apps for c in a.calls}
    entries = tuple(
        _target(svc) for svc in mesh.services
        if svc.ports and svc.entry is None and svc.namespace == clients[0].namespace
        and _target(svc) not in called
    )  # fmt: skip
    external, outside = _external(mesh, clients[0].namespace)
    if not entries:
        raise PlanError(f"{config_dir}: no service in namespace {clients[0].namespace} to call")
    return Plan(
        sidecars=sidecars,
        apps=(*apps, *outside),
        client=clients[0],
        entries=entries,
        change=traffic_rules_change(config_dir) or workload_change(mesh),
        ingress=_ingress(mesh, workloads),
        external=external,
        grpc=_grpc(mesh, [w for w in entries_ if (w.namespace, w.name) in proxyless]),
    )


def _proxyless(config_dir: Path) -> set[tuple[str, str]]:
    """(namespace, name) of each WorkloadEntry annotated as a proxyless gRPC client."""
    found: set[tuple[str, str]] = set()
    for path in sorted(config_dir.rglob("*.y*ml")):
        for doc in _docs(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "WorkloadEntry":
                continue
            meta = doc.get("metadata") or {}
            templates = str((meta.get("annotations") or {}).get(PROXYLESS_ANNOTATION, ""))
            if PROXYLESS_TEMPLATE in (t.strip() for t in templates.split(",")):
                found.add((str(meta.get("namespace", "default")), str(meta.get("name"))))
    return found


def _grpc(mesh: MeshSnapshot, proxyless: list[Workload]) -> GrpcDemo | None:
    """The first proxyless client and the first gRPC service port of its namespace."""
    for w in proxyless:
        for svc in mesh.services:
            port = next((p for p in svc.ports if p.protocol is Protocol.GRPC), None)
            if svc.namespace == w.namespace and svc.entry is None and port is not None:
                return GrpcDemo(target=f"{svc.name}.{svc.namespace}:{port.port}",
                                workload=w.name, namespace=w.namespace, address=w.address,
                                service_account=w.service_account, labels=w.labels)
    return None


def _external(mesh: MeshSnapshot, namespace: str) -> tuple[External | None, list[AppSpec]]:
    """The first ServiceEntry host of `namespace` with an HTTP port and an endpoint on this
    machine, and the app that answers it there."""
    for svc in mesh.services:
        if svc.entry is None or svc.namespace != namespace or "*" in svc.name:
            continue
        for sp in svc.ports:
            if not sp.protocol.is_http:
                continue
            for ep in svc.entry.endpoints:
                if ep.address != "localhost" and not _loopback(ep.address):
                    continue
                default = sp.target_port if isinstance(sp.target_port, int) else sp.port
                host = "127.0.0.1" if ep.address == "localhost" else ep.address
                app = AppSpec(name=svc.name, host=host, port=ep.port_for(sp.name, default))
                return External(host=svc.name, port=sp.port, app=svc.name), [app]
    return None, []


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _ingress(mesh: MeshSnapshot, workloads: list[Workload]) -> Ingress | None:
    """The first HTTPS server of a gateway workload whose credential carries its CA."""
    for w in workloads:
        for gw in mesh.gateways_of(w.labels, w.namespace):
            for server in gw.servers:
                credential = mesh.credential(w.namespace, server.credential)
                hosts = [h.host for h in server.hosts if "*" not in h.host]
                if server.tls_mode == "SIMPLE" and credential and credential.ca_cert and hosts:
                    return Ingress(gateway=w.name, address=w.address, port=server.port,
                                   host=hosts[0], ca_pem=credential.ca_cert)
    return None


def _sidecar(mesh: MeshSnapshot, w: Workload, *, delta: bool) -> SidecarSpec:
    if not _loopback(w.address):
        raise PlanError(
            f"WorkloadEntry {w.namespace}/{w.name} has address {w.address!r}; the demo runs "
            "every workload on this machine, so it needs a 127.x.y.z address"
        )
    ports, _ = inbound_ports(mesh, w)
    gateways = mesh.gateways_of(w.labels, w.namespace)
    servers = [s.port for g in gateways for s in g.servers]
    return SidecarSpec(
        workload=w.name,
        namespace=w.namespace,
        address=w.address,
        delta=delta,
        inbound=tuple(dict.fromkeys([*(p.port for p in ports), *servers])),
        node_id=(names.istio_node_id(w.name, w.namespace, ip=w.address, node_type="router")
                 if gateways else f"{w.name}.{w.namespace}"),
    )


def _apps(mesh: MeshSnapshot, w: Workload) -> list[AppSpec]:
    ports, _ = inbound_ports(mesh, w)
    names = {s.name for s in mesh.services_selecting(w)}
    calls = tuple(
        _target(callee)
        for name in sorted(names)
        for callee_name in CALLS.get(name, ())
        if (callee := mesh.service(w.namespace, callee_name)) is not None and callee.ports
    )
    proxy = (w.address, OUTBOUND_PORT) if calls else None
    return [
        AppSpec(name=w.name, host=p.app.host, port=p.app.port, grpc=p.protocol is Protocol.GRPC,
                calls=() if p.protocol is Protocol.GRPC else calls,
                proxy=None if p.protocol is Protocol.GRPC else proxy)
        for p in ports
    ]


def _target(svc: Service) -> str:
    return f"{svc.name}.{svc.namespace}:{svc.ports[0].port}"


# -- the live change ---------------------------------------------------------------


def traffic_rules_change(config_dir: Path) -> Change | None:
    """Take away the first file that holds only traffic rules (VirtualService, DestinationRule)."""
    for path in sorted(config_dir.rglob("*.y*ml")):
        text = path.read_text()
        kinds = {d.get("kind") for d in _docs(text) if isinstance(d, dict)}
        if kinds and kinds <= TRAFFIC_KINDS:
            name = path.relative_to(config_dir)
            return Change(title=f"remove {name} (traffic rules)", undo_title=f"put {name} back",
                          path=path, original=text, changed=None)  # fmt: skip
    return None


def workload_change(mesh: MeshSnapshot) -> Change | None:
    """Remove the last WorkloadEntry of the first service that selects several."""
    for svc in mesh.services:
        selected = [
            w for w in mesh.workloads
            if w.kind is WorkloadKind.WORKLOAD_ENTRY and svc in mesh.services_selecting(w)
        ]  # fmt: skip
        if len(selected) < 2:
            continue
        victim = selected[-1]
        path = Path(victim.ref.file)
        original = path.read_text()
        kept = [d for d in _DOC_SPLIT.split(original) if not _is_entry(d, victim)]
        label = f"WorkloadEntry {victim.name}"
        return Change(title=f"remove {label}", undo_title=f"put {label} back", path=path,
                      original=original, changed="---".join(kept))  # fmt: skip
    return None


def _is_entry(text: str, w: Workload) -> bool:
    docs = _docs(text)
    if len(docs) != 1 or not isinstance(docs[0], dict):
        return False
    meta = docs[0].get("metadata") or {}
    return bool(
        docs[0].get("kind") == "WorkloadEntry"
        and meta.get("name") == w.name
        and meta.get("namespace", w.namespace) == w.namespace
    )


def _docs(text: str) -> list[object]:
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError:
        return []
