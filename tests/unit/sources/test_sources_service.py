"""v1 Service -> Service, and Istio protocol selection."""

from __future__ import annotations

import pytest
from sources_builders import Bad, assert_bad, convert, only

from legation.model import Protocol, Service, ServicePort, Severity, object_key
from legation.sources.convert.protocol import select_protocol

VALID = """\
apiVersion: v1
kind: Service
metadata:
  name: reviews
  namespace: shop
  labels: {app: reviews}
spec:
  clusterIP: 10.96.0.12
  selector: {app: reviews}
  ports:
  - name: http
    port: 9080
  - name: grpc-api
    port: 9090
    targetPort: grpc
  - name: metrics
    port: 15020
    targetPort: 8080
    appProtocol: http2
  - name: dns
    port: 53
    protocol: UDP
"""


def test_valid_service() -> None:
    result = convert(VALID)
    svc = only(result)
    assert isinstance(svc, Service)
    assert (svc.name, svc.namespace, svc.cluster_ip) == ("reviews", "shop", "10.96.0.12")
    assert svc.labels == (("app", "reviews"),)
    assert svc.selector == (("app", "reviews"),)
    assert svc.ports == (
        ServicePort(name="http", port=9080, target_port=9080, protocol=Protocol.HTTP),
        ServicePort(name="grpc-api", port=9090, target_port="grpc", protocol=Protocol.GRPC),
        ServicePort(name="metrics", port=15020, target_port=8080, protocol=Protocol.HTTP2),
    )
    assert svc.ref.file == "mesh/test.yaml" and svc.ref.line == 1
    assert object_key(svc) == ("Service", "shop", "reviews")
    # the UDP port is skipped with a warning at its protocol line
    (warning,) = result.diagnostics
    assert (warning.code, warning.severity, warning.field, warning.line) == (
        "service.protocol-unsupported", Severity.WARNING, "spec.ports[3].protocol", 22,
    )


def test_namespace_defaults_to_default() -> None:
    svc = only(convert("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {}\n"))
    assert isinstance(svc, Service)
    assert svc.namespace == "default" and svc.ports == ()


def _svc(ports: str, meta: str = "name: reviews") -> str:
    return f"apiVersion: v1\nkind: Service\nmetadata:\n  {meta}\nspec:\n  ports:\n{ports}"


BAD = [
    Bad(id="port-string", code="service.port-invalid", field="spec.ports[0].port",
        yaml=_svc("  - name: http\n    port: abc  # <-\n")),
    Bad(id="port-zero", code="service.port-invalid", field="spec.ports[0].port",
        yaml=_svc("  - port: 0  # <-\n")),
    Bad(id="port-too-big", code="service.port-invalid", field="spec.ports[1].port",
        yaml=_svc("  - {name: a, port: 80}\n  - name: b\n    port: 70000  # <-\n")),
    Bad(id="port-bool", code="service.port-invalid", field="spec.ports[0].port",
        yaml=_svc("  - port: true  # <-\n")),
    Bad(id="port-missing", code="service.port-missing", field="spec.ports[0].port",
        yaml=_svc("  - name: http  # <-\n")),
    Bad(id="port-not-mapping", code="service.port-invalid", field="spec.ports[0]",
        yaml=_svc("  - 80  # <-\n")),
    Bad(id="ports-not-list", code="service.port-invalid", field="spec.ports",
        yaml="apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports: 80  # <-\n"),
    Bad(id="target-port-quoted-number", code="service.target-port-invalid",
        field="spec.ports[0].targetPort",
        yaml=_svc("  - port: 80\n    targetPort: '8080'  # <-\n")),
    Bad(id="target-port-bad-name", code="service.target-port-invalid",
        field="spec.ports[0].targetPort",
        yaml=_svc("  - port: 80\n    targetPort: Web_Port  # <-\n")),
    Bad(id="protocol-bad", code="service.protocol-invalid", field="spec.ports[0].protocol",
        yaml=_svc("  - port: 80\n    protocol: HTTP  # <-\n")),
    Bad(id="port-name-bad", code="service.port-name-invalid", field="spec.ports[0].name",
        yaml=_svc("  - port: 80\n    name: Http  # <-\n")),
    Bad(id="duplicate-number", code="service.port-duplicate", field="spec.ports[1].port",
        yaml=_svc("  - {name: a, port: 80}\n  - name: b\n    port: 80  # <-\n")),
    Bad(id="duplicate-name", code="service.port-name-duplicate", field="spec.ports[1].name",
        yaml=_svc("  - {name: a, port: 80}\n  - port: 81\n    name: a  # <-\n")),
    Bad(id="two-unnamed", code="service.port-name-duplicate", field="spec.ports[1].name",
        yaml=_svc("  - port: 80\n  - port: 81  # <-\n")),
    Bad(id="selector-int", code="service.selector-invalid", field="spec.selector.version",
        yaml="apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  selector:\n"
        "    version: 1  # <-\n"),
    Bad(id="spec-list", code="service.spec-invalid", field="spec",
        yaml="apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: []  # <-\n"),
    Bad(id="name-missing", code="service.name-missing", field="metadata.name", keyed=False,
        yaml="apiVersion: v1\nkind: Service\nmetadata:  # <-\n  namespace: shop\n"),
    Bad(id="name-uppercase", code="service.name-invalid", field="metadata.name",
        yaml="apiVersion: v1\nkind: Service\nmetadata:\n  name: Reviews  # <-\n"),
    Bad(id="name-starts-with-digit", code="service.name-invalid", field="metadata.name",
        yaml="apiVersion: v1\nkind: Service\nmetadata:\n  name: 1reviews  # <-\n"),
    Bad(id="namespace-bad", code="service.namespace-invalid", field="metadata.namespace",
        yaml="apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  namespace: a.b  # <-\n"),
    Bad(id="label-int", code="service.labels-invalid",
        field="metadata.labels[app.kubernetes.io/version]",
        yaml="apiVersion: v1\nkind: Service\nmetadata:\n  name: a\n  labels:\n"
        "    app.kubernetes.io/version: 2  # <-\n"),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_service(case: Bad) -> None:
    assert_bad(case)


def test_every_error_is_reported_at_once() -> None:
    result = convert(
        _svc("  - {name: a, port: abc}\n  - name: b\n    port: 80\n    targetPort: -1\n")
    )
    codes = sorted(d.code for d in result.diagnostics)
    assert codes == ["service.port-invalid", "service.target-port-invalid"]


PROTOCOLS = [
    ("http", "", Protocol.HTTP),
    ("http-web", "", Protocol.HTTP),
    ("HTTP-Web", "", Protocol.HTTP),
    ("http2", "", Protocol.HTTP2),
    ("http2-api", "", Protocol.HTTP2),
    ("grpc", "", Protocol.GRPC),
    ("grpc-web", "", Protocol.GRPC),
    ("grpc-web-ui", "", Protocol.GRPC),
    ("https", "", Protocol.HTTPS),
    ("tls-passthrough", "", Protocol.TLS),
    ("tcp", "", Protocol.TCP),
    ("mongo", "", Protocol.TCP),
    ("mysql-primary", "", Protocol.TCP),
    ("redis", "", Protocol.TCP),
    ("web", "", Protocol.UNKNOWN),
    ("httpx", "", Protocol.UNKNOWN),
    ("", "", Protocol.UNKNOWN),
    ("database", "mysql", Protocol.TCP),
    ("http", "tcp", Protocol.TCP),  # appProtocol wins over the name
    ("tcp", "grpc", Protocol.GRPC),
    ("web", "kubernetes.io/h2c", Protocol.HTTP2),
    ("web", "kubernetes.io/ws", Protocol.HTTP),
    ("web", "kubernetes.io/wss", Protocol.HTTPS),
    ("http", "example.com/custom", Protocol.HTTP),  # unknown appProtocol: the name decides
]


@pytest.mark.parametrize(
    ("name", "app_protocol", "expected"), PROTOCOLS,
    ids=[f"{n or '-'}|{a or '-'}" for n, a, _ in PROTOCOLS],
)
def test_protocol_selection(name: str, app_protocol: str, expected: Protocol) -> None:
    assert select_protocol(port_name=name, app_protocol=app_protocol) is expected
