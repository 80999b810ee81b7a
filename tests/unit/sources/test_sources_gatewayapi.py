"""Kubernetes Gateway API: conversion, and resolution into Istio Gateways and
VirtualServices with the standard status conditions."""

from __future__ import annotations

import pytest
from sources_builders import convert, marked_line

from legation.mesh.store import MeshStore
from legation.model import Severity
from legation.model.gatewayapi import ApiGateway, ApiRoute, ReferenceGrant
from legation.model.traffic import MatchKind
from legation.sources.convert import convert_text

API = "apiVersion: gateway.networking.k8s.io/v1\n"
CLASS = API + "kind: GatewayClass\nmetadata: {name: istio}\n" \
    "spec: {controllerName: istio.io/gateway-controller}\n"


def gateway(listeners: str, name: str = "web", class_name: str = "istio") -> str:
    return (API + f"kind: Gateway\nmetadata: {{name: {name}, namespace: edge}}\n"
            f"spec:\n  gatewayClassName: {class_name}\n  listeners:\n{listeners}")


def route(body: str, name: str = "r", namespace: str = "edge", kind: str = "HTTPRoute") -> str:
    return API + f"kind: {kind}\nmetadata: {{name: {name}, namespace: {namespace}}}\n" \
        f"spec:\n{body}"


SERVICE = ("apiVersion: v1\nkind: Service\nmetadata: {name: NAME, namespace: NS}\n"
           "spec: {selector: {app: NAME}, ports: [{name: http, port: 9080}]}\n")


def service(name: str, namespace: str = "edge") -> str:
    return SERVICE.replace("NAME", name).replace("NS", namespace)


def test_a_gateway_and_its_listeners() -> None:
    gw, = convert(gateway("  - {name: http, port: 80, protocol: HTTP, hostname: '*.a.com'}\n"
                          "  - name: https\n    port: 443\n    protocol: HTTPS\n"
                          "    tls: {certificateRefs: [{name: cert}]}\n"
                          "    allowedRoutes: {namespaces: {from: All}}\n")).objects
    assert isinstance(gw, ApiGateway) and gw.class_name == "istio"
    http, https = gw.listeners
    assert (http.name, http.port, http.protocol, http.hostname, http.routes_from) == (
        "http", 80, "HTTP", "*.a.com", "Same")
    assert (https.tls_mode, [r.name for r in https.certificate_refs], https.routes_from) == (
        "Terminate", ["cert"], "All")


def test_route_matches_and_filters() -> None:
    r, = convert(route("""\
  parentRefs: [{name: web}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /shop/}
      headers: [{name: X-Canary, value: "1"}]
      queryParams: [{type: RegularExpression, name: v, value: "[0-9]+"}]
      method: POST
    filters:
    - {type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}
    backendRefs: [{name: a, port: 9080, weight: 3}]
""")).objects
    assert isinstance(r, ApiRoute) and r.parents[0].namespace == "edge"
    (rule,) = r.rules
    (m,) = rule.matches
    assert (m.uri.kind, m.uri.value) == (MatchKind.REGEX, "/shop(/.*)?")  # whole elements
    assert m.headers[0].name == "x-canary" and m.method is not None
    assert m.query_params[0].match is not None and m.query_params[0].match.value == "[0-9]+"
    assert rule.rewrite is not None and rule.rewrite.uri == "/"
    assert rule.backends[0].weight == 3


def test_grpc_method_matches() -> None:
    r, = convert(route("  rules:\n  - matches:\n    - method: {service: pkg.Svc, method: Get}\n"
                       "    - method: {service: pkg.Svc}\n", kind="GRPCRoute")).objects
    assert isinstance(r, ApiRoute)
    exact, service_only = r.rules[0].matches
    assert exact.uri is not None and exact.uri.value == "/pkg.Svc/Get"
    assert service_only.uri is not None and (service_only.uri.kind, service_only.uri.value) == (
        MatchKind.PREFIX, "/pkg.Svc/")


@pytest.mark.parametrize(("text", "code", "severity"), [
    (gateway("  - {name: a, port: 80, protocol: SMTP}  # <-\n"), "gateway.protocol-invalid",
     Severity.ERROR),
    (gateway("  - {name: a, port: 80, protocol: HTTP}\n"
             "  - {name: a, port: 81, protocol: HTTP}  # <-\n"),
     "gateway.listener-name-duplicate", Severity.ERROR),
    (gateway("  - {name: a, port: 443, protocol: HTTPS}  # <-\n"), "gateway.tls-missing",
     Severity.ERROR),
    (route("  rules:\n  - filters:\n    - type: RequestRedirect\n"
           "      requestRedirect: {scheme: https}\n"
           "    backendRefs: [{name: a, port: 1}]  # <-\n"),
     "httproute.redirect-with-backends", Severity.ERROR),
    (route("  rules:\n  - matches:\n    - path:\n        type: RegularExpression\n"
           "        value: '(a'  # <-\n"), "httproute.regex-invalid", Severity.ERROR),
    (route("  hostnames:\n  - 10.0.0.1  # <-\n"), "httproute.hostname-invalid",
     Severity.ERROR),
    (route("  rules:\n  - filters:\n    - {type: ExtensionRef}  # <-\n"),
     "httproute.filter-not-applied", Severity.WARNING),
    (route("  parentRef: []  # <-\n"), "httproute.field-unknown", Severity.WARNING),
    (API.replace("v1", "v1alpha2") + "kind: TCPRoute\nmetadata: {name: t, namespace: a}  # <-\n"
     "spec: {}\n", "object.kind-not-implemented", Severity.WARNING),
], ids=["protocol", "listener-twice", "https-no-tls", "redirect-and-backends", "regex",
        "ip-hostname", "extension-ref", "unknown-field", "tcproute"])
def test_bad_input_is_said(text: str, code: str, severity: Severity) -> None:
    result = convert(text)
    found = [d for d in result.diagnostics if d.code == code]
    assert found, [d.format() for d in result.diagnostics]
    if code != "object.kind-not-implemented":
        assert found[0].line == marked_line(text)
    assert found[0].severity is severity


def test_a_reference_grant_permits_what_it_names() -> None:
    g, = convert(API.replace("v1", "v1beta1") + "kind: ReferenceGrant\n"
                 "metadata: {name: g, namespace: back}\nspec:\n"
                 "  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: f}]\n"
                 "  to: [{group: '', kind: Service, name: db}]\n").objects
    assert isinstance(g, ReferenceGrant)
    common = {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "to_group": "",
              "to_kind": "Service"}
    assert g.permits(namespace="f", to_name="db", **common)
    assert not g.permits(namespace="f", to_name="other", **common)
    assert not g.permits(namespace="x", to_name="db", **common)


def _mesh(*docs: str) -> MeshStore:
    store = MeshStore()
    result = convert_text("---\n".join(docs), file="m.yaml")
    assert not [d for d in result.diagnostics if d.severity is Severity.ERROR], result
    store.replace_source("files", result.objects)
    return store


def _status(store: MeshStore) -> dict[tuple[str, str, str], dict[str, tuple[bool, str]]]:
    return {(s.ref.kind, s.ref.name, s.part): {c.type: (c.status, c.reason)
                                              for c in s.conditions}
            for s in store.snapshot().gateway_status}


HTTP = "  - {name: http, port: 80, protocol: HTTP}\n"


def test_resolved_into_istio_gateways_and_virtual_services() -> None:
    store = _mesh(CLASS, gateway(HTTP), service("a"), route(
        "  parentRefs: [{name: web}]\n  hostnames: [a.example.com]\n"
        "  rules: [{backendRefs: [{name: a, port: 9080}]}]\n"))
    mesh = store.snapshot()
    (gw,) = mesh.gateways
    assert (gw.name, gw.selector) == ("web-istio-autogenerated-k8s-gateway-http",
                                      (("gateway.networking.k8s.io/gateway-name", "web"),))
    (vs,) = [v for v in mesh.virtual_services if v.ref.kind == "HTTPRoute"]
    assert vs.hosts == ("a.example.com",) and vs.gateways == (f"edge/{gw.name}",)
    dest = vs.http[0].route[0].destination
    assert (dest.host, dest.port) == ("a.edge.svc.cluster.local", 9080)
    status = _status(store)
    assert status[("Gateway", "web", "")]["Programmed"] == (False, "NoResources")  # no proxy
    assert status[("HTTPRoute", "r", "parent edge/web")] == {
        "Accepted": (True, "Accepted"), "ResolvedRefs": (True, "ResolvedRefs")}


@pytest.mark.parametrize(("docs", "condition"), [
    ((gateway(HTTP, class_name="nope"), route("  parentRefs: [{name: web}]\n")),
     ("Gateway", "web", "", "Accepted", "Pending")),
    ((CLASS, gateway(HTTP), route("  parentRefs: [{name: gone}]\n")),
     ("HTTPRoute", "r", "parent edge/gone", "Accepted", "NoMatchingParent")),
    ((CLASS, gateway(HTTP), route("  parentRefs: [{name: web, namespace: edge}]\n",
                                  namespace="other")),
     ("HTTPRoute", "r", "parent edge/web", "Accepted", "NotAllowedByListeners")),
    ((CLASS, gateway("  - {name: http, port: 80, protocol: HTTP, hostname: a.com}\n"),
      route("  parentRefs: [{name: web}]\n  hostnames: [b.com]\n")),
     ("HTTPRoute", "r", "parent edge/web", "Accepted", "NoMatchingListenerHostname")),
    ((CLASS, gateway(HTTP), service("x", "other"),
      route("  parentRefs: [{name: web}]\n"
            "  rules: [{backendRefs: [{name: x, namespace: other, port: 9080}]}]\n")),
     ("HTTPRoute", "r", "parent edge/web", "ResolvedRefs", "RefNotPermitted")),
    ((CLASS, gateway(HTTP + "  - {name: tcp, port: 80, protocol: TCP}\n")),
     ("Gateway", "web", "listener tcp", "Conflicted", "ProtocolConflict")),
], ids=["no-class", "no-parent", "not-allowed", "hostname", "not-permitted", "conflict"])
def test_conditions(docs: tuple[str, ...], condition: tuple[str, ...]) -> None:
    kind, name, part, ctype, reason = condition
    found = _status(_mesh(*docs))[(kind, name, part)][ctype]
    assert found == (ctype == "Conflicted", reason)


def test_another_controllers_gateway_is_left_alone() -> None:
    other = CLASS.replace("istio.io/gateway-controller", "example.com/other")
    store = _mesh(other, gateway(HTTP))
    assert store.snapshot().gateways == () and _status(store) == {}


def test_rules_follow_the_api_precedence_and_a_lost_backend_answers_500() -> None:
    store = _mesh(CLASS, gateway(HTTP), service("a"), route("""\
  parentRefs: [{name: web}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: a, port: 9080}]
  - matches: [{path: {type: PathPrefix, value: /long/prefix}}, {path: {value: /x, type: Exact}}]
    backendRefs: [{name: ghost, port: 9080}]
"""))
    (vs,) = [v for v in store.snapshot().virtual_services if v.ref.kind == "HTTPRoute"]
    assert [r.match[0].uri.value for r in vs.http if r.match[0].uri] == [
        "/x", "/long/prefix(/.*)?", "/"]
    assert vs.http[0].direct_response is not None and vs.http[0].direct_response.status == 500


def test_an_invalid_gateway_keeps_its_last_good_version_apart_from_istios() -> None:
    result = convert(API + "kind: Gateway\nmetadata: {name: g, namespace: edge}\n")
    assert result.objects == ()
    # not ("Gateway", ...): an Istio Gateway of the same name is another object
    assert result.failed_keys == (("Gateway.gateway.networking.k8s.io", "edge", "g"),)
