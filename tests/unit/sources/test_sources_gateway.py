"""Istio Gateway: servers, hosts and what is not served yet, each with its diagnostic."""

from __future__ import annotations

from pathlib import Path

import pytest
from sources_builders import convert, marked_line, only

from legation.model import Gateway, GatewayHost, Protocol, Severity

HEAD = ("apiVersion: networking.istio.io/v1\nkind: Gateway\n"
        "metadata: {name: edge, namespace: shop}\nspec:\n")


def test_servers_hosts_and_selector() -> None:
    gw = only(convert(HEAD + """\
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8080, name: http, protocol: http}
    hosts: ["*", "shop/bookinfo.example.com", "./*.internal"]
    tls: {httpsRedirect: true}
"""))
    assert isinstance(gw, Gateway) and gw.key == "shop/edge"
    assert gw.selector == (("istio", "ingressgateway"),)
    (server,) = gw.servers
    assert (server.port, server.protocol, server.https_redirect) == (8080, Protocol.HTTP, True)
    assert server.hosts == (GatewayHost(namespace="*", host="*"),
                            GatewayHost(namespace="shop", host="bookinfo.example.com"),
                            GatewayHost(namespace=".", host="*.internal"))
    assert server.admits("shop", "shop") == ("*", "bookinfo.example.com", "*.internal")
    assert server.admits("shop", "other") == ("*",)


@pytest.mark.parametrize(("server", "code", "severity"), [
    ('  - port: {number: 443, protocol: HTTPS}\n    hosts: ["*"]\n'
     '    tls: {mode: AUTO_PASSTHROUGH}  # <-\n', "gateway.server-not-applied",
     Severity.WARNING),
    ('  - port: {number: 443, protocol: TLS}\n    hosts: ["*"]\n    tls:\n'
     '      mode: PASSTHROUGH\n      credentialName: x  # <-\n',
     "gateway.field-not-applied", Severity.WARNING),
    ('  - port: {number: 443, protocol: HTTPS}\n    hosts: ["*"]\n    tls:\n'
     '      mode: ISTIO_MUTUAL\n      credentialName: x  # <-\n',
     "gateway.field-not-applied", Severity.WARNING),
    ('  - port: {number: 443, protocol: HTTPS}  # <-\n    hosts: ["*"]\n',
     "gateway.tls-missing", Severity.ERROR),
    ('  - port: {number: 9000, protocol: GRPC-WEB}  # <-\n    hosts: ["*"]\n',
     "gateway.server-not-applied", Severity.WARNING),
    ('  - port: {number: 80, protocol: SMTP}  # <-\n    hosts: ["*"]\n',
     "gateway.protocol-invalid", Severity.ERROR),
    ('  - port: {number: 80, protocol: HTTP}\n    hosts: ["a/b/c"]  # <-\n',
     "gateway.host-invalid", Severity.ERROR),
    ('  - port: {number: 80, protocol: HTTP}\n    bind: 0.0.0.0  # <-\n    hosts: ["*"]\n',
     "gateway.field-not-applied", Severity.WARNING),
    ('  - port: {number: 80, protocol: HTTP}\n    hosts: ["*"]\n'
     '    tls: {mode: SIMPLE}  # <-\n', "gateway.field-not-applied", Severity.WARNING),
], ids=["auto-passthrough", "passthrough-credential", "istio-mutual-credential",
        "https-without-tls", "grpc-web", "bad-protocol", "bad-host", "bind", "tls-on-http"])
def test_what_is_not_served_is_said(server: str, code: str, severity: Severity) -> None:
    text = HEAD + "  selector: {istio: ingressgateway}\n  servers:\n" + server
    result = convert(text)
    found = [d for d in result.diagnostics if d.code == code]
    assert found, [d.format() for d in result.diagnostics]
    assert (found[0].severity, found[0].line) == (severity, marked_line(text))


def test_one_port_one_protocol() -> None:
    text = HEAD + """\
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 80, protocol: TCP}  # <-
    hosts: ["*"]
"""
    result = convert(text)
    (d,) = [d for d in result.diagnostics if d.code == "gateway.port-conflict"]
    assert d.severity is Severity.ERROR and d.line == marked_line(text)
    assert "port 80 is TCP here but HTTP" in d.message


def test_an_empty_selector_is_a_warning() -> None:
    result = convert(HEAD + "  servers:\n  - port: {number: 80, protocol: HTTP}\n"
                     "    hosts: ['*']\n")
    assert [d.code for d in result.diagnostics] == ["gateway.selector-empty"]


def test_a_virtual_service_naming_no_gateway_is_warned_about() -> None:
    from legation.mesh.store import MeshStore

    text = HEAD + """\
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, protocol: HTTP}
    hosts: ['*']
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [edge, other/missing]  # <-
  http:
  - route: [{destination: {host: web}}]
"""
    result = convert(text)
    store = MeshStore()
    store.replace_source("test", result.objects, result.diagnostics)
    found = [d for d in store.snapshot().diagnostics
             if d.code == "virtualservice.gateway-not-found"]
    assert [(d.field, d.severity, d.line) for d in found] == [
        ("spec.gateways[1]", Severity.WARNING, marked_line(text))]
    assert "other/missing is not defined" in found[0].message


def test_analyze_reports_a_gateway_credential_that_is_missing(tmp_path: Path) -> None:
    from legation.cli import analyze_paths

    (tmp_path / "mesh.yaml").write_text(HEAD + """\
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, protocol: HTTPS}
    hosts: ['*']
    tls: {mode: SIMPLE, credentialName: absent}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: gw, namespace: shop}
spec: {address: 10.0.0.1, labels: {istio: ingressgateway}}
""")
    found, _ = analyze_paths([tmp_path])
    assert [(d.code, d.field) for d in found] == [
        ("gateway.credential-not-found", "spec.servers[0].tls.credentialName")]


def test_istio_mutual_needs_no_credential() -> None:
    gw = only(convert(HEAD + """\
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: [rates.example.com]
    tls: {mode: ISTIO_MUTUAL}
"""))
    assert isinstance(gw, Gateway)
    (server,) = gw.servers
    assert (server.protocol, server.tls_mode, server.credential) == (
        Protocol.HTTPS, "ISTIO_MUTUAL", "")
