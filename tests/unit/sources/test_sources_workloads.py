"""WorkloadEntry and Pod -> Workload, and the app-ports annotation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sources_builders import Bad, assert_bad, convert, only

from legation.model import AppAddress, HealthStatus, Locality, Severity, Workload, WorkloadKind
from legation.model import object_key as key_of
from legation.sources.convert.appports import AppPortsError, format_app_ports, parse_app_ports

ENTRY = """\
apiVersion: networking.istio.io/v1beta1
kind: WorkloadEntry
metadata:
  name: reviews-v1
  namespace: shop
  labels: {ignored: "yes"}
  annotations:
    sidecar.legation.io/app-ports: "9080=18081, 9090=127.0.0.5:19090"
spec:
  address: 127.0.0.10
  labels: {app: reviews, version: v1}
  ports: {http: 9080, grpc: 9090}
  serviceAccount: bookinfo-reviews
  locality: us-east1/us-east1-b
  weight: 3
"""


def test_workload_entry() -> None:
    w = only(convert(ENTRY))
    assert isinstance(w, Workload)
    assert w.kind is WorkloadKind.WORKLOAD_ENTRY
    assert (w.name, w.namespace, w.address) == ("reviews-v1", "shop", "127.0.0.10")
    assert w.labels == (("app", "reviews"), ("version", "v1"))
    assert w.ports == (("grpc", 9090), ("http", 9080))
    assert w.service_account == "bookinfo-reviews"
    assert w.locality == Locality(region="us-east1", zone="us-east1-b")
    assert w.weight == 3
    assert w.app_ports == (
        (9080, AppAddress(port=18081)),
        (9090, AppAddress(host="127.0.0.5", port=19090)),
    )
    assert key_of(w) == ("WorkloadEntry", "shop", "reviews-v1")


def test_workload_entry_defaults_and_metadata_labels() -> None:
    w = only(convert(
        "apiVersion: networking.istio.io/v1alpha3\nkind: WorkloadEntry\n"
        "metadata: {name: vm, labels: {app: vm}}\nspec: {address: '::1'}\n"
    ))
    assert isinstance(w, Workload)
    # Istio: metadata.labels are used when spec.labels is empty (istio/istio#25930)
    assert w.labels == (("app", "vm"),)
    assert (w.namespace, w.service_account, w.weight, w.ports, w.app_ports) == (
        "default", "default", 0, (), ()
    )


def _we(spec: str, annotations: str = "") -> str:
    meta = "metadata:\n  name: vm\n" + (f"  annotations:\n{annotations}" if annotations else "")
    return f"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n{meta}spec:\n{spec}"


BAD_ENTRIES = [
    Bad(id="address-hostname", code="workloadentry.address-invalid", field="spec.address",
        yaml=_we("  address: vm.example.com  # <-\n")),
    Bad(id="address-unix", code="workloadentry.address-invalid", field="spec.address",
        yaml=_we("  address: unix:///var/run/app.sock  # <-\n")),
    Bad(id="address-missing", code="workloadentry.address-missing", field="spec.address",
        # a missing field points at its parent's line
        yaml="apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: vm}\n"
        "spec:  # <-\n  labels: {app: vm}\n"),
    Bad(id="spec-missing", code="workloadentry.spec-missing", field="spec",
        yaml="apiVersion: networking.istio.io/v1  # <-\nkind: WorkloadEntry\n"
        "metadata: {name: a}\n"),
    Bad(id="port-string", code="workloadentry.port-invalid", field="spec.ports.http",
        yaml=_we("  address: 10.0.0.1\n  ports:\n    http: eighty  # <-\n")),
    Bad(id="port-range", code="workloadentry.port-invalid", field="spec.ports.http",
        yaml=_we("  address: 10.0.0.1\n  ports:\n    http: 65536  # <-\n")),
    Bad(id="weight-negative", code="workloadentry.weight-invalid", field="spec.weight",
        yaml=_we("  address: 10.0.0.1\n  weight: -1  # <-\n")),
    Bad(id="locality-too-deep", code="workloadentry.locality-invalid", field="spec.locality",
        yaml=_we("  address: 10.0.0.1\n  locality: a/b/c/d  # <-\n")),
    Bad(id="service-account-bad", code="workloadentry.service-account-invalid",
        field="spec.serviceAccount",
        yaml=_we("  address: 10.0.0.1\n  serviceAccount: Not_Valid  # <-\n")),
    Bad(id="app-ports-malformed", code="workloadentry.app-ports-invalid",
        field="metadata.annotations[sidecar.legation.io/app-ports]",
        yaml=_we("  address: 10.0.0.1\n",
                 "    sidecar.legation.io/app-ports: '9080:18081'  # <-\n")),
    Bad(id="app-ports-not-string", code="workloadentry.annotations-invalid",
        field="metadata.annotations[sidecar.legation.io/app-ports]",
        yaml=_we("  address: 10.0.0.1\n", "    sidecar.legation.io/app-ports: 9080  # <-\n")),
]


@pytest.mark.parametrize("case", BAD_ENTRIES, ids=[c.id for c in BAD_ENTRIES])
def test_bad_workload_entry(case: Bad) -> None:
    assert_bad(case)


def test_address_message_explains_why_an_ip_is_needed() -> None:
    result = assert_bad(BAD_ENTRIES[0])
    assert "EDS" in result.diagnostics[0].message


def test_foreign_annotation_with_bad_value_only_warns() -> None:
    result = convert(_we("  address: 10.0.0.1\n", "    prometheus.io/port: 9090\n"))
    assert len(result.objects) == 1
    (diag,) = result.diagnostics
    assert (diag.code, diag.severity) == ("workloadentry.annotations-invalid", Severity.WARNING)


POD = """\
apiVersion: v1
kind: Pod
metadata:
  name: reviews-v1-abc
  namespace: shop
  labels: {app: reviews, version: v1}
  annotations: {sidecar.legation.io/app-ports: "9080=19080"}
spec:
  serviceAccountName: bookinfo-reviews
  nodeName: node-1
  containers:
  - name: app
    ports:
    - {name: http, containerPort: 9080}
    - {containerPort: 9443}
  - name: sidecar
    ports:
    - {name: metrics, containerPort: 15020}
status:
  phase: Running
  podIP: 10.244.0.7
  conditions:
  - {type: Initialized, status: "True"}
  - {type: Ready, status: "%s"}
"""


def test_pod() -> None:
    w = only(convert(POD % "True"))
    assert isinstance(w, Workload)
    assert w.kind is WorkloadKind.POD
    assert (w.name, w.namespace, w.address, w.node_name) == (
        "reviews-v1-abc", "shop", "10.244.0.7", "node-1"
    )
    assert w.service_account == "bookinfo-reviews"
    assert w.ports == (("http", 9080), ("metrics", 15020))
    assert w.health is HealthStatus.HEALTHY
    assert w.app_ports == ((9080, AppAddress(port=19080)),)
    assert key_of(w) == ("Pod", "shop", "reviews-v1-abc")


POD_HEALTH = [
    ("ready", POD % "True", HealthStatus.HEALTHY),
    ("not-ready", POD % "False", HealthStatus.UNHEALTHY),
    ("unknown", POD % "Unknown", HealthStatus.UNHEALTHY),
    ("no-conditions", POD.split("  conditions:")[0], HealthStatus.UNHEALTHY),
    ("deleting", (POD % "True").replace("  name: reviews-v1-abc\n",
                 "  name: reviews-v1-abc\n  deletionTimestamp: '2024-01-01T00:00:00Z'\n"),
     HealthStatus.DRAINING),
]


@pytest.mark.parametrize(("text", "health"), [c[1:] for c in POD_HEALTH],
                         ids=[c[0] for c in POD_HEALTH])
def test_pod_health(text: str, health: HealthStatus) -> None:
    w = only(convert(text))
    assert isinstance(w, Workload)
    assert w.health is health


@pytest.mark.parametrize(("status", "code"), [
    ("status: {phase: Pending}\n", "pod.no-ip"),
    ("status: {phase: Succeeded, podIP: 10.0.0.1}\n", "pod.not-running"),
], ids=["pending", "succeeded"])
def test_pod_skipped_without_error(status: str, code: str) -> None:
    result = convert(f"apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\n{status}")
    assert result.objects == () and result.failed_keys == ()
    assert [(d.code, d.severity) for d in result.diagnostics] == [(code, Severity.INFO)]


def test_pod_service_account_defaults() -> None:
    w = only(convert("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus: {podIP: 10.0.0.1}\n"))
    assert isinstance(w, Workload)
    assert w.service_account == "default" and w.health is HealthStatus.UNHEALTHY


BAD_PODS = [
    Bad(id="pod-ip-bad", code="pod.pod-ip-invalid", field="status.podIP",
        yaml="apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nstatus:\n  podIP: 10.0.0  # <-\n"),
    Bad(id="container-port-bad", code="pod.container-port-invalid",
        field="spec.containers[0].ports[0].containerPort",
        yaml="apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers:\n"
        "  - ports:\n    - containerPort: http  # <-\nstatus: {podIP: 10.0.0.1}\n"),
    Bad(id="app-ports-bad", code="pod.app-ports-invalid",
        field="metadata.annotations[sidecar.legation.io/app-ports]",
        yaml="apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
        "    sidecar.legation.io/app-ports: 9080=x  # <-\nstatus: {podIP: 10.0.0.1}\n"),
]


@pytest.mark.parametrize("case", BAD_PODS, ids=[c.id for c in BAD_PODS])
def test_bad_pod(case: Bad) -> None:
    assert_bad(case)


# -- app-ports annotation ------------------------------------------------------

APP_PORTS = [
    ("", ()),
    ("9080=18081", ((9080, AppAddress(port=18081)),)),
    (" 9090=127.0.0.5:19090 , 9080=18081,", (
        (9080, AppAddress(port=18081)), (9090, AppAddress(host="127.0.0.5", port=19090)))),
    ("8443=[::1]:18443", ((8443, AppAddress(host="::1", port=18443)),)),
]


@pytest.mark.parametrize(("text", "expected"), APP_PORTS, ids=["empty", "port", "host", "ipv6"])
def test_parse_app_ports(text: str, expected: tuple[tuple[int, AppAddress], ...]) -> None:
    assert parse_app_ports(text) == expected


BAD_APP_PORTS = [
    ("9080", "no '='"),
    ("9080:18081", "no '='"),
    ("http=18081", "not a port"),
    ("9080=0", "not a port"),
    ("9080=65536", "not a port"),
    ("9080=localhost:18081", "not an IP address"),
    ("9080=::1:18081", "IPv6"),
    ("9080=[::1]18081", "IPv6"),
    ("9080=1,9080=2", "twice"),
    ("9080=١٢", "not a port"),  # non-ASCII digits
]


@pytest.mark.parametrize(("text", "why"), BAD_APP_PORTS, ids=[t for t, _ in BAD_APP_PORTS])
def test_parse_app_ports_rejects(text: str, why: str) -> None:
    with pytest.raises(AppPortsError, match=why):
        parse_app_ports(text)


_ports = st.integers(min_value=1, max_value=65535)
_hosts = st.one_of(
    st.just("127.0.0.1"),
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(str),
)
_app_ports = st.dictionaries(
    _ports, st.builds(lambda h, p: AppAddress(host=h, port=p), _hosts, _ports)
)


@given(_app_ports)
def test_app_ports_round_trip(mapping: dict[int, AppAddress]) -> None:
    value = tuple(sorted(mapping.items()))
    assert parse_app_ports(format_app_ports(value)) == value


@given(st.text(max_size=40))
def test_app_ports_parser_never_fails_unexpectedly(text: str) -> None:
    try:
        result = parse_app_ports(text)
    except AppPortsError:
        return
    assert all(1 <= t <= 65535 and 1 <= a.port <= 65535 for t, a in result)
