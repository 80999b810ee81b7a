"""Gateway proxies: a listener per server port, routes from the bound VirtualServices.

A workload selected by Istio Gateways (model/gateway.py) gets, instead of a
sidecar's listeners, one listener per server port on its own address
(``<address>_<port>``), an HTTP connection manager whose routes come over
RDS as ``http.<port>`` (Istio's name), at the edge (`use_remote_address`).
The outbound clusters are the mesh's, shared with the sidecars.

Each server admits, per VirtualService namespace, the host patterns of its
`hosts` whose namespace part allows it. A VirtualService bound to the
server's Gateway contributes, for each of its hosts matching an admitted
pattern, a virtual host named ``<host>:<port>`` answering to that host (the
more specific of the two, as Istio intersects them) with and without the
port; VirtualServices for the same host are merged in (namespace, name)
order, as Istio merges them at gateways. A server with
`tls.httpsRedirect` answers every request with a redirect to https. A
host no virtual host answers gets Envoy's 404.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from legation.model import (
    Diagnostic,
    Gateway,
    GatewayServer,
    MeshSnapshot,
    Protocol,
    Proxy,
    Severity,
    VirtualService,
    gateway_key,
)
from legation.model.hosts import intersect_hosts, specificity
from legation.model.telemetry import LogMode, LogSink, TracingSetup
from legation.model.traffic import RouteDestination, line_of
from legation.translators import names
from legation.translators.accesslog import access_logs, log_clusters
from legation.translators.authn import (
    TLS_INSPECTOR,
    TLS_TRANSPORT_SOCKET,
    RequestSecurity,
    request_security,
)
from legation.translators.common import ads_config_source, pack, socket_address
from legation.translators.httproute import filters_used, source_key, virtual_service_routes
from legation.translators.listeners import (
    HCM,
    HCM_FILTER,
    TCP_PROXY_FILTER,
    http_filters,
    network_filter,
)
from legation.translators.result import Translated
from legation.translators.secrets import credential_secrets, mesh_tls_context, sds
from legation.translators.tracing import cluster_name, collector_cluster, hcm_tracing


def gateway_resources(mesh: MeshSnapshot, proxy: Proxy) -> Translated:
    """The listeners, route configurations and credential secrets of a gateway proxy
    (`proxy.gateways`)."""
    out = Translated()
    by_port: dict[int, list[tuple[Gateway, GatewayServer]]] = {}
    for gw in proxy.gateways:
        for server in gw.servers:
            by_port.setdefault(server.port, []).append((gw, server))
    address = proxy.workload.address
    for port in sorted(by_port):
        servers = by_port[port]
        family = servers[0][1].protocol  # the converter keeps one family per port
        if family in (Protocol.HTTPS, Protocol.TLS):
            _https_port(mesh, proxy, port, servers, out)
            continue
        if family is Protocol.TCP:
            _tcp_port(mesh, proxy, port, servers, out)
            continue
        bound = [(gw, s, mesh.bound_to(gw)) for gw, s in servers]
        out.routes.append(_route_config(mesh, proxy, names.gateway_route(port), port, bound))
        filters = filters_used(vs for _, _, found in bound for vs in found)
        chain = listener_components_pb2.FilterChain(
            filters=[_hcm(address, port, names.gateway_route(port), filters,
                          _auth(mesh, proxy, port, out),
                          mesh.access_logs(proxy.workload, LogMode.SERVER),
                          *_trace(mesh, proxy, out))])
        out.listeners.append(_listener(address, port, [chain]))
    return out


def _https_port(mesh: MeshSnapshot, proxy: Proxy, port: int,
                servers: list[tuple[Gateway, GatewayServer]], out: Translated) -> None:
    """HTTPS and TLS servers: filter chains chosen by SNI. A terminating server's chain
    (its hosts; none for ``*``) decrypts with its credential, then routes HTTP as an HTTP
    server does (HTTPS) or proxies TCP by its `tcp` routes (TLS); a PASSTHROUGH server
    gets one chain per `tls` route match, its sniHosts, to that route's destination."""
    address = proxy.workload.address
    chains: list[listener_components_pb2.FilterChain] = []
    seen: dict[tuple[str, ...], GatewayServer] = {}
    for gw, server in servers:
        if server.tls_mode == "PASSTHROUGH":
            for sni, proxy_to in _passthrough(mesh, gw, server, port):
                if sni in seen:
                    continue  # an earlier server or rule has these names (Istio: first wins)
                seen[sni] = server
                chains.append(listener_components_pb2.FilterChain(
                    filter_chain_match=listener_components_pb2.FilterChainMatch(
                        server_names=list(sni)),
                    filters=[network_filter(TCP_PROXY_FILTER, proxy_to)]))
            continue
        secrets = _credentials(mesh, proxy, gw, server, out)
        if secrets is None:
            continue
        context = _downstream_tls(server)
        sni = tuple(sorted({h.host for h in server.hosts}))
        sni = () if "*" in sni else sni
        if sni in seen:
            out.diagnostics.append(_server_diag(
                gw, server, "hosts", "gateway.server-duplicate",
                f"another HTTPS server on port {port} (spec.servers[{seen[sni].index}]) "
                "answers the same SNI names; this one is not built (expected distinct "
                "hosts per HTTPS server of a port)."))
            continue
        seen[sni] = server
        services = mesh.bound_to(gw)
        if server.protocol is Protocol.TLS:  # terminated, then the tcp routes
            proxy_to = _tcp_proxy(mesh, gw, server, port, out)
            if proxy_to is None:
                continue
            filters = [network_filter(TCP_PROXY_FILTER, proxy_to)]
        else:
            route = names.gateway_tls_route(port, server.port_name or str(server.index),
                                            gw.name, gw.namespace)
            out.routes.append(_route_config(mesh, proxy, route, port, [(gw, server, services)]))
            filters = [_hcm(address, port, route, filters_used(services),
                            _auth(mesh, proxy, port, out),
                            mesh.access_logs(proxy.workload, LogMode.SERVER),
                            *_trace(mesh, proxy, out))]
        out.secrets.extend(secrets)
        chains.append(listener_components_pb2.FilterChain(
            filter_chain_match=listener_components_pb2.FilterChainMatch(server_names=list(sni)),
            transport_socket=base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET,
                                                      typed_config=pack(context)),
            filters=filters))
    if chains:
        inspector = listener_components_pb2.ListenerFilter(
            name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector()))
        out.listeners.append(_listener(address, port, chains, [inspector]))


def _tcp_port(mesh: MeshSnapshot, proxy: Proxy, port: int,
              servers: list[tuple[Gateway, GatewayServer]], out: Translated) -> None:
    """A TCP server: one TCP proxy, to the first `tcp` route of its VirtualServices."""
    for gw, server in servers:
        proxy_to = _tcp_proxy(mesh, gw, server, port, out)
        if proxy_to is not None:
            chain = listener_components_pb2.FilterChain(
                filters=[network_filter(TCP_PROXY_FILTER, proxy_to)])
            out.listeners.append(_listener(proxy.workload.address, port, [chain]))
            return


def _tcp_proxy(mesh: MeshSnapshot, gw: Gateway, server: GatewayServer, port: int,
               out: Translated) -> tcp_proxy_pb2.TcpProxy | None:
    """The first `tcp` route of a VirtualService bound to the server (hosts admitted, its
    match on this port and gateway, if any) as a TCP proxy; None (said) when there is none."""
    for vs in mesh.bound_to(gw):
        if not intersect_hosts(vs.hosts, server.admits(gw.namespace, vs.namespace)):
            continue
        for rule in vs.tcp:
            if not rule.match or any(_l4_applies(m.port, m.gateways, vs, gw, port)
                                     for m in rule.match):
                return _to(mesh, vs, rule.route, port)
    out.diagnostics.append(_server_diag(
        gw, server, "port", "gateway.tcp-route-missing",
        f"no VirtualService bound to this gateway has a tcp route for port {port} (expected "
        "one with gateways naming it and a matching host); no listener is built for it."))
    return None


def _passthrough(mesh: MeshSnapshot, gw: Gateway, server: GatewayServer, port: int
                 ) -> list[tuple[tuple[str, ...], tcp_proxy_pb2.TcpProxy]]:
    """(SNI names, TCP proxy) per `tls` route match of the bound VirtualServices: the
    match's sniHosts intersected with the server's hosts (Istio)."""
    out = []
    for vs in mesh.bound_to(gw):
        patterns = server.admits(gw.namespace, vs.namespace)
        for rule in vs.tls:
            for m in rule.match:
                if not _l4_applies(m.port, m.gateways, vs, gw, port):
                    continue
                sni = tuple(sorted(intersect_hosts(m.sni_hosts, patterns)))
                if sni:
                    out.append((() if "*" in sni else sni, _to(mesh, vs, rule.route, port)))
    return out


def _l4_applies(match_port: int, gateways: tuple[str, ...], vs: VirtualService, gw: Gateway,
                port: int) -> bool:
    return (not match_port or match_port == port) and (
        not gateways or any(gateway_key(g, vs.namespace) == gw.key for g in gateways))


def _to(mesh: MeshSnapshot, vs: VirtualService, route: tuple[RouteDestination, ...],
        port: int) -> tcp_proxy_pb2.TcpProxy:
    """A TCP proxy to the route's destination(s), weighted when several."""
    clusters = []
    for rd in route:
        fqdn = mesh.qualify_host(rd.destination.host, vs.namespace).fqdn
        svc = mesh.service_by_fqdn(fqdn)
        target = rd.destination.port or (
            svc.ports[0].port if svc is not None and len(svc.ports) == 1 else port)
        clusters.append((names.outbound_cluster(fqdn, target, rd.destination.subset),
                         rd.weight))
    stat = f"gateway_{vs.namespace}_{vs.name}_{port}"
    if len(clusters) == 1:
        return tcp_proxy_pb2.TcpProxy(stat_prefix=stat, cluster=clusters[0][0])
    weighted = tcp_proxy_pb2.TcpProxy.WeightedCluster(clusters=[
        tcp_proxy_pb2.TcpProxy.WeightedCluster.ClusterWeight(name=c, weight=w or 1)
        for c, w in clusters])
    return tcp_proxy_pb2.TcpProxy(stat_prefix=stat, weighted_clusters=weighted)


def _trace(mesh: MeshSnapshot, proxy: Proxy, out: Translated
           ) -> tuple[TracingSetup | None, str]:
    """The gateway's tracing (its Telemetry, server side) and span name; the collector's
    cluster joins its resources (once)."""
    w = proxy.workload
    setup = mesh.tracing_for(w.namespace, w.labels, LogMode.SERVER)
    if setup is not None and not any(c.name == cluster_name(setup.provider)
                                     for c in out.clusters):
        out.clusters.append(collector_cluster(setup.provider))
    have = {c.name for c in out.clusters}  # envoyOtelAls collectors of its access logs
    out.clusters.extend(c for c in log_clusters(mesh.access_logs(w, LogMode.SERVER))
                        if c.name not in have)
    return setup, f"{w.name}.{w.namespace}"


def _downstream_tls(server: GatewayServer) -> tls_pb2.DownstreamTlsContext:
    """SIMPLE and MUTUAL: the credential's certificate (and client CA); ISTIO_MUTUAL: the
    gateway's workload certificate, and a client certificate of the mesh required, as a
    sidecar's inbound mTLS (Istio's east-west and egress gateways)."""
    if server.tls_mode == "ISTIO_MUTUAL":
        context = tls_pb2.DownstreamTlsContext(common_tls_context=mesh_tls_context())
        context.common_tls_context.alpn_protocols.extend(["h2", "http/1.1"])
        context.require_client_certificate.value = True
        return context
    context = tls_pb2.DownstreamTlsContext(common_tls_context=tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds(names.credential_secret(server.credential))],
        alpn_protocols=["h2", "http/1.1"]))
    if server.tls_mode == "MUTUAL":
        context.require_client_certificate.value = True
        context.common_tls_context.validation_context_sds_secret_config.CopyFrom(
            sds(names.credential_ca_secret(server.credential)))
    return context


def _credentials(mesh: MeshSnapshot, proxy: Proxy, gw: Gateway, server: GatewayServer,
                 out: Translated) -> list[secret_pb2.Secret] | None:
    """The server's credential as SDS secrets; None (reported) when it cannot be served.
    Istio reads `credentialName` in the gateway workload's namespace. ISTIO_MUTUAL needs
    the control plane's CA (the workload secrets every proxy is sent), nothing else."""
    if server.tls_mode == "ISTIO_MUTUAL":
        if mesh.security.mtls:
            return []
        out.diagnostics.append(_server_diag(
            gw, server, "tls.mode", "gateway.mesh-ca-missing",
            "ISTIO_MUTUAL uses the mesh's certificates, and this control plane runs no CA "
            "(start it with --ca-dir); the server is not built."))
        return None
    namespace = proxy.workload.namespace
    found = mesh.credential(namespace, server.credential)
    if found is None or not found.cert_chain:
        out.diagnostics.append(_server_diag(
            gw, server, "tls.credentialName", "gateway.credential-not-found",
            f"no Secret {namespace}/{server.credential} with a certificate and key (expected "
            "a kubernetes.io/tls Secret in the gateway workload's namespace); the server is "
            "not built until it exists."))
        return None
    ca_from = None
    if server.tls_mode == "MUTUAL":
        ca_from = found if found.ca_cert else mesh.credential(
            namespace, f"{server.credential}-cacert")
        if ca_from is None or not ca_from.ca_cert:
            out.diagnostics.append(_server_diag(
                gw, server, "tls.mode", "gateway.client-ca-not-found",
                f"MUTUAL needs the client CA: ca.crt in Secret {namespace}/"
                f"{server.credential} or a Secret {server.credential}-cacert; the server is "
                "not built until one exists."))
            return None
    return credential_secrets(found, ca_from=ca_from)


def _server_diag(gw: Gateway, server: GatewayServer, field: str, code: str,
                 message: str) -> Diagnostic:
    path = f"{gw.servers_field}[{server.index}].{field}"
    return Diagnostic(ref=gw.ref, field=path, code=code, message=message,
                      severity=Severity.WARNING, line=line_of(gw.lines, path, gw.ref.line))


def _auth(mesh: MeshSnapshot, proxy: Proxy, port: int, out: Translated) -> RequestSecurity:
    """RequestAuthentication and AuthorizationPolicy selecting the gateway's workload, as
    on a sidecar's inbound port (Istio applies both to gateways)."""
    auth = request_security(mesh, proxy.workload, port, tcp=False)
    have = {c.name for c in out.clusters}
    out.clusters.extend(c for c in auth.clusters if c.name not in have)
    out.diagnostics.extend(d for d in auth.diagnostics if d not in out.diagnostics)
    return auth


def _hcm(address: str, port: int, route: str, filters: frozenset[str],
         auth: RequestSecurity, logs: tuple[LogSink, ...] = (),
         trace: TracingSetup | None = None, service: str = "") -> listener_components_pb2.Filter:
    hcm = HCM(
        tracing=hcm_tracing(trace, service) if trace is not None else None,
        access_log=access_logs(logs),
        stat_prefix=f"gateway_{address}_{port}",
        codec_type=HCM.AUTO,
        rds=http_connection_manager_pb2.Rds(config_source=ads_config_source(),
                                            route_config_name=route),
        # The gateway is the edge: it appends the peer to X-Forwarded-For and trusts
        # nothing before it (Istio sets this on gateways).
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        http_filters=[*auth.http_filters, *http_filters(filters)],
    )
    if auth.local_reply is not None:
        hcm.local_reply_config.CopyFrom(auth.local_reply)
    return network_filter(HCM_FILTER, hcm)


def _listener(address: str, port: int, chains: list[listener_components_pb2.FilterChain],
              listener_filters: list[listener_components_pb2.ListenerFilter] | None = None,
              ) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=names.listener_name(address, port),
        address=socket_address(address, port),
        traffic_direction=base_pb2.INBOUND,
        listener_filters=listener_filters or [],
        filter_chains=chains,
    )


def _route_config(
    mesh: MeshSnapshot, proxy: Proxy, name: str, port: int,
    bound: list[tuple[Gateway, GatewayServer, tuple[VirtualService, ...]]],
) -> route_pb2.RouteConfiguration:
    """`sourceLabels` and `sourceNamespace` are the gateway workload's own (Istio)."""
    config = route_pb2.RouteConfiguration(
        name=name, validate_clusters=wrappers_pb2.BoolValue(value=False))
    source = source_key(mesh, proxy, (vs for _, _, services in bound for vs in services))
    hosts: dict[str, route_components_pb2.VirtualHost] = {}
    for gw, server, services in bound:
        for vs in services:
            patterns = server.admits(gw.namespace, vs.namespace)
            for host in intersect_hosts(vs.hosts, patterns):
                vh = hosts.get(host)
                if vh is None:
                    vh = hosts[host] = route_components_pb2.VirtualHost(
                        name=names.virtual_host_name(host, port), domains=_domains(host, port))
                    if server.https_redirect:
                        vh.require_tls = route_components_pb2.VirtualHost.ALL
                routes, _ = virtual_service_routes(mesh, vs, port=port,
                                                   namespace=proxy.namespace, source=source,
                                                   gateway=gw.key)
                vh.routes.extend(routes)
    config.virtual_hosts.extend(hosts[h] for h in sorted(hosts, key=specificity))
    return config


def _domains(host: str, port: int) -> list[str]:
    return [host] if host == "*" else [host, f"{host}:{port}"]
