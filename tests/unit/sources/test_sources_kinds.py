"""EndpointSlice, Namespace, Node, policy kinds, routing by apiVersion/kind."""

from __future__ import annotations

from typing import Any

import pytest
from sources_builders import Bad, assert_bad, convert, only

from legation.model import (
    EndpointSlice,
    HealthStatus,
    Locality,
    Namespace,
    Node,
    PolicyObject,
    Service,
    Severity,
    SliceEndpoint,
    SlicePort,
    object_key,
)
from legation.sources.convert import convert_object

SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: reviews-abc12
  namespace: shop
  labels: {kubernetes.io/service-name: reviews}
addressType: IPv4
ports:
- {name: http, port: 9080, protocol: TCP}
- {port: 9443}
endpoints:
- addresses: [10.244.0.7]
  conditions: {ready: true, serving: true, terminating: false}
  targetRef: {kind: Pod, name: reviews-v1-abc, namespace: shop}
  zone: us-east1-b
  nodeName: node-1
- addresses: [10.244.0.8, 10.244.0.9]
"""


def test_endpoint_slice() -> None:
    es = only(convert(SLICE))
    assert isinstance(es, EndpointSlice)
    assert (es.name, es.namespace, es.service_name, es.address_type) == (
        "reviews-abc12", "shop", "reviews", "IPv4"
    )
    assert es.ports == (SlicePort(name="http", port=9080), SlicePort(name="", port=9443))
    assert es.endpoints == (
        SliceEndpoint(addresses=("10.244.0.7",), target_kind="Pod", target_name="reviews-v1-abc",
                      zone="us-east1-b", node_name="node-1"),
        SliceEndpoint(addresses=("10.244.0.8", "10.244.0.9")),
    )
    assert object_key(es) == ("EndpointSlice", "shop", "reviews-abc12")


# Kubernetes EndpointConditions: nil ready = unknown, treated as ready; nil serving
# follows ready; nil terminating = false.
CONDITIONS = [
    ("all-nil", "{}", (True, True, False), HealthStatus.HEALTHY),
    ("ready", "{ready: true}", (True, True, False), HealthStatus.HEALTHY),
    ("not-ready", "{ready: false}", (False, False, False), None),
    ("terminating-serving", "{ready: false, serving: true, terminating: true}",
     (False, True, True), HealthStatus.DRAINING),
    ("terminating-not-serving", "{ready: false, serving: false, terminating: true}",
     (False, False, True), None),
    ("terminating-nil-serving", "{ready: false, terminating: true}", (False, False, True), None),
    ("ready-null", "{ready: null, serving: null, terminating: null}", (True, True, False),
     HealthStatus.HEALTHY),
]


@pytest.mark.parametrize(("conditions", "flags", "health"), [c[1:] for c in CONDITIONS],
                         ids=[c[0] for c in CONDITIONS])
def test_endpoint_conditions(
    conditions: str, flags: tuple[bool, bool, bool], health: HealthStatus | None
) -> None:
    text = (
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n"
        "  labels: {kubernetes.io/service-name: svc}\naddressType: IPv4\n"
        f"endpoints:\n- addresses: [10.0.0.1]\n  conditions: {conditions}\n"
    )
    es = only(convert(text))
    assert isinstance(es, EndpointSlice)
    (ep,) = es.endpoints
    assert (ep.ready, ep.serving, ep.terminating) == flags
    assert ep.health is health


def _slice(body: str, labels: str = "{kubernetes.io/service-name: svc}") -> str:
    return (f"apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: s\n"
            f"  labels: {labels}\n{body}")


BAD_SLICES = [
    Bad(id="service-name-missing", code="endpointslice.service-name-missing",
        field="metadata.labels[kubernetes.io/service-name]",
        yaml=_slice("addressType: IPv4\n", labels="{app: x}  # <-")),
    Bad(id="address-type-bad", code="endpointslice.address-type-invalid", field="addressType",
        yaml=_slice("addressType: ipv4  # <-\n")),
    Bad(id="address-type-missing", code="endpointslice.address-type-missing",
        field="addressType",  # missing at the top level: the object's first line
        yaml="apiVersion: discovery.k8s.io/v1  # <-\nkind: EndpointSlice\nmetadata:\n"
        "  name: s\n  labels: {kubernetes.io/service-name: svc}\n"),
    Bad(id="address-not-ip", code="endpointslice.address-invalid",
        field="endpoints[0].addresses[1]",
        yaml=_slice("addressType: IPv4\nendpoints:\n- addresses:\n  - 10.0.0.1\n"
                    "  - web-1  # <-\n")),
    Bad(id="address-wrong-family", code="endpointslice.address-invalid",
        field="endpoints[0].addresses[0]",
        yaml=_slice("addressType: IPv6\nendpoints:\n- addresses:\n  - 10.0.0.1  # <-\n")),
    Bad(id="addresses-empty", code="endpointslice.addresses-missing",
        field="endpoints[0].addresses",
        yaml=_slice("addressType: IPv4\nendpoints:\n- addresses: []  # <-\n")),
    Bad(id="condition-string", code="endpointslice.condition-invalid",
        field="endpoints[0].conditions.ready",
        yaml=_slice("addressType: IPv4\nendpoints:\n- addresses: [10.0.0.1]\n  conditions:\n"
                    "    ready: 'yes'  # <-\n")),
    Bad(id="port-range", code="endpointslice.port-invalid", field="ports[0].port",
        yaml=_slice("addressType: IPv4\nports:\n- name: http\n  port: 0  # <-\n")),
    Bad(id="fqdn", code="endpointslice.fqdn-unsupported", field="addressType",
        severity=Severity.WARNING, yaml=_slice("addressType: FQDN  # <-\n")),
]


@pytest.mark.parametrize("case", BAD_SLICES, ids=[c.id for c in BAD_SLICES])
def test_bad_endpoint_slice(case: Bad) -> None:
    result = assert_bad(case)
    if case.severity is Severity.WARNING:  # skipped, not failed: nothing to keep
        assert result.objects == () and result.failed_keys == ()


def test_slice_port_without_number_is_skipped() -> None:
    result = convert(_slice("addressType: IPv4\nports:\n- name: all\n"))
    es = only(result)
    assert isinstance(es, EndpointSlice) and es.ports == ()
    assert [d.code for d in result.diagnostics] == ["endpointslice.port-unset"]


def test_namespace_and_node() -> None:
    result = convert("""\
        apiVersion: v1
        kind: Namespace
        metadata: {name: shop, namespace: ignored, labels: {istio-injection: enabled}}
        ---
        apiVersion: v1
        kind: Node
        metadata:
          name: node-1
          labels:
            topology.kubernetes.io/region: us-east1
            failure-domain.beta.kubernetes.io/region: old-region
            failure-domain.beta.kubernetes.io/zone: us-east1-b
            topology.istio.io/subzone: rack-4
        """)
    assert not result.diagnostics
    ns, node = result.objects
    assert isinstance(ns, Namespace) and isinstance(node, Node)
    assert ns.labels == (("istio-injection", "enabled"),)
    assert object_key(ns) == ("Namespace", "", "shop")
    assert node.locality == Locality(region="us-east1", zone="us-east1-b", subzone="rack-4")
    assert object_key(node) == ("Node", "", "node-1")


POLICIES = [
    # VirtualService and DestinationRule have typed models: tests/unit/traffic/;
    # PeerAuthentication and AuthorizationPolicy too: tests/unit/security/; Sidecar:
    # tests/unit/test_pipeline_scope.py; Gateway: tests/unit/sources/test_sources_gateway.py;
    # ServiceEntry: tests/unit/sources/test_sources_service_entry.py; RequestAuthentication:
    # tests/unit/security/test_request_authentication.py. Kept as plain data: the Gateway
    # API kinds not implemented yet.
    ("gateway.networking.k8s.io/v1alpha2", "TCPRoute"),
]


@pytest.mark.parametrize(("api_version", "kind"), POLICIES, ids=[k for _, k in POLICIES])
def test_policy_kinds(api_version: str, kind: str) -> None:
    text = (f"apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: p, namespace: shop}}\n"
            "spec:\n  hosts: [reviews]\n  when: 2024-01-01\n  80: x\n")
    p = only(convert(text))
    assert isinstance(p, PolicyObject)
    assert (p.api_version, p.kind, p.name, p.namespace) == (api_version, kind, "p", "shop")
    # JSON-like: string keys, dates as ISO strings
    assert p.spec == {"hosts": ["reviews"], "when": "2024-01-01", "80": "x"}
    assert object_key(p) == (kind, "shop", "p")


def test_policy_hash_is_content_based() -> None:
    def policy(spec: str) -> PolicyObject:
        p = only(convert("apiVersion: gateway.networking.k8s.io/v1\nkind: TCPRoute\n"
                         f"metadata: {{name: p}}\nspec: {spec}\n"))
        assert isinstance(p, PolicyObject)
        return p

    a, b, c = policy("{action: DENY, rules: [{}]}"), policy("{rules: [{}], action: DENY}"), policy(
        "{action: ALLOW}")
    assert a.spec_hash == b.spec_hash != c.spec_hash
    assert a == b and a != c
    assert policy("").spec == {} and policy("").spec_hash == policy("{}").spec_hash


BAD_TYPES = [
    Bad(id="policy-spec-list", code="virtualservice.spec-invalid", field="spec",
        yaml="apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n"
        "spec: [a]  # <-\n"),
    Bad(id="kind-missing", code="object.kind-missing", field="kind", keyed=False,
        yaml="apiVersion: v1  # <-\nmetadata: {name: v}\n"),
    Bad(id="api-version-missing", code="object.apiversion-missing", field="apiVersion",
        yaml="kind: Service  # <-\nmetadata: {name: v}\n"),
    Bad(id="kind-not-string", code="object.kind-missing", field="kind", keyed=False,
        yaml="apiVersion: v1\nkind: [Service]  # <-\nmetadata: {name: v}\n"),
    Bad(id="unknown-kind", code="object.unknown-kind", field="kind", severity=Severity.WARNING,
        yaml="apiVersion: apps/v1\nkind: Deployment  # <-\nmetadata: {name: v}\n"),
    Bad(id="unsupported-version", code="object.unsupported-version", field="apiVersion",
        severity=Severity.WARNING,
        yaml="apiVersion: discovery.k8s.io/v1beta1  # <-\nkind: EndpointSlice\n"
        "metadata: {name: e}\n"),
    Bad(id="security-v1alpha3", code="object.unsupported-version", field="apiVersion",
        severity=Severity.WARNING,
        yaml="apiVersion: security.istio.io/v1alpha3  # <-\nkind: PeerAuthentication\n"
        "metadata: {name: e}\n"),
    Bad(id="metadata-missing", code="service.metadata-missing", field="metadata", keyed=False,
        yaml="apiVersion: v1  # <-\nkind: Service\n"),
]


@pytest.mark.parametrize("case", BAD_TYPES, ids=[c.id for c in BAD_TYPES])
def test_bad_types(case: Bad) -> None:
    result = assert_bad(case)
    if case.severity is Severity.WARNING:
        assert result.objects == () and result.failed_keys == ()
        assert len(result.diagnostics) == 1  # one warning per ignored object


def test_missing_api_version_of_known_kind_keeps_its_key() -> None:
    # so the file source keeps the last good version while the user fixes it
    result = convert("kind: Namespace\nmetadata: {name: shop}\n")
    assert result.failed_keys == (("Namespace", "", "shop"),)


def test_unknown_kinds_warn_once_each() -> None:
    result = convert("""\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: a}
        ---
        apiVersion: apps/v1
        kind: StatefulSet
        metadata: {name: b}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: c}
        """)
    assert [(d.code, d.ref.kind, d.line) for d in result.diagnostics] == [
        ("object.unknown-kind", "Deployment", 2),
        ("object.unknown-kind", "StatefulSet", 6),
    ]
    assert [o.name for o in result.objects] == ["c"]


def test_list_items_are_converted_with_their_lines() -> None:
    result = convert("""\
        apiVersion: v1
        kind: List
        items:
        - apiVersion: v1
          kind: Service
          metadata: {name: a}
        - apiVersion: v1
          kind: Service
          metadata: {name: b}
          spec:
            ports:
            - port: x
        """)
    assert [o.name for o in result.objects] == ["a"]
    (diag,) = result.diagnostics
    assert (diag.field, diag.line, diag.ref.line) == ("spec.ports[0].port", 12, 7)
    assert result.failed_keys == (("Service", "default", "b"),)


def test_duplicate_in_one_file_keeps_the_first() -> None:
    result = convert("""\
        apiVersion: v1
        kind: Service
        metadata: {name: a}
        spec: {clusterIP: 10.0.0.1}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: a}
        spec: {clusterIP: 10.0.0.2}
        """)
    (svc,) = result.objects
    assert isinstance(svc, Service) and svc.cluster_ip == "10.0.0.1"
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity, diag.line) == ("object.duplicate", Severity.WARNING, 6)
    assert "line 1" in diag.message


def test_convert_object_from_api_dict() -> None:
    """The Kubernetes source passes API objects as dicts, with no file or lines."""
    data: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "reviews", "namespace": "shop", "resourceVersion": "42"},
        "spec": {"ports": [{"name": "http", "port": 9080, "targetPort": 9080}]},
    }
    obj, key, diags = convert_object(data)
    assert isinstance(obj, Service) and key is None and diags == []
    assert obj.ref.file == "" and obj.ref.line == 0
    data["spec"]["ports"][0]["port"] = "x"
    obj, key, diags = convert_object(data)
    assert obj is None and key == ("Service", "shop", "reviews")
    assert [(d.code, d.field, d.line) for d in diags] == [
        ("service.port-invalid", "spec.ports[0].port", 0)
    ]


def test_never_raises_on_odd_input() -> None:
    for data in ({}, {"kind": 1, "apiVersion": 2, "metadata": []},
                 {"apiVersion": "v1", "kind": "Service", "metadata": {"name": 5}, "spec": 7},
                 {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                  "status": {"conditions": "Ready"}, "spec": {"containers": [1, None]}}):
        obj, _, diags = convert_object(data)
        assert obj is None
        assert any(d.severity is Severity.ERROR for d in diags)
