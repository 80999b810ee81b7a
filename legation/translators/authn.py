"""PeerAuthentication -> how an inbound listener accepts connections (its filter chains).

The effective mode of a workload port (`legation.model.security.
peer_authentication_for`) shapes its listener, as Istio's inbound listener:

- STRICT: one filter chain for ``transport_protocol: tls`` that requires a
  client certificate chaining to ``ROOTCA`` (mutual TLS); a plaintext client
  matches no chain and is disconnected.
- PERMISSIVE (the default): the TLS inspector tells TLS from plaintext; the
  TLS chain is the STRICT one, the ``raw_buffer`` chain takes plaintext.
- DISABLE: one plaintext chain, no inspector.

Without a CA (no `--ca-dir`) there are no certificates, so every port is
DISABLE. Where mutual TLS is possible the HTTP connection manager also
replaces `x-forwarded-client-cert` with the verified peer's URI SAN and
certificate hash (SANITIZE_SET), so the app sees the caller's SPIFFE ID and
a plaintext caller cannot forge one. `inbound_security` also collects the
port's RBAC filters (rbac.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import wrappers_pb2

from legation.model import (
    Diagnostic,
    MeshSnapshot,
    MtlsMode,
    PeerAuthentication,
    Severity,
    Workload,
    selector_matches,
)
from legation.model.ratelimit import GLOBAL_ANNOTATION
from legation.model.security import jwt_issuers, peer_authentication_for
from legation.translators import jwt, ratelimit
from legation.translators.common import pack
from legation.translators.inbound import InboundPort
from legation.translators.rbac import rbac_filters
from legation.translators.secrets import mesh_tls_context

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
MTLS_CHAIN = "inbound-mtls"
PLAINTEXT_CHAIN = "inbound-plaintext"


@dataclass(frozen=True, slots=True, kw_only=True)
class InboundSecurity:
    """How one inbound port is secured: its mTLS mode and its authorization filters."""

    mode: MtlsMode = MtlsMode.DISABLE  # effective; DISABLE without a CA
    client_cert_header: bool = False  # set x-forwarded-client-cert (mTLS possible)
    # RBAC filters: HTTP ones before the router, network ones before the TCP proxy
    http_filters: tuple[http_connection_manager_pb2.HttpFilter, ...] = ()
    network_filters: tuple[listener_components_pb2.Filter, ...] = ()
    clusters: tuple[cluster_pb2.Cluster, ...] = ()  # JWKS servers, external authorizer
    # the HCM's local replies: a rejected JWT is a 401 (jwt.py); None: Envoy's own
    local_reply: http_connection_manager_pb2.LocalReplyConfig | None = None
    diagnostics: tuple[Diagnostic, ...] = ()


def inbound_security(
    mesh: MeshSnapshot, workload: Workload, inbound: InboundPort
) -> InboundSecurity:
    decision = peer_authentication_for(
        mesh.peer_authentications,
        root_namespace=mesh.root_namespace,
        namespace=workload.namespace,
        labels=workload.labels,
        port=inbound.port,
    )
    diagnostics = [_shadowed(p, decision.applied) for p in decision.shadowed]
    diagnostics += [
        _root_selector(p, mesh.root_namespace)
        for p in mesh.peer_authentications
        if p.namespace == mesh.root_namespace and selector_matches(p.selector, workload.labels)
    ]
    auth = request_security(mesh, workload, inbound.port, tcp=not inbound.protocol.is_http)
    diagnostics.extend(auth.diagnostics)
    mtls = mesh.security.mtls
    return InboundSecurity(
        mode=decision.mode if mtls else MtlsMode.DISABLE,
        client_cert_header=mtls,
        http_filters=auth.http_filters,
        network_filters=auth.network_filters,
        clusters=auth.clusters,
        local_reply=auth.local_reply,
        diagnostics=tuple(diagnostics),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestSecurity:
    """End-user authentication and authorization of one port of a workload (a sidecar's
    inbound port or a gateway's): its filters, the clusters they call, the local replies
    they need (jwt.py) and what was reported."""

    http_filters: tuple[http_connection_manager_pb2.HttpFilter, ...] = ()
    network_filters: tuple[listener_components_pb2.Filter, ...] = ()
    clusters: tuple[cluster_pb2.Cluster, ...] = ()
    local_reply: http_connection_manager_pb2.LocalReplyConfig | None = None
    diagnostics: tuple[Diagnostic, ...] = ()


def request_security(mesh: MeshSnapshot, workload: Workload, port: int, *, tcp: bool
                     ) -> RequestSecurity:
    """RequestAuthentication (HTTP only) then AuthorizationPolicy, in Istio's order."""
    jwt_policies = () if tcp else jwt.policies_for(mesh, workload)
    jwt_filter = jwt.jwt_filter(jwt_policies, mesh.security.jwks_refresh_s)
    issuers = jwt_issuers(jwt_policies)
    rbac = rbac_filters(mesh, workload, port, tcp=tcp, issuers=issuers)
    first, last, clusters, found = _rate_limits(mesh, workload, tcp=tcp)
    return RequestSecurity(
        http_filters=(*first, *([jwt_filter] if jwt_filter is not None else []), *rbac.http,
                      *last),
        network_filters=tuple(rbac.network),
        clusters=(*jwt.jwks_clusters(jwt_policies), *rbac.clusters, *clusters),
        local_reply=jwt.local_reply(issuers) if jwt_filter is not None else None,
        diagnostics=(*rbac.diagnostics, *found),
    )


def _rate_limits(mesh: MeshSnapshot, workload: Workload, *, tcp: bool) -> tuple[
        list[http_connection_manager_pb2.HttpFilter], list[http_connection_manager_pb2.HttpFilter],
        list[cluster_pb2.Cluster], list[Diagnostic]]:
    """The workload's rate limits (translators/ratelimit.py): the local bucket first, the
    global check after authorization (HTTP only)."""
    if tcp:
        return [], [], [], []
    first = ([ratelimit.local_filter(workload.local_rate_limit)]
             if workload.local_rate_limit is not None else [])
    shared = workload.global_rate_limit
    if shared is None:
        return first, [], [], []
    provider = mesh.config.rate_limit_provider(shared.provider)
    if provider is None:
        known = ", ".join(p.name for p in mesh.config.rate_limit_providers) or "none"
        return first, [], [], [Diagnostic(
            ref=workload.ref, field=f"metadata.annotations[{GLOBAL_ANNOTATION}]",
            code="ratelimit.provider-unknown", severity=Severity.ERROR,
            message=(f"no MeshConfig extensionProviders entry named {shared.provider!r} "
                     f"with envoyRateLimit (known: {known}): the global rate limit of "
                     f"{workload.namespace}/{workload.name} is not applied."))]
    return (first, [ratelimit.global_filter(shared, provider)], [ratelimit.cluster(provider)],
            [])


def filter_chains(
    mode: MtlsMode, filters: Sequence[listener_components_pb2.Filter]
) -> tuple[list[listener_components_pb2.ListenerFilter], list[listener_components_pb2.FilterChain]]:
    """(listener filters, filter chains) of an inbound listener in `mode` (module docstring)."""
    FilterChain = listener_components_pb2.FilterChain
    Match = listener_components_pb2.FilterChainMatch
    if mode in (MtlsMode.DISABLE, MtlsMode.UNSET):
        return [], [FilterChain(filters=filters)]
    chains = [
        FilterChain(
            name=MTLS_CHAIN,
            filter_chain_match=Match(transport_protocol="tls"),
            transport_socket=downstream_mtls_socket(),
            filters=filters,
        )
    ]
    if mode is MtlsMode.PERMISSIVE:
        chains.append(
            FilterChain(
                name=PLAINTEXT_CHAIN,
                filter_chain_match=Match(transport_protocol="raw_buffer"),
                filters=filters,
            )
        )
    inspector = listener_components_pb2.ListenerFilter(
        name=TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
    )
    return [inspector], chains


def downstream_mtls_socket() -> base_pb2.TransportSocket:
    """Present ``default``; require a client certificate that chains to ``ROOTCA``.

    ALPN ``h2`` / ``http/1.1`` is offered for clients that ask: gRPC's own TLS (proxyless
    clients, gRFC A29) refuses a handshake that selects none ("missing selected ALPN
    property"). Sidecars offer no ALPN (secrets.py), so nothing changes for them."""
    common = mesh_tls_context()
    common.alpn_protocols.extend(["h2", "http/1.1"])
    context = tls_pb2.DownstreamTlsContext(
        common_tls_context=common,
        require_client_certificate=wrappers_pb2.BoolValue(value=True),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def _shadowed(policy: PeerAuthentication, applied: Sequence[PeerAuthentication]) -> Diagnostic:
    winner = next(
        (
            p
            for p in applied
            if bool(p.selector) == bool(policy.selector) and p.namespace == policy.namespace
        ),
        None,
    )
    other = f"{winner.namespace}/{winner.name}" if winner is not None else "another policy"
    scope = "workload" if policy.selector else "namespace"
    return Diagnostic(
        ref=policy.ref,
        field="spec.selector" if policy.selector else "",
        code="peerauthentication.conflict",
        message=(
            f"{other} already sets the {scope}-level mTLS mode for the same workloads and "
            "is used instead (the first by namespace/name wins here; Istio takes the "
            "oldest). Expected one such policy per scope."
        ),
        severity=Severity.WARNING,
        line=policy.line_of("spec.selector") if policy.selector else policy.ref.line,
    )


def _root_selector(policy: PeerAuthentication, root_namespace: str) -> Diagnostic:
    return Diagnostic(
        ref=policy.ref,
        field="spec.selector",
        code="peerauthentication.root-selector-ignored",
        message=(
            f"a policy with a selector in the root namespace {root_namespace} is ignored, as "
            "in Istio: the root namespace holds the mesh-wide policy (no selector). Put "
            "workload policies in the workloads' own namespace."
        ),
        severity=Severity.WARNING,
        line=policy.line_of("spec.selector"),
    )
