"""RequestAuthentication -> jwt_authn, JWT attributes in RBAC, and CUSTOM -> ext_authz.

Manifests go through the real converter and store; what is asserted is the
Envoy configuration an inbound port gets (Istio's semantics, on stock Envoy).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from envoy.extensions.filters.http.ext_authz.v3 import ext_authz_pb2
from envoy.extensions.filters.http.jwt_authn.v3 import config_pb2 as jwt_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.ext_authz.v3 import ext_authz_pb2 as net_ext_authz_pb2
from google.protobuf import json_format
from sources.sources_builders import Bad, assert_bad, convert, only

from legation.mesh.store import MeshStore
from legation.model import MeshSecurity, MeshSnapshot, Protocol, RequestAuthentication, Severity
from legation.model.mesh import AppAddress
from legation.sources.convert import convert_text
from legation.translators.authn import inbound_security
from legation.translators.inbound import InboundPort

RA = "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n" \
     "metadata: {name: jwt, namespace: shop}\n"
WORKLOADS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: shop}
spec: {address: 10.0.0.1, labels: {app: db}, serviceAccount: db-sa}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: web-1, namespace: shop}
spec: {address: 10.0.0.2, labels: {app: web}, serviceAccount: web-sa}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: other-1, namespace: other}
spec: {address: 10.0.0.3, labels: {app: db}, serviceAccount: other-sa}
"""
ISSUER = "https://idp.example.com/realms/shop"
JWKS = '{"keys": [{"kty": "RSA", "kid": "k1", "n": "AQAB", "e": "AQAB"}]}'
MESH_CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    extensionProviders:
    - name: opa
      envoyExtAuthzHttp:
        service: opa.authz.svc.cluster.local
        port: 8181
        timeout: 2s
        pathPrefix: /check
        failOpen: true
        statusOnError: "503"
        includeRequestHeadersInCheck: [x-user, "x-ext-*"]
        headersToUpstreamOnAllow: [x-authz-user]
        headersToDownstreamOnDeny: [x-reason]
    - name: grpc-authz
      envoyExtAuthzGrpc: {service: 127.0.0.9, port: 9000}
"""


def mesh(text: str, *, refresh_s: float = 300.0) -> MeshSnapshot:
    result = convert_text(WORKLOADS + "---\n" + textwrap.dedent(text), file="t.yaml")
    assert [d.format() for d in result.diagnostics if d.severity == "error"] == []
    store = MeshStore(security=MeshSecurity(mtls=True, jwks_refresh_s=refresh_s))
    store.replace_source("t", result.objects, result.diagnostics)
    return store.snapshot()


def security(m: MeshSnapshot, workload: str = "db-1", *, tcp: bool = False) -> Any:
    (w,) = [w for w in m.workloads if w.name == workload]
    port = InboundPort(port=5432 if tcp else 9080, protocol=Protocol.TCP if tcp else Protocol.HTTP,
                       app=AppAddress(port=1))
    return inbound_security(m, w, port)


def typed(f: Any, message: Any) -> Any:
    out = message()
    f.typed_config.Unpack(out)
    return out


def jwt_config(sec: Any) -> jwt_pb2.JwtAuthentication:
    (f,) = [f for f in sec.http_filters if f.name == "envoy.filters.http.jwt_authn"]
    assert sec.http_filters[0] is f  # authentication comes before every authorization filter
    return typed(f, jwt_pb2.JwtAuthentication)


def ra(spec: str, *, name: str = "jwt", namespace: str = "shop") -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n"
            + textwrap.indent(textwrap.dedent(spec), "  ") + "---\n")


# -- conversion --------------------------------------------------------------------


def test_all_fields_convert() -> None:
    p = only(convert(RA + f"""\
spec:
  selector: {{matchLabels: {{app: db}}}}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [shop, admin]
    jwksUri: https://idp.example.com/certs
    timeout: 2s
    fromHeaders: [{{name: x-jwt, prefix: "Token "}}]
    fromParams: [token]
    fromCookies: [session]
    outputPayloadToHeader: x-payload
    outputClaimToHeaders: [{{header: x-sub, claim: sub}}]
    forwardOriginalToken: true
"""))
    assert isinstance(p, RequestAuthentication)
    (rule,) = p.rules
    assert (rule.issuer, rule.audiences, rule.jwks_uri, rule.timeout_s) == (
        ISSUER, ("shop", "admin"), "https://idp.example.com/certs", 2.0)
    assert [(h.name, h.prefix) for h in rule.from_headers] == [("x-jwt", "Token ")]
    assert (rule.from_params, rule.from_cookies) == (("token",), ("session",))
    assert rule.output_payload_to_header == "x-payload"
    assert rule.output_claim_to_headers == (("x-sub", "sub"),)
    assert rule.forward_original_token and p.selector == (("app", "db"),)


BAD = [
    Bad(id="issuer-missing", code="requestauthentication.issuer-missing",
        field="spec.jwtRules[0].issuer",
        yaml=RA + "spec:\n  jwtRules:\n  - jwks: '{}'\n    issuer: ''  # <-\n"),
    Bad(id="issuer-space", code="requestauthentication.issuer-invalid",
        field="spec.jwtRules[0].issuer",
        yaml=RA + "spec:\n  jwtRules:\n  - jwksUri: http://x/k\n"
        "    issuer: 'https://a b'  # <-\n"),
    Bad(id="jwks-not-json", code="requestauthentication.jwks-invalid",
        field="spec.jwtRules[0].jwks",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n    jwks: '{keys: ['  # <-\n"),
    Bad(id="jwks-no-keys", code="requestauthentication.jwks-invalid",
        field="spec.jwtRules[0].jwks",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n    jwks: '{\"keys\": []}'  # <-\n"),
    Bad(id="jwks-key-without-kty", code="requestauthentication.jwks-invalid",
        field="spec.jwtRules[0].jwks",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n"
        "    jwks: '{\"keys\": [{\"n\": 1}]}'  # <-\n"),
    Bad(id="jwks-uri-scheme", code="requestauthentication.jwks-uri-invalid",
        field="spec.jwtRules[0].jwksUri",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n    jwksUri: ftp://x/keys  # <-\n"),
    Bad(id="jwks-and-uri", code="requestauthentication.jwks-conflict",
        field="spec.jwtRules[0].jwks",
        yaml=RA + f"spec:\n  jwtRules:\n  - issuer: a\n    jwksUri: http://x/k\n"
        f"    jwks: '{JWKS}'  # <-\n"),
    Bad(id="header-name", code="requestauthentication.header-name-invalid",
        field="spec.jwtRules[0].fromHeaders[0].name",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n    jwksUri: http://x/k\n"
        "    fromHeaders:\n    - name: 'x jwt'  # <-\n"),
    Bad(id="claim-header", code="requestauthentication.claim-missing",
        field="spec.jwtRules[0].outputClaimToHeaders[0].claim",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n    jwksUri: http://x/k\n"
        "    outputClaimToHeaders:\n    - header: x-sub  # <-\n"),
    Bad(id="unknown-field", code="requestauthentication.field-unknown",
        field="spec.jwtRules[0].jwks_uri",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: a\n    jwks_uri: http://x/k  # <-\n"),
    Bad(id="selector-and-target", code="requestauthentication.target-ref-invalid",
        field="spec.targetRef",
        yaml=RA + "spec:\n  selector: {matchLabels: {app: db}}\n"
        "  targetRef: {kind: Gateway, name: gw}  # <-\n"),
    # kept, with its effect said
    Bad(id="no-keys", code="requestauthentication.jwks-missing", severity=Severity.WARNING,
        field="spec.jwtRules[0]",
        yaml=RA + "spec:\n  jwtRules:\n  - issuer: https://a.example.com  # <-\n"),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_request_authentications(case: Bad) -> None:
    result = assert_bad(case)
    if case.severity is Severity.WARNING:
        assert len(result.objects) == 1


# -- jwt_authn ---------------------------------------------------------------------


def test_rules_of_every_applicable_policy_become_providers_any_of_them_or_no_token() -> None:
    m = mesh(ra(f"jwtRules:\n- issuer: {ISSUER}\n  jwks: '{JWKS}'\n  audiences: [shop]\n",
                name="ns-wide")
             + ra("selector: {matchLabels: {app: db}}\njwtRules:\n"
                  "- issuer: https://other.example.com\n  jwksUri: https://other.example.com/k\n"
                  "  fromHeaders: [{name: x-jwt}]\n  forwardOriginalToken: true\n",
                  name="db-only")
             + ra("jwtRules:\n- issuer: mesh-issuer\n  jwks: '" + JWKS + "'\n",
                  name="mesh", namespace="istio-system")
             + ra("jwtRules:\n- issuer: elsewhere\n  jwks: '" + JWKS + "'\n",
                  name="x", namespace="other"))
    config = jwt_config(security(m))
    by_issuer = {p.issuer: p for p in config.providers.values()}
    assert sorted(by_issuer) == sorted(["https://other.example.com", ISSUER, "mesh-issuer"])
    shop = by_issuer[ISSUER]
    assert list(shop.audiences) == ["shop"] and shop.payload_in_metadata == ISSUER
    assert shop.local_jwks.inline_string.startswith('{"keys":') and not shop.forward
    other = by_issuer["https://other.example.com"]
    assert other.remote_jwks.http_uri.cluster == "jwks|other.example.com:443"
    assert other.remote_jwks.cache_duration.seconds == 300
    assert other.remote_jwks.HasField("async_fetch") and other.forward
    assert [h.name for h in other.from_headers] == ["x-jwt"]
    (rule,) = config.rules
    assert rule.match.prefix == "/"
    reqs = rule.requires.requires_any.requirements
    assert sorted(r.provider_name for r in reqs if r.provider_name) == sorted(config.providers)
    assert reqs[-1].HasField("allow_missing")  # no token: passes to authorization
    assert config.bypass_cors_preflight
    (cluster,) = security(m).clusters
    assert cluster.name == "jwks|other.example.com:443"
    tls = json_format.MessageToDict(cluster.transport_socket)
    assert tls["typedConfig"]["sni"] == "other.example.com"
    # the web workload: not selected by db-only
    web = jwt_config(security(m, "web-1"))
    assert sorted(p.issuer for p in web.providers.values()) == sorted([ISSUER, "mesh-issuer"])


def test_no_request_authentication_no_filter_and_tcp_ports_never_get_one() -> None:
    assert security(mesh("")).http_filters == ()
    m = mesh(ra(f"jwtRules:\n- issuer: {ISSUER}\n  jwks: '{JWKS}'\n"))
    assert security(m, tcp=True).network_filters == ()
    assert all(f.name != "envoy.filters.http.jwt_authn" for f in security(m, tcp=True).http_filters)


def test_a_rule_without_keys_rejects_its_tokens() -> None:
    m = mesh(ra("jwtRules:\n- issuer: https://nokeys.example.com\n"))
    (p,) = jwt_config(security(m)).providers.values()
    assert '"kid":"legation-no-keys"' in p.local_jwks.inline_string


def test_refresh_interval_is_the_settings() -> None:
    m = mesh(ra("jwtRules:\n- issuer: a\n  jwksUri: http://127.0.0.5:8080/k\n"), refresh_s=1.5)
    (p,) = jwt_config(security(m)).providers.values()
    assert (p.remote_jwks.cache_duration.seconds, p.remote_jwks.cache_duration.nanos) == (1, 5e8)
    (cluster,) = security(m).clusters
    assert cluster.name == "jwks|127.0.0.5:8080" and not cluster.HasField("transport_socket")


# -- JWT attributes in RBAC ----------------------------------------------------------


def rbac_json(sec: Any, action: str = "ALLOW") -> dict[str, Any]:
    for f in sec.http_filters:
        if f.name == "envoy.filters.http.rbac":
            config = typed(f, http_rbac_pb2.RBAC)
            if config.HasField("rules") and http_rbac_pb2.RBAC().rules.Action.Name(
                    config.rules.action) == action:
                return json_format.MessageToDict(config.rules)
    raise AssertionError(f"no {action} filter")


def authz(rule: str, action: str = "ALLOW") -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: p, namespace: shop}}\nspec:\n  action: {action}\n  rules:\n"
            + textwrap.indent(textwrap.dedent(rule), "  ") + "---\n")


def sub_matchers(config: dict[str, Any]) -> list[dict[str, Any]]:
    (policy,) = config["policies"].values()
    (principal,) = policy["principals"]
    ids = principal["andIds"]["ids"][0]["orIds"]["ids"]
    return ids


def test_request_principals_test_sub_under_each_issuer() -> None:
    jwt = ra(f"jwtRules:\n- issuer: {ISSUER}\n  jwks: '{JWKS}'\n")
    cases = {
        f"{ISSUER}/alice": [{"exact": "alice"}],
        "*": [{"safeRegex": {"regex": ".+"}}],
        f"{ISSUER}/adm*": [{"prefix": "adm"}],
        "https://idp.example.com/*": [{"safeRegex": {"regex": ".+"}}],  # any sub of it
        "*/alice": [{"suffix": "/alice"}, {"exact": "alice"}],  # '/' may be iss's own
        "https://elsewhere/alice": [],  # no such issuer: never matches
    }
    for value, expected in cases.items():
        m = mesh(jwt + authz(f"- from: [{{source: {{requestPrincipals: ['{value}']}}}}]\n"))
        ids = sub_matchers(rbac_json(security(m)))
        if not expected:
            assert ids == [{"notId": {"any": True}}], value
            continue
        found = [i["sourcedMetadata"]["metadataMatcher"] for i in ids]
        assert all(f["filter"] == "envoy.filters.http.jwt_authn" for f in found)
        assert all([s["key"] for s in f["path"]] == [ISSUER, "sub"] for f in found)
        assert [f["value"]["stringMatch"] for f in found] == expected, value


def test_claims_audiences_and_presenter_match_strings_and_lists() -> None:
    m = mesh(ra(f"jwtRules:\n- issuer: {ISSUER}\n  jwks: '{JWKS}'\n")
             + authz("- when:\n  - {key: 'request.auth.claims[realm][role]', values: [admin]}\n"
                     "  - {key: request.auth.audiences, values: [shop]}\n"
                     "  - {key: request.auth.presenter, values: [web]}\n"))
    (policy,) = rbac_json(security(m))["policies"].values()
    conditions = policy["principals"][0]["andIds"]["ids"]
    paths = []
    for c in conditions:
        string_form, list_form = (i["sourcedMetadata"]["metadataMatcher"]
                                  for i in c["orIds"]["ids"])
        assert "stringMatch" in string_form["value"]
        assert "oneOf" in list_form["value"]["listMatch"]
        paths.append([s["key"] for s in string_form["path"]])
    assert paths == [[ISSUER, "realm", "role"], [ISSUER, "aud"], [ISSUER, "azp"]]


def test_without_request_authentication_jwt_conditions_never_match() -> None:
    m = mesh(authz("- from: [{source: {requestPrincipals: ['*']}}]\n"))
    assert sub_matchers(rbac_json(security(m))) == [{"notId": {"any": True}}]
    deny = mesh(authz("- from: [{source: {notRequestPrincipals: ['*']}}]\n", "DENY"))
    (policy,) = rbac_json(security(deny), "DENY")["policies"].values()
    # "no principal" holds for every request: NOT(never)
    assert policy["principals"][0]["andIds"]["ids"] == [
        {"notId": {"orIds": {"ids": [{"notId": {"any": True}}]}}}]


# -- CUSTOM -> ext_authz ---------------------------------------------------------------


def custom(provider: str, rule: str = "- to: [{operation: {paths: [/admin*]}}]\n",
           name: str = "ext") -> str:
    return authz(rule, "CUSTOM").replace("metadata: {name: p,", f"metadata: {{name: {name},") \
        .replace("  action: CUSTOM\n", f"  action: CUSTOM\n  provider: {{name: {provider}}}\n")


def test_custom_marks_matching_requests_and_checks_only_those() -> None:
    m = mesh(MESH_CONFIG + "---\n" + custom("opa") + authz("- {}\n", "DENY"))
    sec = security(m)
    names = [f.name for f in sec.http_filters]
    assert names == ["envoy.filters.http.rbac", "envoy.filters.http.ext_authz",
                     "envoy.filters.http.rbac"]  # CUSTOM before DENY
    shadow = typed(sec.http_filters[0], http_rbac_pb2.RBAC)
    assert not shadow.HasField("rules") and shadow.shadow_rules_stat_prefix == "istio_ext_authz_"
    assert list(shadow.shadow_rules.policies) == ["istio-ext-authz-ns[shop]-policy[ext]-rule[0]"]
    ext = typed(sec.http_filters[1], ext_authz_pb2.ExtAuthz)
    enabled = json_format.MessageToDict(ext.filter_enabled_metadata)
    assert enabled == {"filter": "envoy.filters.http.rbac",
                       "path": [{"key": "istio_ext_authz_shadow_effective_policy_id"}],
                       "value": {"stringMatch": {"prefix": "istio-ext-authz-"}}}
    http = ext.http_service
    assert (http.server_uri.uri, http.server_uri.cluster, http.path_prefix) == (
        "http://opa.authz.svc.cluster.local", "extauthz|opa", "/check")
    assert http.server_uri.timeout.seconds == 2
    assert ext.failure_mode_allow and ext.status_on_error.code == 503
    assert [json_format.MessageToDict(p) for p in ext.allowed_headers.patterns] == [
        {"exact": "x-user", "ignoreCase": True}, {"prefix": "x-ext-", "ignoreCase": True}]
    assert [p.exact for p in http.authorization_response.allowed_upstream_headers.patterns] == [
        "x-authz-user"]
    assert [p.exact for p in http.authorization_response.allowed_client_headers.patterns] == [
        "x-reason"]
    (cluster,) = sec.clusters
    assert cluster.name == "extauthz|opa" and cluster.type == cluster.STRICT_DNS
    assert sec.diagnostics == ()


def test_custom_on_tcp_needs_a_grpc_provider() -> None:
    port_rule = "- to: [{operation: {ports: ['5432']}}]\n"
    m = mesh(MESH_CONFIG + "---\n" + custom("grpc-authz", port_rule))
    sec = security(m, tcp=True)
    assert [f.name for f in sec.network_filters] == ["envoy.filters.network.rbac",
                                                     "envoy.filters.network.ext_authz"]
    ext = typed(sec.network_filters[1], net_ext_authz_pb2.ExtAuthz)
    assert ext.grpc_service.envoy_grpc.cluster_name == "extauthz|grpc-authz"
    assert ext.filter_enabled_metadata.filter == "envoy.filters.network.rbac"
    (cluster,) = sec.clusters
    assert cluster.typed_extension_protocol_options  # HTTP/2 for gRPC

    http_on_tcp = mesh(MESH_CONFIG + "---\n" + custom("opa", port_rule))
    sec = security(http_on_tcp, tcp=True)
    assert [f.name for f in sec.network_filters] == ["envoy.filters.network.rbac"]  # DENY
    (d,) = sec.diagnostics
    assert d.code == "authorizationpolicy.custom-unusable" and "TCP" in d.message


def test_one_provider_per_workload_the_others_deny() -> None:
    m = mesh(MESH_CONFIG + "---\n" + custom("opa", name="a") + custom("grpc-authz", name="b"))
    sec = security(m)
    assert [f.name for f in sec.http_filters] == [
        "envoy.filters.http.rbac", "envoy.filters.http.ext_authz", "envoy.filters.http.rbac"]
    (d,) = sec.diagnostics
    assert d.ref.name == "b" and "already uses provider 'opa'" in d.message
    assert list(rbac_json(sec, "DENY")["policies"]) == ["ns[shop]-policy[b]-rule[0]"]


def test_mesh_config_checks_ext_authz_providers() -> None:
    bad = MESH_CONFIG.replace('statusOnError: "503"', 'statusOnError: "299"')
    result = convert_text(bad, file="t.yaml")
    (d,) = [d for d in result.diagnostics if d.severity == "error"]
    assert d.field.endswith("envoyExtAuthzHttp.statusOnError") and "299" in d.message
    missing = MESH_CONFIG.replace("service: 127.0.0.9, ", "")
    (d,) = [d for d in convert_text(missing, file="t.yaml").diagnostics if d.severity == "error"]
    assert d.field.endswith("envoyExtAuthzGrpc.service")


