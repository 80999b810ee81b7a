"""LDS and CDS for transparent mode (DESIGN.md §4): Istio's iptables layout.

The pod's iptables rules (Istio's istio-iptables) redirect every outbound TCP
connection to ``15001`` and every inbound one to ``15006``, except the
sidecar's own traffic (uid/gid 1337) and connections from ``127.0.0.6``. The
listeners bind the wildcard address (IPv4 only so far), so the workload's
address is not needed, and the outbound side depends on nothing but the
client's namespace: `namespace_resources` (``virtualOutbound``, the per-port
routes, ``PassthroughCluster``, ``BlackHoleCluster``) is shared like
``http_proxy``; `proxy_resources` is the rest (``virtualInbound``, inbound
clusters, ``InboundPassthroughCluster``).

- ``virtualOutbound`` on ``0.0.0.0:15001`` with ``use_original_dst``: its
  filter chains are selected by the destination the app dialled. Per HTTP-ish
  port of the mesh one chain ``0.0.0.0_<port>`` matching that port and the
  cluster IPs of the HTTP services on it, an HTTP connection manager with the
  RouteConfiguration ``<port>`` over RDS (routes.py `port_routes`, built per
  namespace like ``http_proxy``). The chain matches the port alone (every
  destination) when a service on it has no cluster IP, or, for port 80, when
  a VirtualService routes a host that names no service: such requests have no
  address to match. Per TCP service port a chain ``<clusterIP>_<port>``
  proxying to ``outbound|<port>||<fqdn>``; a TCP service without a cluster IP
  is matched by its port alone, if nothing else claims that. Connections to
  15001 itself go to ``BlackHoleCluster`` (``virtualOutbound-blackhole``, a
  redirect loop otherwise); everything else to ``PassthroughCluster``, the
  original destination (the default filter chain: Envoy prunes chains by port
  first, so a connection to an unknown IP on a mesh port matches no chain and
  needs the default; Istio's outboundTrafficPolicy ALLOW_ANY).
- ``virtualInbound`` on ``0.0.0.0:15006`` with the original_dst listener
  filter: per inbound port (inbound.py) the chains of its PeerAuthentication
  mode (authn.py), each also matching ``destination_port``, with the same
  filters (RBAC, HTTP connection manager or TCP proxy) as an explicit-mode
  inbound listener (listeners.py `inbound_filters`); connections to other
  ports go to ``InboundPassthroughCluster`` through chains secured by the
  workload's port-less mTLS mode and its TCP RBAC, as Istio's passthrough
  chains; connections to 15006 itself to ``BlackHoleCluster``.

Inbound clusters ``inbound|<port>||`` forward to the original destination
(the pod's own ``<podIP>:<targetPort>``) from ``127.0.0.6``, which the
iptables rules let through: Istio's behaviour since 1.10
(https://istio.io/latest/blog/2021/upcoming-networking-changes/; istio/istio
pilot/pkg/networking/core/cluster_builder.go, buildInboundCluster and
buildInboundPassthroughCluster), so an app bound only to localhost is not
exposed and one bound only to the pod IP is reached. A target port mapped by
``sidecar.legation.io/app-ports`` goes to that address instead.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.listener.original_dst.v3 import original_dst_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import wrappers_pb2

from legation.model import (
    AppAddress,
    Diagnostic,
    MeshSnapshot,
    Protocol,
    Proxy,
    Service,
    ServicePort,
    Severity,
    VirtualService,
    Workload,
)
from legation.model.telemetry import LogMode, LogSink, TracingSetup
from legation.translators import clusters, names, routes
from legation.translators.accesslog import access_logs, log_clusters
from legation.translators.authn import TLS_INSPECTOR, filter_chains, inbound_security
from legation.translators.common import ads_config_source, pack, service_vip, socket_address
from legation.translators.httproute import SourceKey, needed_filters
from legation.translators.inbound import InboundPort, inbound_ports
from legation.translators.listeners import (
    HCM,
    HCM_FILTER,
    TCP_PROXY_FILTER,
    http_filters,
    inbound_filters,
    network_filter,
)
from legation.translators.result import Translated
from legation.translators.tracing import collector_cluster, hcm_tracing

ORIGINAL_DST_FILTER = "envoy.filters.listener.original_dst"
WILDCARD = "0.0.0.0"  # IPv4 only, so far

Chain = listener_components_pb2.FilterChain
Match = listener_components_pb2.FilterChainMatch


def namespace_resources(
    mesh: MeshSnapshot, namespace: str, source: SourceKey = frozenset()
) -> Translated:
    """What every transparent proxy of `namespace` (with route key `source`) shares: the
    per-port RouteConfigurations, ``virtualOutbound``, ``PassthroughCluster`` and
    ``BlackHoleCluster``. Reads only what `translate.route_view` keeps of the mesh."""
    configs, diagnostics = routes.port_routes(mesh, namespace, source)
    listener, found = virtual_outbound(mesh, namespace)
    diagnostics += found
    diagnostics += [_tcp_not_applied(vs) for vs in mesh.virtual_services_for(namespace) if vs.tcp]
    diagnostics += [routes.tls_not_applied(vs) for vs in mesh.virtual_services_for(namespace)
                    if vs.tls]
    trace = mesh.tracing_for(namespace, (), LogMode.CLIENT)
    return Translated(
        routes=configs,
        listeners=[listener],
        clusters=[clusters.passthrough_cluster(), clusters.blackhole_cluster(),
                  *([collector_cluster(trace.provider)] if trace is not None else []),
                  *log_clusters(mesh.access_logs_for(namespace, (), LogMode.CLIENT))],
        diagnostics=diagnostics,
    )


def proxy_resources(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """One transparent proxy's own resources: ``virtualInbound``, its ``inbound|<port>||``
    clusters and ``InboundPassthroughCluster``."""
    workload = proxy.workload
    found, diagnostics = inbound_ports(mesh, workload)
    ports = []
    for p in found:
        if p.port == names.INBOUND_CAPTURE_PORT:
            diagnostics.append(_capture_port(workload))
        else:
            ports.append(p)
    if _is_ipv6(workload.address):
        diagnostics.append(_ipv6(workload))
    listener, found_in, security = virtual_inbound(mesh, workload, ports)
    return Translated(
        listeners=[listener],
        clusters=[*(clusters.transparent_inbound_cluster(p) for p in ports),
                  clusters.inbound_passthrough_cluster(), *_collector(mesh, workload),
                  *security],
        diagnostics=[*diagnostics, *found_in],
    )


def _collector(mesh: MeshSnapshot, workload: Workload) -> list[Any]:
    """The tracing collector's cluster, when the workload's inbound side traces, and its
    inbound access logs' OpenTelemetry collectors."""
    trace = mesh.tracing_for(workload.namespace, workload.labels, LogMode.SERVER)
    return [*([collector_cluster(trace.provider)] if trace is not None else []),
            *log_clusters(mesh.access_logs(workload, LogMode.SERVER))]


def _is_ipv6(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 6
    except ValueError:
        return False


# -- virtualOutbound -----------------------------------------------------------------


def virtual_outbound(
    mesh: MeshSnapshot, namespace: str
) -> tuple[listener_pb2.Listener, list[Diagnostic]]:
    """The outbound capture listener of a transparent proxy in `namespace`."""
    claimed: dict[tuple[int, str], str] = {}  # (port, cluster IP or "") -> its chain
    diagnostics: list[Diagnostic] = []
    chains = [_tcp_chain(names.OUTBOUND_BLACKHOLE_CHAIN, _match(names.OUTBOUND_PROXY_PORT),
                         names.BLACKHOLE_CLUSTER)]
    claimed[(names.OUTBOUND_PROXY_PORT, "")] = names.OUTBOUND_BLACKHOLE_CHAIN
    http, tcp = _outbound_ports(mesh)
    wildcard_ports = {port for port, svcs in http.items() if any(not v for _, _, v in svcs)}
    if routes.external_hosts(mesh, namespace):
        wildcard_ports.add(routes.HTTP_DEFAULT_PORT)
        http.setdefault(routes.HTTP_DEFAULT_PORT, [])
    filters = needed_filters(mesh, namespace)
    # shared by the namespace: its and the mesh's Telemetry (a selector-scoped one is
    # applied to a transparent proxy's inbound side only)
    logs = mesh.access_logs_for(namespace, (), LogMode.CLIENT)
    trace = mesh.tracing_for(namespace, (), LogMode.CLIENT)
    for port in sorted(http):
        name = names.outbound_chain(WILDCARD, port)
        wildcard = port in wildcard_ports
        vips = [""] if wildcard else sorted({v for _, _, v in http[port]})
        taken = {v for v in vips if (port, v) in claimed}  # by the blackhole, at most
        for svc, sp, vip in http[port]:
            key = "" if wildcard else vip
            if key in taken:
                diagnostics.append(_match_conflict(svc, sp, vip, claimed[(port, key)]))
        mine = [v for v in vips if v not in taken]
        if not mine:
            continue
        claimed.update(((port, v), name) for v in mine)
        chains.append(Chain(name=name, filter_chain_match=_match(port, mine),
                            filters=[_outbound_hcm(port, filters, logs, trace, namespace)]))
    for svc, sp in tcp:
        vip = service_vip(svc)
        name = names.outbound_chain(vip or WILDCARD, sp.port)
        owner = claimed.get((sp.port, vip)) or next(
            (n for n in claimed.values() if n == name), None)
        if owner is not None:  # Envoy rejects two chains with one match (or one name)
            diagnostics.append(_match_conflict(svc, sp, vip, owner))
            continue
        claimed[(sp.port, vip)] = name
        cluster = names.outbound_cluster(svc.fqdn(mesh.domain), sp.port)
        if svc.entry is not None and svc.entry.resolution.forwarded:
            # Raw TCP names no host for a forward proxy: to where the app dialled (Istio's
            # original-destination cluster for resolution NONE)
            cluster = names.PASSTHROUGH_CLUSTER
        chains.append(_tcp_chain(name, _match(sp.port, [vip]), cluster))
    listener = listener_pb2.Listener(
        name=names.VIRTUAL_OUTBOUND,
        address=socket_address(WILDCARD, names.OUTBOUND_PROXY_PORT),
        traffic_direction=base_pb2.OUTBOUND,
        use_original_dst=wrappers_pb2.BoolValue(value=True),
        filter_chains=chains,
        default_filter_chain=_tcp_chain(  # outboundTrafficPolicy: outbound.py
            names.OUTBOUND_CATCHALL_CHAIN, None,
            names.PASSTHROUGH_CLUSTER if mesh.config.allow_any else names.BLACKHOLE_CLUSTER),
    )
    return listener, diagnostics


def _outbound_ports(
    mesh: MeshSnapshot,
) -> tuple[dict[int, list[tuple[Service, ServicePort, str]]], list[tuple[Service, ServicePort]]]:
    """HTTP-ish port -> its (service, port, cluster IP or ""); TCP (service, port)s."""
    http: dict[int, list[tuple[Service, ServicePort, str]]] = {}
    tcp: list[tuple[Service, ServicePort]] = []
    ports, _ = clusters.outbound_cluster_ports(mesh)  # duplicates: reported by translate_mesh
    for svc, sp in ports:
        if sp.protocol.is_http:
            http.setdefault(sp.port, []).append((svc, sp, service_vip(svc)))
        else:
            tcp.append((svc, sp))
    return http, tcp


def _match(port: int, vips: Sequence[str] = ()) -> listener_components_pb2.FilterChainMatch:
    """Destination `port`, and one of `vips` (as /32 or /128) unless that is empty or [""]."""
    match = Match(destination_port=wrappers_pb2.UInt32Value(value=port))
    for vip in vips:
        if vip:
            length = 32 if ipaddress.ip_address(vip).version == 4 else 128
            match.prefix_ranges.add(address_prefix=vip,
                                    prefix_len=wrappers_pb2.UInt32Value(value=length))
    return match


def _outbound_hcm(port: int, filters: frozenset[str], logs: tuple[LogSink, ...] = (),
                  trace: TracingSetup | None = None, service: str = ""
                  ) -> listener_components_pb2.Filter:
    hcm = HCM(
        tracing=hcm_tracing(trace, service) if trace is not None else None,
        access_log=access_logs(logs),
        stat_prefix=names.outbound_stat_prefix(WILDCARD, port),
        codec_type=HCM.AUTO,
        rds=http_connection_manager_pb2.Rds(
            config_source=ads_config_source(), route_config_name=names.port_route(port)
        ),
        http_filters=http_filters(filters),
    )
    return network_filter(HCM_FILTER, hcm)


def _tcp_chain(
    name: str, match: listener_components_pb2.FilterChainMatch | None, cluster: str
) -> listener_components_pb2.FilterChain:
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster)
    chain = Chain(name=name, filters=[network_filter(TCP_PROXY_FILTER, proxy)])
    if match is not None:
        chain.filter_chain_match.CopyFrom(match)
    return chain


# -- virtualInbound ------------------------------------------------------------------


def virtual_inbound(
    mesh: MeshSnapshot, workload: Workload, ports: list[InboundPort]
) -> tuple[listener_pb2.Listener, list[Diagnostic], list[cluster_pb2.Cluster]]:
    """The inbound capture listener of a transparent `workload` serving `ports`, and the
    clusters its security filters call (JWKS servers, external authorizer)."""
    diagnostics: list[Diagnostic] = []
    security_clusters: dict[str, cluster_pb2.Cluster] = {}
    chains = [_tcp_chain(names.INBOUND_BLACKHOLE_CHAIN, _match(names.INBOUND_CAPTURE_PORT),
                         names.BLACKHOLE_CLUSTER)]
    inspected = False
    plaintext_only: list[int] = []  # ports where the TLS inspector has nothing to decide
    for p in ports:
        inspector, port_chains, found, called = _port_chains(mesh, workload, p)
        diagnostics.extend(found)
        security_clusters.update((c.name, c) for c in called)
        inspected = inspected or inspector
        if not inspector:
            plaintext_only.append(p.port)
        chains.extend(port_chains)
    inspector, passthrough, found, called = _passthrough_chains(mesh, workload)
    diagnostics.extend(found)
    security_clusters.update((c.name, c) for c in called)
    chains.extend(passthrough)
    listener_filters = [listener_components_pb2.ListenerFilter(
        name=ORIGINAL_DST_FILTER, typed_config=pack(original_dst_pb2.OriginalDst()))]
    if inspected or inspector:
        listener_filters.append(_tls_inspector(plaintext_only))
    listener = listener_pb2.Listener(
        name=names.VIRTUAL_INBOUND,
        address=socket_address(WILDCARD, names.INBOUND_CAPTURE_PORT),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=listener_filters,
        filter_chains=chains,
    )
    return listener, diagnostics, list(security_clusters.values())


_Chains = tuple[bool, list[listener_components_pb2.FilterChain], tuple[Diagnostic, ...],
                tuple[cluster_pb2.Cluster, ...]]


def _port_chains(mesh: MeshSnapshot, workload: Workload, p: InboundPort) -> _Chains:
    """(whether they need the TLS inspector, chains, findings) of one inbound port: the
    explicit-mode listener's chains, each also matching the port."""
    security = inbound_security(mesh, workload, p)  # PeerAuthentication, RBAC
    filters = inbound_filters(p, security, names.inbound_stat_prefix(WILDCARD, p.port),
                              mesh.access_logs(workload, LogMode.SERVER),
                              mesh.tracing_for(workload.namespace, workload.labels,
                                               LogMode.SERVER),
                              f"{workload.name}.{workload.namespace}")
    inspector, chains = filter_chains(security.mode, filters)
    for chain in chains:
        chain.name = names.inbound_chain(chain.name or "inbound", p.port)
        chain.filter_chain_match.destination_port.value = p.port
    return bool(inspector), chains, security.diagnostics, security.clusters


def _passthrough_chains(mesh: MeshSnapshot, workload: Workload) -> _Chains:
    """(whether they need the TLS inspector, chains, findings) for ports no service
    declares: the workload's port-less mTLS mode (port 0 asks for no port-level setting)
    and its TCP RBAC, to the original destination."""
    anyport = InboundPort(port=0, protocol=Protocol.TCP, app=AppAddress(port=1))
    security = inbound_security(mesh, workload, anyport)
    cluster = names.INBOUND_PASSTHROUGH_CLUSTER
    proxy = tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster)
    filters = [*security.network_filters, network_filter(TCP_PROXY_FILTER, proxy)]
    inspector, chains = filter_chains(security.mode, filters)
    for chain in chains:
        chain.name = names.inbound_catchall_chain(chain.name.removeprefix("inbound-")
                                                  if chain.name else "")
    return bool(inspector), chains, security.diagnostics, security.clusters


def _tls_inspector(plaintext_only: list[int]) -> listener_components_pb2.ListenerFilter:
    """The TLS inspector, skipped on ports that only take plaintext: it would wait for
    the client's first bytes, which a server-first protocol never sends."""
    inspector = listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector()))
    rules = [
        listener_components_pb2.ListenerFilterChainMatchPredicate(
            destination_port_range=range_pb2.Int32Range(start=port, end=port + 1))
        for port in plaintext_only
    ]
    if len(rules) == 1:
        inspector.filter_disabled.CopyFrom(rules[0])
    elif rules:
        inspector.filter_disabled.or_match.rules.extend(rules)
    return inspector


# -- diagnostics ---------------------------------------------------------------------


def _match_conflict(svc: Service, sp: ServicePort, vip: str, owner: str) -> Diagnostic:
    target = f"cluster IP {vip}" if vip else "no cluster IP (so it is matched by port alone)"
    kind = "HTTP" if sp.protocol.is_http else "TCP"
    return Diagnostic(
        ref=svc.ref,
        field="spec.clusterIP",
        code="service.outbound-match-conflict",
        message=(
            f"{kind} port {sp.port} with {target} is already matched by outbound filter chain "
            f"{owner!r} of transparent sidecars, so their connections to it do not reach "
            "this service (expected a cluster IP of its own)"
        ),
        severity=Severity.WARNING,
    )


def _capture_port(w: Workload) -> Diagnostic:
    return Diagnostic(
        ref=w.ref,
        field="",
        code="workload.inbound-port-reserved",
        message=(
            f"a service targets port {names.INBOUND_CAPTURE_PORT} of {w.kind} "
            f"{w.namespace}/{w.name}, where its transparent sidecar receives redirected "
            "inbound traffic; no inbound filter chain is built for it (expected any other port)"
        ),
    )



def _tcp_not_applied(vs: VirtualService) -> Diagnostic:
    # TODO: apply tcp[] routes to the TCP chains of virtualOutbound (weighted clusters);
    # until then transparent sidecars send TCP to each service's default cluster.
    return Diagnostic(
        ref=vs.ref, field="spec.tcp", code="virtualservice.tcp-not-applied",
        message="tcp routes are checked but not applied yet for transparent sidecars: their "
        "TCP connections to a service go to its default cluster (outbound|<port>||<host>).",
        severity=Severity.INFO, line=vs.line_of("spec.tcp"),
    )


def _ipv6(w: Workload) -> Diagnostic:
    return Diagnostic(
        ref=w.ref,
        field="status.podIP" if w.kind.value == "Pod" else "spec.address",
        code="workload.transparent-ipv6-unsupported",
        message=(
            f"address {w.address} is IPv6, but transparent sidecars listen on IPv4 "
            f"({WILDCARD}) only so far; its IPv6 traffic is not intercepted (expected an "
            'IPv4 pod, or sidecar.istio.io/interceptionMode: "NONE")'
        ),
        severity=Severity.WARNING,
    )
