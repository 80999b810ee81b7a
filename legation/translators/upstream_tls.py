"""The transport socket of an outbound cluster: DestinationRule `tls` -> UpstreamTlsContext.

THE SEAM for mutual TLS inside the mesh: `upstream_transport_socket` is
called for every outbound cluster (default and subset) with the effective
`ClientTls` of its DestinationRule (None when the rule sets none). Here:

- DISABLE or no settings: no transport socket (plaintext), and
- SIMPLE / MUTUAL: TLS origination with the files the rule names, as Istio
  (istio/api destination_rule.proto, ClientTLSSettings): the server is
  verified against `caCertificates`, or the OS trust store when omitted
  ("If omitted, the proxy will verify the server's certificate using the
  OS CA certificates"), unless `insecureSkipVerify`; `subjectAltNames`
  restrict the accepted server names; MUTUAL presents the client
  certificate and key.
- ISTIO_MUTUAL: the mesh's own mTLS (Istio's `ISTIO_MUTUAL`): present the
  proxy's ``default`` SDS secret, verify the server against ``ROOTCA`` and
  its URI SAN against the SPIFFE IDs of the destination's service accounts
  (`cluster_tls_context` collects them from the endpoints). Plaintext when
  the control plane runs no CA (there is no certificate to present).

Automatic mTLS (Istio's default, `enableAutoMtls`): a cluster whose rule sets
no `tls` gets `transport_socket_matches` instead of one socket: endpoints
labelled ``tlsMode: istio`` in their ``envoy.transport_socket_match``
metadata (`with_tls_mode`: the workload runs a sidecar and its
PeerAuthentication does not DISABLE mTLS on that port) are dialled with
mTLS, every other endpoint in plaintext, so workloads without a sidecar keep
working. A rule's `tls` always wins: ISTIO_MUTUAL forces mTLS for every
endpoint, DISABLE turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2
from envoy.extensions.transport_sockets.raw_buffer.v3 import raw_buffer_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import struct_pb2

from legation.model import Endpoint, MeshSnapshot, MtlsMode, Service, ServicePort
from legation.model.destination import ClientTls, TlsMode
from legation.model.security import peer_authentication_for
from legation.translators import names
from legation.translators.common import pack
from legation.translators.secrets import mesh_tls_context

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
RAW_BUFFER_TRANSPORT_SOCKET = "envoy.transport_sockets.raw_buffer"
# Istio's endpoint label and Envoy's metadata namespace for transport socket matches.
TLS_MODE_KEY = "tlsMode"
TLS_MODE_ISTIO = "istio"
TRANSPORT_SOCKET_MATCH = "envoy.transport_socket_match"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterTlsContext:
    """Which cluster a transport socket is for (for ISTIO_MUTUAL and automatic mTLS)."""

    fqdn: str
    port: int
    subset: str = ""
    endpoints_have_sidecars: bool = False
    mtls: bool = False  # the control plane runs a CA: proxies hold ``default`` and ``ROOTCA``
    peer_sans: tuple[str, ...] = ()  # SPIFFE IDs of the destination's service accounts


def cluster_tls_context(
    mesh: MeshSnapshot, svc: Service, port: ServicePort, subset: str = ""
) -> ClusterTlsContext:
    """The cluster (svc, port, subset) as its transport socket sees it.

    The accepted server identities are the service accounts of every meshed
    endpoint of the service port (as Istio: the service's accounts, not the
    subset's), so a subset edit never changes what a server may be.
    """
    meshed = [ep for ep in mesh.endpoints(svc, port) if ep.has_sidecar]
    namespace = svc.namespace
    sans = sorted(
        {mesh.security.spiffe_uri(namespace, ep.service_account) for ep in meshed
         if ep.service_account}
        # a ServiceEntry's subjectAltNames are accepted too (Istio)
        | set(svc.entry.subject_alt_names if svc.entry is not None else ())
    )
    return ClusterTlsContext(
        fqdn=svc.fqdn(mesh.domain),
        port=port.port,
        subset=subset,
        endpoints_have_sidecars=bool(meshed),
        mtls=mesh.security.mtls,
        peer_sans=tuple(sans),
    )


def upstream_transport_socket(
    tls: ClientTls | None, cluster: ClusterTlsContext
) -> base_pb2.TransportSocket | None:
    """The transport socket for `cluster`, or None for plaintext (see module docstring)."""
    if tls is not None and tls.mode is TlsMode.ISTIO_MUTUAL:
        return _istio_mutual(cluster, tls) if cluster.mtls else None
    if tls is None or tls.mode is TlsMode.DISABLE:
        return None
    common = tls_pb2.CommonTlsContext()
    if not tls.insecure_skip_verify:
        common.validation_context.CopyFrom(_validation(tls))
    if tls.mode is TlsMode.MUTUAL and tls.client_certificate and tls.private_key:
        common.tls_certificates.append(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(filename=tls.client_certificate),
                private_key=base_pb2.DataSource(filename=tls.private_key),
            )
        )
    context = tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=tls.sni)
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))


def _validation(tls: ClientTls) -> common_pb2.CertificateValidationContext:
    ctx = common_pb2.CertificateValidationContext()
    if tls.ca_certificates:
        ctx.trusted_ca.CopyFrom(base_pb2.DataSource(filename=tls.ca_certificates))
    else:
        ctx.system_root_certs.SetInParent()
    if tls.ca_crl:
        ctx.crl.CopyFrom(base_pb2.DataSource(filename=tls.ca_crl))
    for san in tls.subject_alt_names:
        ctx.match_typed_subject_alt_names.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.DNS,
                matcher=string_pb2.StringMatcher(exact=san),
            )
        )
    return ctx


def auto_mtls_matches(
    tls: ClientTls | None, cluster: ClusterTlsContext
) -> list[cluster_pb2.Cluster.TransportSocketMatch]:
    """Automatic mTLS: sidecar endpoints get mTLS, the others plaintext (module docstring).

    Empty when a rule sets `tls`, when there is no CA, or when no endpoint
    runs a sidecar (then the cluster is plain, as before).
    """
    if tls is not None or not cluster.mtls or not cluster.endpoints_have_sidecars:
        return []
    match = cluster_pb2.Cluster.TransportSocketMatch
    raw = base_pb2.TransportSocket(
        name=RAW_BUFFER_TRANSPORT_SOCKET, typed_config=pack(raw_buffer_pb2.RawBuffer())
    )
    return [
        match(
            name="tlsMode-istio",
            match=struct_pb2.Struct(
                fields={TLS_MODE_KEY: struct_pb2.Value(string_value=TLS_MODE_ISTIO)}
            ),
            transport_socket=_istio_mutual(cluster, None),
        ),
        match(name="tlsMode-disabled", match=struct_pb2.Struct(), transport_socket=raw),
    ]


def with_tls_mode(
    mesh: MeshSnapshot, ep: Endpoint, lb: endpoint_components_pb2.LbEndpoint
) -> endpoint_components_pb2.LbEndpoint:
    """Label `lb` ``tlsMode: istio`` when automatic mTLS should dial it with mTLS: the
    workload runs a sidecar and its PeerAuthentication does not DISABLE mTLS on the
    endpoint's port (Istio sends plaintext to such ports). No label without a CA."""
    if not (mesh.security.mtls and ep.has_sidecar):
        return lb
    namespace = ep.workload.partition("/")[0]
    decision = peer_authentication_for(
        mesh.peer_authentications,
        root_namespace=mesh.root_namespace,
        namespace=namespace,
        labels=ep.labels,
        port=ep.port,
    )
    if decision.mode is MtlsMode.DISABLE:
        return lb
    lb.metadata.filter_metadata[TRANSPORT_SOCKET_MATCH].CopyFrom(
        struct_pb2.Struct(fields={TLS_MODE_KEY: struct_pb2.Value(string_value=TLS_MODE_ISTIO)})
    )
    return lb


def _istio_mutual(cluster: ClusterTlsContext, tls: ClientTls | None) -> base_pb2.TransportSocket:
    """The mesh's mTLS: ``default`` presented, ``ROOTCA`` and the SPIFFE SANs verified."""
    sans = tls.subject_alt_names if tls is not None and tls.subject_alt_names else None
    context = tls_pb2.UpstreamTlsContext(
        common_tls_context=mesh_tls_context(peer_sans=sans or cluster.peer_sans),
        sni=(tls.sni if tls is not None and tls.sni else "")
        or names.outbound_sni(cluster.fqdn, cluster.port, cluster.subset),
    )
    return base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context))
