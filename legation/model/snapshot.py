"""MeshSnapshot: an immutable picture of the whole mesh, with its indexes.

Built by the MeshStore from the current objects of every source. Collections
are tuples sorted by (namespace, name) so that translators iterate in a
deterministic order. Indexes are computed once per snapshot.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from legation.model.destination import DestinationRule
from legation.model.diagnostics import Diagnostic
from legation.model.envoyfilter import EnvoyFilter
from legation.model.gateway import Gateway, TlsCredential, gateway_key
from legation.model.gatewayapi import ObjectStatus
from legation.model.hosts import MergeNote, Qualified, qualify, select_rule
from legation.model.mesh import (
    DEFAULT_DOMAIN,
    Endpoint,
    EndpointSlice,
    HealthStatus,
    Labels,
    Locality,
    MeshObject,
    Namespace,
    Node,
    PolicyObject,
    Service,
    ServiceEntry,
    ServicePort,
    Workload,
    WorkloadKind,
    selector_matches,
)
from legation.model.meshconfig import MeshConfig
from legation.model.security import (
    AuthorizationPolicy,
    MeshSecurity,
    PeerAuthentication,
    RequestAuthentication,
)
from legation.model.sidecar import EgressHost, Scope, Sidecar, sidecar_for
from legation.model.telemetry import (
    DEFAULT_SAMPLING,
    LogEncoding,
    LogMode,
    LogProvider,
    LogSink,
    Telemetry,
    TracingSetup,
    applicable,
    applicable_tracing,
)
from legation.model.traffic import VirtualService

# Istio's built-in access log provider: stdout, the default text line
ENVOY_PROVIDER = LogProvider(name="envoy", path="/dev/stdout")
# accessLogEncoding JSON: the fields of Istio's default JSON line (Envoy commands)
DEFAULT_JSON_LABELS: tuple[tuple[str, str], ...] = tuple(sorted({
    "start_time": "%START_TIME%", "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", "protocol": "%PROTOCOL%",
    "response_code": "%RESPONSE_CODE%", "response_flags": "%RESPONSE_FLAGS%",
    "bytes_received": "%BYTES_RECEIVED%", "bytes_sent": "%BYTES_SENT%",
    "duration": "%DURATION%", "authority": "%REQ(:AUTHORITY)%",
    "request_id": "%REQ(X-REQUEST-ID)%", "upstream_host": "%UPSTREAM_HOST%",
    "upstream_cluster": "%UPSTREAM_CLUSTER_RAW%", "route_name": "%ROUTE_NAME%",
    "downstream_remote_address": "%DOWNSTREAM_REMOTE_ADDRESS%",
}.items()))
_TLS_MODE_LABEL = "security.istio.io/tlsMode"  # Istio: the workload runs a sidecar


@dataclass(slots=True)
class _RuleIndex:
    """DestinationRules by qualified host: exact FQDNs in a dict, wildcards in a list."""

    exact: dict[str, list[tuple[str, DestinationRule]]] = field(default_factory=dict)
    wildcard: list[tuple[str, DestinationRule]] = field(default_factory=list)


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
    ] = ()  # other Istio kinds kept as plain data, by (kind, ns, name)
    virtual_services: tuple[VirtualService, ...] = ()  # in force (validated), by (ns, name)
    destination_rules: tuple[DestinationRule, ...] = ()  # in force (validated), by (ns, name)
    peer_authentications: tuple[PeerAuthentication, ...] = ()  # by (ns, name)
    authorization_policies: tuple[AuthorizationPolicy, ...] = ()  # by (ns, name)
    request_authentications: tuple[RequestAuthentication, ...] = ()  # by (ns, name)
    sidecars: tuple[Sidecar, ...] = ()  # by (ns, name)
    envoy_filters: tuple[EnvoyFilter, ...] = ()  # by (ns, name)
    telemetries: tuple[Telemetry, ...] = ()  # by (ns, name)
    gateways: tuple[Gateway, ...] = ()  # by (ns, name)
    credentials: tuple[TlsCredential, ...] = ()  # TLS Secrets, by (ns, name)
    security: MeshSecurity = field(default_factory=MeshSecurity)  # CA, trust domain
    config: MeshConfig = field(default_factory=MeshConfig)  # MeshConfig in force
    # Gateway API objects' status conditions (mesh/gatewayapi.py)
    gateway_status: tuple[ObjectStatus, ...] = ()
    diagnostics: tuple[Diagnostic, ...] = ()

    _services: dict[tuple[str, str], Service] = field(init=False, repr=False, compare=False)
    _workloads: dict[tuple[str, str, str], Workload] = field(init=False, repr=False, compare=False)
    _slices: dict[tuple[str, str], tuple[EndpointSlice, ...]] = field(
        init=False, repr=False, compare=False
    )
    _nodes: dict[str, Node] = field(init=False, repr=False, compare=False)
    _by_fqdn: dict[str, Service] = field(init=False, repr=False, compare=False)
    _rules: dict[str, tuple[DestinationRule | None, list[MergeNote]]] = field(
        init=False, repr=False, compare=False
    )
    # rules without a workload selector by the FQDN of their host; wildcard hosts apart
    _qualified: _RuleIndex | None = field(init=False, repr=False, compare=False)
    _ns_services: dict[str, tuple[Service, ...]] = field(init=False, repr=False, compare=False)
    # endpoints() by what it reads: (namespace, service name, selector, port)
    _endpoints: dict[tuple[str, str, Labels, ServicePort], tuple[Endpoint, ...]] = field(
        init=False, repr=False, compare=False
    )
    _vs_for: dict[str, tuple[VirtualService, ...]] = field(init=False, repr=False, compare=False)
    # (namespace, label key, value) -> workloads with that label, in mesh order
    _label_index: dict[tuple[str, str, str], tuple[Workload, ...]] | None = field(
        init=False, repr=False, compare=False
    )

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
        by_fqdn: dict[str, Service] = {}
        for svc in self.services:
            by_fqdn.setdefault(svc.fqdn(self.domain), svc)
        object.__setattr__(self, "_by_fqdn", by_fqdn)
        object.__setattr__(self, "_rules", {})
        object.__setattr__(self, "_qualified", None)
        ns_services: dict[str, list[Service]] = defaultdict(list)
        for svc in self.services:
            ns_services[svc.namespace].append(svc)
        object.__setattr__(self, "_ns_services", {k: tuple(v) for k, v in ns_services.items()})
        object.__setattr__(self, "_endpoints", {})
        object.__setattr__(self, "_label_index", None)
        object.__setattr__(self, "_vs_for", {})

    # -- derived snapshots -------------------------------------------------

    def with_traffic(
        self,
        virtual_services: tuple[VirtualService, ...],
        destination_rules: tuple[DestinationRule, ...],
    ) -> MeshSnapshot:
        """This snapshot with other traffic rules in force; the indexes that do not read
        them (services, workloads, endpoints) are shared, not rebuilt."""
        if (virtual_services, destination_rules) == (self.virtual_services,
                                                     self.destination_rules):
            return self
        return self._derive(virtual_services=virtual_services,
                            destination_rules=destination_rules)

    def with_diagnostics(self, diagnostics: tuple[Diagnostic, ...]) -> MeshSnapshot:
        return self._derive(diagnostics=diagnostics)

    def with_gateway_api(self, gateways: tuple[Gateway, ...],
                         virtual_services: tuple[VirtualService, ...],
                         status: tuple[ObjectStatus, ...],
                         diagnostics: tuple[Diagnostic, ...]) -> MeshSnapshot:
        """This snapshot with what the Gateway API objects resolved to (mesh/gatewayapi.py)
        added: Istio Gateways and VirtualServices, each kind kept in (namespace, name)
        order, their status and findings."""
        if not (gateways or virtual_services or status or diagnostics):
            return self
        return self._derive(
            gateways=tuple(sorted((*self.gateways, *gateways),
                                  key=lambda g: (g.namespace, g.name))),
            virtual_services=tuple(sorted((*self.virtual_services, *virtual_services),
                                          key=lambda v: (v.namespace, v.name))),
            gateway_status=status, diagnostics=(*self.diagnostics, *diagnostics))

    def _derive(self, **changes: object) -> MeshSnapshot:
        new = object.__new__(MeshSnapshot)
        for name in _SLOTS:
            object.__setattr__(new, name, changes.get(name, getattr(self, name)))
        if "virtual_services" in changes or "destination_rules" in changes:
            object.__setattr__(new, "_rules", {})
            object.__setattr__(new, "_qualified", None)
            object.__setattr__(new, "_vs_for", {})
        return new

    def carry_endpoints(
        self, prior: MeshSnapshot, changed: Iterable[tuple[MeshObject | None, MeshObject | None]]
    ) -> None:
        """Reuse `prior`'s endpoint lists for the services that none of the `changed`
        (old, new) objects can affect: a workload touches the services selecting it
        (before or after), a slice its service, a Pod every sliced service of its
        namespace (slices name their Pods), a Node everything. Call before any read."""
        if prior.nodes != self.nodes or prior.domain != self.domain:
            return
        stale: set[tuple[str, str]] = set()
        for pair in changed:
            for obj in pair:
                if obj is None:
                    continue
                if isinstance(obj, Node):
                    return
                if isinstance(obj, Workload):
                    for mesh in (prior, self):
                        stale.update((s.namespace, s.name) for s in mesh.services_selecting(obj))
                    if obj.kind is WorkloadKind.POD:
                        stale.update(k for mesh in (prior, self) for k in mesh._slices
                                     if k[0] == obj.namespace)
                elif isinstance(obj, EndpointSlice):
                    stale.add((obj.namespace, obj.service_name))
                elif isinstance(obj, ServiceEntry):
                    stale.update((obj.namespace, host) for host in obj.hosts)
        object.__setattr__(self, "_endpoints", {
            k: v for k, v in prior._endpoints.items() if (k[0], k[1]) not in stale
        })

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

    # -- traffic policy ------------------------------------------------------

    def service_by_fqdn(self, fqdn: str) -> Service | None:
        return self._by_fqdn.get(fqdn)

    def qualify_host(self, host: str, namespace: str) -> Qualified:
        """The FQDN a host written in a rule of `namespace` means (model/hosts.py)."""
        return qualify(host, namespace, self.domain, lambda ns, n: (ns, n) in self._services)

    def destination_rule_for(self, fqdn: str) -> DestinationRule | None:
        """The effective (merged) DestinationRule for a service host, if any."""
        return self.destination_rule_notes(fqdn)[0]

    def destination_rule_notes(self, fqdn: str) -> tuple[DestinationRule | None, list[MergeNote]]:
        """`destination_rule_for` plus what merging rules for the host ignored."""
        found = self._rules.get(fqdn)
        if found is None:
            svc = self._by_fqdn.get(fqdn)
            index = self._qualified_rules()
            # select_rule keeps only the rules whose host covers `fqdn`: exactly these.
            candidates = [*index.exact.get(fqdn, ()), *index.wildcard]
            found = select_rule(fqdn, svc.namespace if svc else "", self.root_namespace,
                                candidates)
            self._rules[fqdn] = found
        return found

    def _qualified_rules(self) -> _RuleIndex:
        """Every rule without a workload selector, with the FQDN of its host; once."""
        if self._qualified is None:
            index = _RuleIndex()
            for r in self.destination_rules:
                if r.workload_selector:
                    continue
                host = self.qualify_host(r.host, r.namespace).fqdn
                if host.startswith("*"):
                    index.wildcard.append((host, r))
                else:
                    index.exact.setdefault(host, []).append((host, r))
            object.__setattr__(self, "_qualified", index)
        assert self._qualified is not None
        return self._qualified

    def virtual_services_for(self, namespace: str) -> tuple[VirtualService, ...]:
        """VirtualServices that sidecars in `namespace` apply (exportTo, gateways)."""
        found = self._vs_for.get(namespace)
        if found is None:
            found = self._vs_for[namespace] = tuple(
                vs for vs in self.virtual_services
                if vs.applies_to_sidecars and vs.visible_in(namespace)
            )
        return found

    def gateways_of(self, labels: Labels, namespace: str = "") -> tuple[Gateway, ...]:
        """The Gateways whose selector picks a workload with `labels` in `namespace` (an
        Istio Gateway picks workloads of any namespace; a Gateway API one, its own)."""
        return tuple(g for g in self.gateways if g.selects(labels, namespace))

    def credential(self, namespace: str, name: str) -> TlsCredential | None:
        return next((c for c in self.credentials
                     if c.namespace == namespace and c.name == name), None)

    def bound_to(self, gateway: Gateway) -> tuple[VirtualService, ...]:
        """VirtualServices in force that name `gateway` in `gateways`, by (ns, name)."""
        return tuple(vs for vs in self.virtual_services
                     if any(gateway_key(g, vs.namespace) == gateway.key for g in vs.gateways))

    def scope_of(self, workload: Workload) -> Scope | None:
        """What a workload's proxy may see (model/sidecar.py): its Sidecar's egress hosts
        and the services exported to its namespace; None when that is everything."""
        sidecar = sidecar_for(self.sidecars, namespace=workload.namespace,
                              labels=workload.labels, root_namespace=self.root_namespace)
        if sidecar is not None:
            return Scope(workload.namespace, sidecar.hosts, sidecar.outbound)
        if any(s.export_to and "*" not in s.export_to for s in self.services):
            return Scope(workload.namespace, (EgressHost(namespace="*", host="*"),))
        return None

    def visible(self, scope: Scope, svc: Service) -> bool:
        return svc.visible_in(scope.namespace) and scope.sees(
            svc.namespace, svc.name, svc.fqdn(self.domain))

    def access_logs(self, workload: Workload, mode: LogMode) -> tuple[LogSink, ...]:
        """Where `workload`'s proxy logs requests in one direction (model/telemetry.py)."""
        return self.access_logs_for(workload.namespace, workload.labels, mode)

    def access_logs_for(self, namespace: str, labels: Labels, mode: LogMode
                        ) -> tuple[LogSink, ...]:
        """`access_logs` for a workload of `namespace` with `labels` (() : what every
        workload of the namespace shares: selector-scoped Telemetries left out)."""
        entry = applicable(self.telemetries, namespace=namespace, labels=labels,
                           root_namespace=self.root_namespace, mode=mode)
        cfg = self.config
        if entry is not None and entry.disabled:
            return ()
        names = (entry.providers if entry is not None else ()) or cfg.default_log_providers
        sinks = []
        if entry is None and cfg.access_log_file:
            json = cfg.access_log_encoding is LogEncoding.JSON
            sinks.append(LogSink(provider=LogProvider(
                name="accessLogFile", path=cfg.access_log_file,
                text_format="" if json else cfg.access_log_format,
                json_labels=DEFAULT_JSON_LABELS if json else ())))
        filter_ = entry.filter if entry is not None else ""
        for name in names:
            provider = ENVOY_PROVIDER if name == ENVOY_PROVIDER.name else next(
                (p for p in cfg.log_providers if p.name == name), None)
            if provider is not None:
                sinks.append(LogSink(provider=provider, filter=filter_))
        return tuple(dict.fromkeys(sinks))

    def tracing_for(self, namespace: str, labels: Labels, mode: LogMode
                    ) -> TracingSetup | None:
        """How a workload's proxy traces one direction (model/telemetry.py); None: not.
        `labels` () : what every workload of the namespace shares."""
        entry = applicable_tracing(self.telemetries, namespace=namespace, labels=labels,
                                   root_namespace=self.root_namespace, mode=mode)
        if entry is not None and entry.disable_span_reporting:
            return None
        names = (entry.providers if entry is not None else ()) or (
            self.config.default_tracing_providers)
        provider = next((p for n in names for p in self.config.tracing_providers
                         if p.name == n), None)
        if provider is None:
            return None
        sampling = entry.sampling if entry is not None and entry.sampling is not None else (
            DEFAULT_SAMPLING)
        return TracingSetup(provider=provider, sampling=sampling,
                            custom_tags=entry.custom_tags if entry is not None else ())

    def services_selecting(self, workload: Workload) -> tuple[Service, ...]:
        """Services of the workload's namespace whose selector matches its labels."""
        return tuple(
            s
            for s in self._ns_services.get(workload.namespace, ())
            if selector_matches(s.selector, workload.labels)
        )

    # -- endpoints -------------------------------------------------------

    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Every endpoint of one service port, sorted by (address, port).

        EndpointSlices labelled with the service are authoritative for Pods
        (as in Kubernetes); WorkloadEntries selected by the service's selector
        are added (as Istio does); Pods are selected directly only when the
        service has no EndpointSlice at all (the file source has none).
        Computed once per snapshot and (service, port).
        """
        key = (service.namespace, service.name, service.selector, port)
        known = self._endpoints.get(key)
        if known is None:
            known = self._endpoints[key] = self._find_endpoints(service, port)
        return known

    def _find_endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        found: dict[tuple[str, int], Endpoint] = {}
        if service.entry is not None:
            return self._entry_endpoints(service, port, found)
        slices = self._slices.get((service.namespace, service.name), ())
        for es in slices:
            self._slice_endpoints(es, port, found)
        for w in self._selectable(service.namespace, service.selector):
            if not selector_matches(service.selector, w.labels):
                continue
            if w.kind is WorkloadKind.POD and slices:
                continue
            target = w.endpoint_port(port)
            if target is None or w.health is HealthStatus.UNHEALTHY:
                continue
            found.setdefault((w.address, target), self._endpoint(w, w.address, target, w.health))
        return tuple(found[k] for k in sorted(found))

    def _entry_endpoints(self, service: Service, port: ServicePort,
                         found: dict[tuple[str, int], Endpoint]) -> tuple[Endpoint, ...]:
        """A ServiceEntry host's endpoints: its `endpoints` (a port from their `ports` by
        the service port's name, else the target port), or the workloads its
        workloadSelector picks. Outside the mesh (MESH_EXTERNAL) nothing is dialled with
        the mesh's mTLS, whatever the labels say (Istio)."""
        entry = service.entry
        assert entry is not None
        default = port.target_port if isinstance(port.target_port, int) else port.port
        internal = not entry.external
        for ep in entry.endpoints:
            target = ep.port_for(port.name, default)
            region, zone, subzone = ep.locality
            found.setdefault((ep.address, target), Endpoint(
                address=ep.address, port=target, health=HealthStatus.HEALTHY,
                locality=Locality(region=region, zone=zone, subzone=subzone),
                labels=ep.labels, service_account=ep.service_account, workload="",
                weight=ep.weight,
                has_sidecar=internal and dict(ep.labels).get(_TLS_MODE_LABEL) == "istio"))
        for w in self._selectable(service.namespace, service.selector):
            at = w.endpoint_port(port)
            if (not selector_matches(service.selector, w.labels) or at is None
                    or w.health is HealthStatus.UNHEALTHY):
                continue
            e = self._endpoint(w, w.address, at, w.health)
            if not internal and e.has_sidecar:
                e = replace(e, has_sidecar=False)
            found.setdefault((w.address, at), e)
        return tuple(found[k] for k in sorted(found))

    def _selectable(self, namespace: str, selector: Labels) -> tuple[Workload, ...]:
        """Workloads of `namespace` that may match `selector` (a superset, in mesh order):
        those carrying its rarest pair, from a label index built once per snapshot."""
        if not selector:
            return ()
        index = self._label_index
        if index is None:
            built: dict[tuple[str, str, str], list[Workload]] = defaultdict(list)
            for w in self.workloads:
                for k, v in w.labels:
                    built[(w.namespace, k, v)].append(w)
            index = {key: tuple(ws) for key, ws in built.items()}
            object.__setattr__(self, "_label_index", index)
        return min((index.get((namespace, k, v), ()) for k, v in selector), key=len)

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
            has_sidecar=dict(w.labels).get(_TLS_MODE_LABEL) == "istio",
        )

    def _locality(self, node_name: str, zone: str) -> Locality:
        node = self._nodes.get(node_name)
        if node is None:
            return Locality(zone=zone)
        if zone and not node.locality.zone:
            return Locality(region=node.locality.region, zone=zone)
        return node.locality


_SLOTS: tuple[str, ...] = MeshSnapshot.__slots__  # every field, public and index
