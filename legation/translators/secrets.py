"""SDS: the Secrets a meshed proxy holds, and how TLS contexts reference them.

- ``default``: the workload's certificate chain and private key (a
  `WorkloadCertificate` issued for its SPIFFE identity);
- ``ROOTCA``: the trust bundle (a `TrustBundle`), as a validation context.

Istio's names, so Istio tooling and habits carry over. Listeners and
clusters never inline key material: their TLS contexts name these secrets
and fetch them over the ADS stream the proxy already has (`sds_config:
{ads: {}}`), so a rotated certificate reaches Envoy as one SDS update, with
no listener or cluster change and no dropped connection.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from legation.model import TlsCredential, TrustBundle, WorkloadCertificate
from legation.translators import names
from legation.translators.common import ads_config_source


def workload_secret(cert: WorkloadCertificate) -> secret_pb2.Secret:
    """``default``: the chain (leaf first) and key Envoy presents."""
    return secret_pb2.Secret(
        name=names.WORKLOAD_SECRET,
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_string=cert.chain_pem),
            private_key=base_pb2.DataSource(inline_string=cert.key_pem),
        ),
    )


def root_secret(bundle: TrustBundle) -> secret_pb2.Secret:
    """``ROOTCA``: every root a peer certificate may chain to."""
    return secret_pb2.Secret(
        name=names.ROOT_SECRET,
        validation_context=common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(inline_string=bundle.pem)
        ),
    )


def credential_secrets(credential: TlsCredential, *, ca_from: TlsCredential | None = None
                       ) -> list[secret_pb2.Secret]:
    """A gateway server's `credentialName` Secret as SDS resources, under Istio's names:
    ``kubernetes://<name>`` (chain and key) and, when a CA is given (`ca_from`, the
    same Secret's ca.crt or the ``<name>-cacert`` Secret), ``kubernetes://<name>-cacert``."""
    out = [secret_pb2.Secret(
        name=names.credential_secret(credential.name),
        tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_string=credential.cert_chain),
            private_key=base_pb2.DataSource(inline_string=credential.private_key),
        ),
    )]
    if ca_from is not None:
        out.append(secret_pb2.Secret(
            name=names.credential_ca_secret(credential.name),
            validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_string=ca_from.ca_cert)),
        ))
    return out


def sds(name: str) -> secret_pb2.SdsSecretConfig:
    """A reference to a secret delivered over ADS."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_config_source())


def mesh_tls_context(*, peer_sans: tuple[str, ...] = ()) -> tls_pb2.CommonTlsContext:
    """Present ``default``, verify the peer against ``ROOTCA`` and, when given, that its
    URI SAN is one of `peer_sans` (SPIFFE IDs).

    No ALPN is offered: Istio's ``istio``/``istio-peer-exchange`` tokens mean
    something only to its own proxy build, and without ALPN the server's
    HTTP connection manager (codec AUTO) recognises HTTP/2 by its preface.
    """
    default = common_pb2.CertificateValidationContext()
    for san in peer_sans:
        default.match_typed_subject_alt_names.append(
            common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.URI,
                matcher=string_pb2.StringMatcher(exact=san),
            )
        )
    combined = tls_pb2.CommonTlsContext.CombinedCertificateValidationContext
    return tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds(names.WORKLOAD_SECRET)],
        combined_validation_context=combined(
            default_validation_context=default,
            validation_context_sds_secret_config=sds(names.ROOT_SECRET),
        ),
    )
