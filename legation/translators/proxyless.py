"""Proxyless gRPC clients: what gRPC's own xDS client asks for, in forms it accepts.

A node whose id has the type ``proxyless`` (``proxyless~<ip>~<name>.<ns>~<ns>.svc.
<domain>``, what `legation bootstrap --grpc` writes) is a gRPC channel, not an Envoy
(Istio marks the same with node metadata ``GENERATOR: grpc``). gRPC resolves
``xds:///<host>:<port>`` by asking LDS for a Listener named exactly that (gRFC A27),
so for every HTTP service port the namespace sees, each ``host:port`` form Istio
accepts (``svc.ns.svc.cluster.local:p``, ``svc.ns.svc:p``, ``svc.ns:p``, and ``svc:p`` in
the client's own namespace) is a Listener with an `api_listener` (an HTTP connection
manager with RDS) and a RouteConfiguration of the same name holding that service's
virtual host, the one sidecars get (VirtualService splits, header matches, retries,
timeouts, faults). Per gRFC A39 only the fault filter and the router are used; per-route
configs of other filters are left out.

Clusters: gRPC's balancers (gRFC A42/A48) take ROUND_ROBIN and RING_HASH, not
LEAST_REQUEST, Istio's default here: the client's copies of the clusters its routes
use say ROUND_ROBIN (other settings kept), and their ClusterLoadAssignments carry a
locality (empty when unknown) and a weight per locality group (the sum of its
endpoints' weights), which gRPC's weighted-target balancer requires.

mTLS (gRFC A29, `XdsCredentials`): gRPC reads no SDS. It takes its certificate, key
and roots from a certificate provider its bootstrap names (`file_watcher` instance
``default``, the files `legation grpc-agent` keeps current: agent/certfiles.py), so mesh TLS
contexts name that provider instance instead of SDS secrets. As Istio's gRPC
generator does, a proxyless client uses mTLS only where a DestinationRule says
ISTIO_MUTUAL: automatic mTLS (`transport_socket_matches`) is not something gRPC reads,
and a client without `XdsCredentials` ignores TLS settings altogether. Other TLS
origination (SIMPLE / MUTUAL with files) has no form gRPC accepts: such a cluster is
not sent to gRPC clients at all (calls to it fail, never go out in plaintext), with a
warning. A proxyless server requires client certificates on a port in STRICT mode,
and in PERMISSIVE mode when it is labelled ``security.istio.io/tlsMode: istio``
(clients then dial it with mTLS; gRPC servers cannot tell TLS from plaintext on one
port, gRFC A36), as Istio does; otherwise it serves plaintext.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import wrappers_pb2

from legation.model import Diagnostic, MeshSnapshot, MtlsMode, Severity, SourceRef, Workload
from legation.model.security import peer_authentication_for
from legation.translators import names, routes, subsets
from legation.translators.authn import request_security
from legation.translators.common import pack, socket_address
from legation.translators.inbound import inbound_ports
from legation.translators.result import Translated
from legation.translators.upstream_tls import TLS_TRANSPORT_SOCKET

FAULT = "envoy.filters.http.fault"
ROUTER = "envoy.filters.http.router"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
HCM = http_connection_manager_pb2.HttpConnectionManager
# the certificate provider instance `legation bootstrap --grpc --cert-dir` declares
CERT_PROVIDER = "default"


def proxyless_resources(mesh: MeshSnapshot, namespace: str) -> Translated:
    """Listeners, route configurations and clusters for gRPC clients of `namespace`."""
    config, diagnostics = routes.http_proxy_route(mesh, namespace)
    out = Translated(diagnostics=diagnostics)
    used: set[str] = set()
    dropped: set[tuple[str, str]] = set()  # (virtual host, filter) left out for gRPC
    for vhost in config.virtual_hosts:
        targets = [d for d in vhost.domains if ":" in d and not d.startswith("*")]
        if not targets:
            continue  # the catch-all of unknown hosts: sidecars only
        kept = route_components_pb2.VirtualHost()
        kept.CopyFrom(vhost)
        kept.domains[:] = ["*"]
        faults = False
        for route in kept.routes:
            for name in list(route.typed_per_filter_config):
                if name != FAULT:
                    del route.typed_per_filter_config[name]  # gRPC knows no other filter
                    dropped.add((vhost.name, name))
            faults = faults or FAULT in route.typed_per_filter_config
            if route.route.HasField("timeout"):  # gRPC reads the stream duration (A31)
                route.route.max_stream_duration.max_stream_duration.CopyFrom(
                    route.route.timeout)
            used.update(_clusters(route))
        for target in targets:
            rc = route_pb2.RouteConfiguration(name=target)
            rc.virtual_hosts.add().CopyFrom(kept)
            out.routes.append(rc)
            out.listeners.append(_api_listener(target, faults=faults))
    for host, name in sorted(dropped):
        out.diagnostics.append(Diagnostic(
            ref=SourceRef(kind="Namespace", namespace="", name=namespace), field="",
            code="proxyless.filter-not-served", severity=Severity.INFO,
            message=(f"routes of {host} use {name}, which gRPC clients do not implement: "
                     f"proxyless clients of namespace {namespace} get those routes without "
                     "it (sidecars keep it).")))
    mesh_wide = subsets.outbound_clusters(mesh)
    for cluster in mesh_wide.clusters:
        if cluster.name in used:
            copy, why = _for_grpc(cluster)
            if copy is None:
                out.diagnostics.append(_not_served(namespace, cluster.name, why))
            else:
                out.clusters.append(copy)
    sent = {c.name for c in out.clusters}
    out.endpoints.extend(_weighted(a) for a in mesh_wide.endpoints if a.cluster_name in sent)
    return out


def _weighted(cla: endpoint_pb2.ClusterLoadAssignment) -> endpoint_pb2.ClusterLoadAssignment:
    copy = endpoint_pb2.ClusterLoadAssignment()
    copy.CopyFrom(cla)
    for group in copy.endpoints:
        group.locality.SetInParent()
        if not group.HasField("load_balancing_weight"):
            group.load_balancing_weight.value = sum(
                e.load_balancing_weight.value or 1 for e in group.lb_endpoints) or 1
    return copy


SERVER_LISTENER = "xds.istio.io/grpc/lds/inbound/{}"  # Istio's template (bootstrap --grpc)
RBAC = "envoy.filters.http.rbac"


def server_resources(mesh: MeshSnapshot, workload: Workload) -> Translated:
    """xDS-enabled gRPC servers (gRFC A36): for each inbound port of the workload, the
    Listener its server asks for (`server_listener_resource_name_template` with
    ``<ip>:<port>``, and the ``0.0.0.0`` / ``[::]`` forms a server bound to every address
    uses): one filter chain whose HTTP connection manager routes every request to the
    server itself (`non_forwarding_action`) through the port's RBAC filters
    (AuthorizationPolicy, gRFC A41). Filters gRPC servers lack (JWT, external
    authorization) are left out and reported."""
    out = Translated()
    ports, found = inbound_ports(mesh, workload)
    out.diagnostics.extend(found)
    meshed = dict(workload.labels).get("security.istio.io/tlsMode") == "istio"
    for p in ports:
        if not p.protocol.is_http:
            continue
        mode = peer_authentication_for(
            mesh.peer_authentications, root_namespace=mesh.root_namespace,
            namespace=workload.namespace, labels=workload.labels, port=p.port).mode
        mtls = mesh.security.mtls and (
            mode is MtlsMode.STRICT or (mode is MtlsMode.PERMISSIVE and meshed))
        auth = request_security(mesh, workload, p.port, tcp=False)
        out.diagnostics.extend(auth.diagnostics)
        filters = [f for f in auth.http_filters if f.name == RBAC]
        if len(filters) != len(auth.http_filters):
            out.diagnostics.append(_left_out(workload, p.port))
        filters.append(http_connection_manager_pb2.HttpFilter(
            name=ROUTER, typed_config=pack(router_pb2.Router())))
        route = route_pb2.RouteConfiguration(name=f"inbound|{p.port}")
        vhost = route.virtual_hosts.add(name=f"inbound|{p.port}", domains=["*"])
        vhost.routes.add(match=route_components_pb2.RouteMatch(prefix="/"),
                         non_forwarding_action=route_components_pb2.NonForwardingAction())
        hcm = HCM(stat_prefix=f"inbound_{p.port}", route_config=route, http_filters=filters)
        chain = listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
            name=HCM_FILTER, typed_config=pack(hcm))])
        if mtls:
            chain.transport_socket.name = TLS_TRANSPORT_SOCKET
            chain.transport_socket.typed_config.CopyFrom(pack(tls_pb2.DownstreamTlsContext(
                common_tls_context=grpc_tls_context(),
                require_client_certificate=wrappers_pb2.BoolValue(value=True))))
        for host in dict.fromkeys((workload.address, "0.0.0.0", "[::]")):
            bare = host.strip("[]")
            out.listeners.append(listener_pb2.Listener(
                name=SERVER_LISTENER.format(f"{host}:{p.port}"),
                address=socket_address(bare, p.port),
                filter_chains=[chain]))
    return out


def _left_out(workload: Workload, port: int) -> Diagnostic:
    return Diagnostic(
        ref=workload.ref, field="", code="proxyless.filter-not-served",
        message=(f"port {port} of {workload.namespace}/{workload.name}, a proxyless gRPC "
                 "server, has JWT authentication, external authorization or a rate limit, "
                 "which gRPC servers do not implement: they are left out "
                 "(AuthorizationPolicy rules on peers, headers and paths are served)."),
        severity=Severity.WARNING)


def _api_listener(name: str, *, faults: bool) -> listener_pb2.Listener:
    filters = [http_connection_manager_pb2.HttpFilter(name=FAULT, typed_config=pack(
        fault_pb2.HTTPFault()))] if faults else []
    filters.append(http_connection_manager_pb2.HttpFilter(
        name=ROUTER, typed_config=pack(router_pb2.Router())))
    hcm = HCM(
        stat_prefix=name,
        rds=http_connection_manager_pb2.Rds(
            config_source=config_source_pb2.ConfigSource(
                ads=config_source_pb2.AggregatedConfigSource(),
                resource_api_version=config_source_pb2.V3),
            route_config_name=name),
        http_filters=filters)
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pack(hcm)))


def _clusters(route: route_components_pb2.Route) -> set[str]:
    action = route.route
    if action.cluster:
        return {action.cluster}
    return {c.name for c in action.weighted_clusters.clusters}


_TLS_FROM_FILES = (
    "proxyless.tls-not-served",
    "originates TLS from certificate files (DestinationRule tls SIMPLE or MUTUAL), which "
    "gRPC's xDS client cannot read (it takes certificates from its bootstrap's certificate "
    "providers only)", "Expected ISTIO_MUTUAL or DISABLE for hosts that proxyless clients call.")
_DNS_HOSTS = (
    "proxyless.cluster-not-served",
    "resolves several DNS names itself (STRICT_DNS), which gRPC does not implement (it "
    "resolves one name, LOGICAL_DNS)", "Expected one endpoint, or resolution STATIC.")
_ORIGINAL_DST = (
    "proxyless.cluster-not-served",
    "forwards to the address the caller dialled (resolution NONE), which gRPC does not "
    "implement", "Expected resolution STATIC or DNS for hosts that proxyless clients call.")
_SERVED = ("", "", "")


def _for_grpc(cluster: cluster_pb2.Cluster
              ) -> tuple[cluster_pb2.Cluster | None, tuple[str, str, str]]:
    """The cluster as gRPC takes it, or None and why not: its TLS or discovery has no form
    gRPC reads (never sent in plaintext instead: calls routed to it fail rather than leave
    unencrypted). gRPC implements EDS, LOGICAL_DNS and aggregate clusters (gRFC A37)."""
    copy = cluster_pb2.Cluster()
    copy.CopyFrom(cluster)
    if copy.lb_policy not in (cluster_pb2.Cluster.ROUND_ROBIN, cluster_pb2.Cluster.RING_HASH):
        copy.lb_policy = cluster_pb2.Cluster.ROUND_ROBIN
        copy.ClearField("least_request_lb_config")
    copy.ClearField("transport_socket_matches")  # automatic mTLS: sidecars only
    if copy.WhichOneof("cluster_discovery_type") == "type":
        if copy.type == cluster_pb2.Cluster.STRICT_DNS:
            groups = copy.load_assignment.endpoints
            if len(groups) != 1 or len(groups[0].lb_endpoints) != 1:
                return None, _DNS_HOSTS
            copy.type = cluster_pb2.Cluster.LOGICAL_DNS  # one name: the same thing
        elif copy.type == cluster_pb2.Cluster.ORIGINAL_DST:
            return None, _ORIGINAL_DST
    if not copy.HasField("transport_socket"):
        return copy, _SERVED
    context = tls_pb2.UpstreamTlsContext()
    copy.transport_socket.typed_config.Unpack(context)
    copy.ClearField("transport_socket")
    common = context.common_tls_context
    if [s.name for s in common.tls_certificate_sds_secret_configs] != [names.WORKLOAD_SECRET]:
        return None, _TLS_FROM_FILES
    sans = tuple(m.matcher.exact for m in
                 common.combined_validation_context.default_validation_context
                 .match_typed_subject_alt_names if m.matcher.exact)
    copy.transport_socket.name = TLS_TRANSPORT_SOCKET
    copy.transport_socket.typed_config.CopyFrom(pack(tls_pb2.UpstreamTlsContext(
        common_tls_context=grpc_tls_context(peer_sans=sans))))
    return copy, _SERVED


def grpc_tls_context(*, peer_sans: tuple[str, ...] = ()) -> tls_pb2.CommonTlsContext:
    """The mesh's mTLS as gRPC reads it (gRFC A29): certificate and roots from the
    bootstrap's certificate provider instance, the peer's URI SAN one of `peer_sans`
    (A29 reads `match_subject_alt_names`, not the typed form)."""
    instance = common_pb2.CertificateProviderPluginInstance
    validation = common_pb2.CertificateValidationContext(
        ca_certificate_provider_instance=instance(
            instance_name=CERT_PROVIDER, certificate_name=names.ROOT_SECRET),
        match_subject_alt_names=[string_pb2.StringMatcher(exact=s) for s in peer_sans])
    return tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=instance(
            instance_name=CERT_PROVIDER, certificate_name=names.WORKLOAD_SECRET),
        validation_context=validation)


def _not_served(namespace: str, cluster: str, why: tuple[str, str, str]) -> Diagnostic:
    code, what, expected = why
    return Diagnostic(
        ref=SourceRef(kind="Namespace", namespace="", name=namespace), field="",
        code=code, severity=Severity.WARNING,
        message=(f"cluster {cluster} {what}: proxyless clients of namespace {namespace} are "
                 "not given the cluster, so their calls routed to it fail (UNAVAILABLE) "
                 f"rather than go out unencrypted or elsewhere. {expected}"))
