"""RequestAuthentication -> Envoy's `envoy.filters.http.jwt_authn` filter and JWKS clusters.

The JWT rules of every RequestAuthentication that applies to a workload
(`legation.model.security.request_authentications_for`) become providers
``origins-<i>`` of one filter, placed before the RBAC filters of each
inbound HTTP port. Istio's semantics, which this reproduces on stock Envoy
(istio/istio pilot/pkg/security/authn/policy_applier.go,
`convertToEnvoyJwtConfig`): one rule for every path requires any provider
*or* no token at all (`requires_any` with `allow_missing`), so

- a request without a token passes authentication and is left to
  authorization (an AuthorizationPolicy requiring a request principal);
- a request with a token that no provider validates — bad signature,
  expired, wrong issuer or audience — is rejected with 401;
- CORS preflight requests are not checked (`bypass_cors_preflight`).

Envoy answers a token for another audience with 403 ("Audiences in Jwt are
not allowed") and every other invalid token with 401. A token that is not
meant for this service is an invalid token for it (RFC 6750 section 3.1,
`invalid_token`: "invalid for other reasons"), and the Bearer challenge Envoy
sends with it says so, so the HTTP connection manager turns that one reply
into a 401 as well (`local_reply`): the filter records its failure in dynamic
metadata (`failed_status_in_metadata`), and only a 403 carrying that record
is remapped — an RBAC denial is never touched.

A validated token's payload is written to dynamic metadata
``envoy.filters.http.jwt_authn`` under its issuer (`payload_in_metadata`), where
the RBAC filters read the request principal (``<iss>/<sub>``), audiences,
presenter and claims (authz/generate.py). The token is removed before the
request reaches the app unless `forwardOriginalToken`.

`jwksUri` is fetched by Envoy itself from the cluster ``jwks|<host>:<port>``
(for https: TLS with SNI, the server verified against the OS trust store
``/etc/ssl/certs/ca-certificates.crt`` and the URI's host name), at start and every
`--jwks-refresh` (`async_fetch`); a failed refetch keeps the keys Envoy has
and retries after a second. A rule without keys (no `jwks`, no `jwksUri`)
gets a JWKS whose only key has no private half anywhere, so every token of
its issuer is rejected rather than accepted unverified.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, http_uri_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import metadata_pb2, number_pb2, string_pb2, value_pb2
from envoy.type.v3 import range_pb2
from google.protobuf import empty_pb2, wrappers_pb2

from legation.model import MeshSnapshot, Workload
from legation.model.security import JwtRule, RequestAuthentication, request_authentications_for
from legation.translators.common import fractional_seconds, host_cluster, is_ip, pack, seconds

JWT_FILTER = "envoy.filters.http.jwt_authn"
FAILED_STATUS_KEY = "legation_jwt_failure"  # where the filter records why a token failed
JWT_MISSED = 1  # the code recorded for a request without a token (jwt_verify's Status)
TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
FAILED_REFETCH_S = 1
OS_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"  # Debian/Ubuntu, Envoy's images too
# An RSA public key whose private key was discarded when it was made: no token verifies.
_NO_KEYS_JWKS = json.dumps({"keys": [{
    "kty": "RSA", "alg": "RS256", "kid": "legation-no-keys", "e": "AQAB",
    "n": "vDbUrqEd_1w5OmMcO8MCGEK_yHost99qBvkufab98i-rlG3E_RHUO1zfu5I4U5Y3wM3whBbZ5Ef5R28nje"
         "eDcaVkdlCL-tktW49SpDeXlA2ciDTCii3zwPbJR4q2akDLwMac78AL7957RH9vIwC9_WQSOo3bRwL8LTl3Hn"
         "meLBOXhElw6NGrYP9lUb-y_iTuhw85MlKQKHF5TrPrqGRI_nFIlmLiWOLz84sEKHkH5dwD5Gt4sKYCalQD9v"
         "w5sDK98xpOYwL5Cxe5EcZGSHd48MCMaiJ5MUXOiIot5jOa1O3deifqlFZ5Og6ZDGwRkju-9bABboZ8IP3zbr"
         "oJ2Mo1VQ"}]}, separators=(",", ":"))


def policies_for(mesh: MeshSnapshot, workload: Workload) -> tuple[RequestAuthentication, ...]:
    return request_authentications_for(
        mesh.request_authentications,
        root_namespace=mesh.root_namespace,
        namespace=workload.namespace,
        labels=workload.labels,
    )


def jwt_filter(policies: tuple[RequestAuthentication, ...], refresh_s: float
               ) -> http_connection_manager_pb2.HttpFilter | None:
    """The jwt_authn filter of the workload the policies apply to; None without rules."""
    rules = [r for p in policies for r in p.rules]
    if not rules:
        return None
    config = jwt_pb2.JwtAuthentication(bypass_cors_preflight=True)
    requirements = []
    for index, rule in enumerate(rules):
        name = f"origins-{index}"
        config.providers[name].CopyFrom(_provider(rule, refresh_s))
        requirements.append(jwt_pb2.JwtRequirement(provider_name=name))
    requirements.append(jwt_pb2.JwtRequirement(allow_missing=empty_pb2.Empty()))
    config.rules.append(jwt_pb2.RequirementRule(
        match=route_components_pb2.RouteMatch(prefix="/"),
        requires=jwt_pb2.JwtRequirement(
            requires_any=jwt_pb2.JwtRequirementOrList(requirements=requirements))))
    return http_connection_manager_pb2.HttpFilter(name=JWT_FILTER, typed_config=pack(config))


def local_reply(issuers: tuple[str, ...]) -> http_connection_manager_pb2.LocalReplyConfig:
    """A rejected token is a 401, audience included (module docstring). A request without
    a token records a failure too, code 1 (JwtMissed, and it passes): its 403s are RBAC's,
    kept. Codes are google::jwt_verify::Status, Ok = 0 and JwtMissed = 1 first. A provider
    records its failure even when another one accepts the token, so the remap also needs
    that no payload was written (under any issuer). Envoy's access log metadata filter
    ignores `invert`: absence is "key not found, or a value only null matches"."""
    failed = accesslog_pb2.AccessLogFilter(metadata_filter=accesslog_pb2.MetadataFilter(
        match_if_key_not_found=wrappers_pb2.BoolValue(value=False),  # default: match
        matcher=metadata_pb2.MetadataMatcher(
            filter=JWT_FILTER,
            path=[metadata_pb2.MetadataMatcher.PathSegment(key=FAILED_STATUS_KEY),
                  metadata_pb2.MetadataMatcher.PathSegment(key="code")],
            value=value_pb2.ValueMatcher(double_match=number_pb2.DoubleMatcher(
                range=range_pb2.DoubleRange(start=JWT_MISSED + 1, end=1e9))))))

    forbidden = accesslog_pb2.StatusCodeFilter(comparison=accesslog_pb2.ComparisonFilter(
        op=accesslog_pb2.ComparisonFilter.EQ,
        value=base_pb2.RuntimeUInt32(default_value=403, runtime_key="legation.jwt_403")))
    no_payload = [accesslog_pb2.AccessLogFilter(metadata_filter=accesslog_pb2.MetadataFilter(
        match_if_key_not_found=wrappers_pb2.BoolValue(value=True),
        matcher=metadata_pb2.MetadataMatcher(
            filter=JWT_FILTER, path=[metadata_pb2.MetadataMatcher.PathSegment(key=issuer)],
            value=value_pb2.ValueMatcher(null_match=value_pb2.ValueMatcher.NullMatch()))))
        for issuer in issuers]
    mapper = http_connection_manager_pb2.ResponseMapper(
        filter=accesslog_pb2.AccessLogFilter(and_filter=accesslog_pb2.AndFilter(filters=[
            accesslog_pb2.AccessLogFilter(status_code_filter=forbidden), failed,
            *no_payload])))
    mapper.status_code.value = 401
    return http_connection_manager_pb2.LocalReplyConfig(mappers=[mapper])


def jwks_clusters(policies: tuple[RequestAuthentication, ...]) -> list[cluster_pb2.Cluster]:
    """One cluster per `jwksUri` host and port the policies fetch keys from."""
    seen: dict[str, cluster_pb2.Cluster] = {}
    for rule in (r for p in policies for r in p.rules if r.jwks_uri):
        host, port, tls = _target(rule.jwks_uri)
        name = cluster_name(rule.jwks_uri)
        if name not in seen:
            seen[name] = _cluster(name, host, port, tls)
    return [seen[n] for n in sorted(seen)]


def cluster_name(uri: str) -> str:
    host, port, _ = _target(uri)
    return f"jwks|{host}:{port}"


def _target(uri: str) -> tuple[str, int, bool]:
    parts = urlsplit(uri)
    tls = parts.scheme == "https"
    return parts.hostname or "", parts.port or (443 if tls else 80), tls


def _provider(rule: JwtRule, refresh_s: float) -> jwt_pb2.JwtProvider:
    provider = jwt_pb2.JwtProvider(
        issuer=rule.issuer,
        audiences=list(rule.audiences),
        forward=rule.forward_original_token,
        from_params=list(rule.from_params),
        from_cookies=list(rule.from_cookies),
        forward_payload_header=rule.output_payload_to_header,
        payload_in_metadata=rule.issuer,
        failed_status_in_metadata=FAILED_STATUS_KEY,
    )
    for h in rule.from_headers:
        provider.from_headers.add(name=h.name, value_prefix=h.prefix)
    for header, claim in rule.output_claim_to_headers:
        provider.claim_to_headers.add(header_name=header, claim_name=claim)
    if rule.jwks_uri:
        remote = provider.remote_jwks
        remote.http_uri.CopyFrom(http_uri_pb2.HttpUri(
            uri=rule.jwks_uri, cluster=cluster_name(rule.jwks_uri),
            timeout=fractional_seconds(rule.timeout_s)))
        remote.cache_duration.CopyFrom(fractional_seconds(refresh_s))
        remote.async_fetch.failed_refetch_duration.CopyFrom(seconds(FAILED_REFETCH_S))
    else:
        provider.local_jwks.CopyFrom(base_pb2.DataSource(inline_string=rule.jwks or _NO_KEYS_JWKS))
    return provider


def _cluster(name: str, host: str, port: int, tls: bool) -> cluster_pb2.Cluster:
    cluster = host_cluster(name, host, port)
    if tls:
        # Envoy refuses SAN checks against `system_root_certs`: the OS bundle by file
        validation = common_pb2.CertificateValidationContext(
            trusted_ca=base_pb2.DataSource(filename=OS_CA_BUNDLE))
        if not is_ip(host):
            validation.match_typed_subject_alt_names.append(common_pb2.SubjectAltNameMatcher(
                san_type=common_pb2.SubjectAltNameMatcher.DNS,
                matcher=string_pb2.StringMatcher(exact=host)))
        context = tls_pb2.UpstreamTlsContext(
            common_tls_context=tls_pb2.CommonTlsContext(validation_context=validation),
            sni="" if is_ip(host) else host)
        cluster.transport_socket.CopyFrom(
            base_pb2.TransportSocket(name=TLS_TRANSPORT_SOCKET, typed_config=pack(context)))
    return cluster
