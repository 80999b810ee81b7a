"""Istio ServiceEntry: conversion, Istio's validation rules, and the services it adds."""

from __future__ import annotations

import pytest
from sources_builders import convert, marked_line, only

from legation.mesh.store import MeshStore
from legation.model import (
    EntryEndpoint,
    Location,
    Protocol,
    Resolution,
    ServiceEntry,
    Severity,
    Workload,
)
from legation.sources.convert import convert_text

HEAD = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
        "metadata: {name: ext, namespace: shop}\nspec:\n")


def entry(body: str) -> ServiceEntry:
    se = only(convert(HEAD + body))
    assert isinstance(se, ServiceEntry)
    return se


def test_defaults_ports_and_endpoints() -> None:
    se = entry("""\
  hosts: [API.Example.com, "*.cdn.example.com"]
  ports:
  - {number: 443, name: https, protocol: https, targetPort: 8443}
  - {number: 8080, name: web}
  endpoints:
  - {address: db.internal, ports: {https: 9443}, labels: {v: one}, locality: eu/west/a,
     weight: 3, serviceAccount: api}
  resolution: DNS
""")
    assert se.hosts == ("api.example.com", "*.cdn.example.com")
    assert [(p.name, p.port, p.target_port, p.protocol) for p in se.ports] == [
        ("https", 443, 8443, Protocol.HTTPS), ("web", 8080, 8080, Protocol.UNKNOWN)]
    assert se.info.resolution is Resolution.DNS and se.info.location is Location.MESH_EXTERNAL
    assert se.info.endpoints == (EntryEndpoint(
        address="db.internal", ports=(("https", 9443),), labels=(("v", "one"),),
        locality=("eu", "west", "a"), weight=3, service_account="api"),)
    a, b = se.services()
    assert (a.name, a.fqdn("cluster.local"), a.namespace) == (
        "api.example.com", "api.example.com", "shop")
    assert b.fqdn() == "*.cdn.example.com" and not a.uses_eds


def test_resolution_none_and_external_by_default() -> None:
    se = entry("  hosts: [a.example.com]\n  ports: [{number: 80, name: http}]\n"
               "  addresses: [240.0.0.1, 10.0.0.0/16]\n")
    assert (se.info.resolution, se.info.location) == (Resolution.NONE, Location.MESH_EXTERNAL)
    (svc,) = se.services()
    assert svc.cluster_ip == "240.0.0.1" and svc.entry is se.info
    assert se.info.addresses == ("240.0.0.1", "10.0.0.0/16")


@pytest.mark.parametrize(("body", "code", "severity"), [
    ('  hosts: ["*"]  # <-\n', "serviceentry.host-invalid", Severity.ERROR),
    ("  hosts: [a.com]\n  endpoints:  # <-\n  - {address: 1.2.3.4}\n",
     "serviceentry.endpoints-with-none", Severity.ERROR),
    ("  hosts: [a.com]\n  resolution: DNS_ROUND_ROBIN\n  endpoints:  # <-\n"
     "  - {address: a.net}\n  - {address: b.net}\n",
     "serviceentry.endpoints-round-robin", Severity.ERROR),
    ("  hosts: [a.com]\n  resolution: DNS\n  addresses:\n  - 10.0.0.0/8  # <-\n",
     "serviceentry.address-cidr", Severity.ERROR),
    ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints:\n  - address: db.net  # <-\n",
     "serviceentry.endpoint-address-invalid", Severity.ERROR),
    ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4}]\n"
     "  workloadSelector:  # <-\n    labels: {app: db}\n",
     "serviceentry.selector-and-endpoints", Severity.ERROR),
    ("  hosts: [a.com]\n  resolution: STATIC\n  ports: [{number: 80, name: http}]\n"
     "  endpoints:\n  - address: 1.2.3.4\n    ports:\n      grpc: 81  # <-\n",
     "serviceentry.endpoint-port-unknown", Severity.ERROR),
    ('  hosts:\n  - "*.a.com"  # <-\n  resolution: DNS\n', "serviceentry.dns-wildcard",
     Severity.ERROR),
    ("  hosts: [a.com]\n  ports:\n  - {number: 80, name: http}\n"
     "  - {number: 80, name: web}  # <-\n", "serviceentry.port-number-duplicate",
     Severity.ERROR),
    ("  hosts: [a.com]\n  ports:\n  - {number: 80, name: http, protocol: SMTP}  # <-\n",
     "serviceentry.protocol-invalid", Severity.ERROR),
    ("  hosts: [a.com]\n  resolution: dns  # <-\n", "serviceentry.resolution-invalid",
     Severity.ERROR),
    ("  hosts: [a.com]\n  endpoint: []  # <-\n", "serviceentry.field-unknown", Severity.ERROR),
    ("  hosts: [a.com]\n  ports:\n  - {number: 53, name: dns, protocol: UDP}  # <-\n",
     "serviceentry.protocol-unsupported", Severity.WARNING),
    ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints:\n  - address: 1.2.3.4\n"
     "    network: east  # <-\n", "serviceentry.field-not-applied", Severity.WARNING),
    ("  hosts: [a.com]\n  resolution: STATIC\n  endpoints:\n"
     "  - address: unix:///run/db.sock  # <-\n", "serviceentry.endpoint-unix-unsupported",
     Severity.WARNING),
], ids=["star", "none-endpoints", "round-robin-two", "cidr-dns", "static-name", "both",
        "endpoint-port", "dns-wildcard", "port-twice", "protocol", "resolution", "unknown",
        "udp", "network", "unix"])
def test_what_istio_rejects_is_said(body: str, code: str, severity: Severity) -> None:
    text = HEAD + body
    result = convert(text)
    found = [d for d in result.diagnostics if d.code == code]
    assert found, [d.format() for d in result.diagnostics]
    assert (found[0].severity, found[0].line) == (severity, marked_line(text))
    assert bool(result.objects) is (severity is not Severity.ERROR)


def test_missing_hosts() -> None:
    result = convert(HEAD + "  ports: [{number: 80, name: http}]\n")
    assert [d.code for d in result.diagnostics] == ["serviceentry.hosts-missing"]
    assert not result.objects and result.failed_keys == (("ServiceEntry", "shop", "ext"),)


VM = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm, namespace: shop}
spec: {address: 10.0.0.7, labels: {app: db, security.istio.io/tlsMode: istio},
       ports: {tcp: 15432}}
"""


def _mesh(text: str) -> MeshStore:
    store = MeshStore()
    result = convert_text(text, file="m.yaml")
    assert not [d for d in result.diagnostics if d.severity is Severity.ERROR]
    store.replace_source("files", result.objects)
    return store


@pytest.mark.parametrize(("location", "meshed"), [("MESH_INTERNAL", True),
                                                  ("MESH_EXTERNAL", False)])
def test_workload_selector_endpoints_and_mtls_only_inside(location: str, meshed: bool) -> None:
    store = _mesh(VM + "---\n" + HEAD + f"""\
  hosts: [db.internal]
  location: {location}
  resolution: STATIC
  ports: [{{number: 5432, name: tcp, protocol: TCP}}]
  workloadSelector: {{labels: {{app: db}}}}
""")
    mesh = store.snapshot()
    (svc,) = [s for s in mesh.services if s.entry is not None]
    (vm,) = [w for w in mesh.workloads if isinstance(w, Workload)]
    assert mesh.services_selecting(vm) == (svc,)
    (ep,) = mesh.endpoints(svc, svc.ports[0])
    assert (ep.address, ep.port, ep.workload, ep.has_sidecar) == (
        "10.0.0.7", 15432, "shop/vm", meshed)


def test_an_edited_entry_gets_fresh_endpoints() -> None:
    def text(address: str) -> str:
        return HEAD + ("  hosts: [pay.example.com]\n  resolution: STATIC\n"
                       "  ports: [{number: 80, name: http}]\n"
                       f"  endpoints: [{{address: {address}}}]\n")

    store = _mesh(text("10.1.0.1"))
    mesh = store.snapshot()
    (svc,) = mesh.services
    assert [e.address for e in mesh.endpoints(svc, svc.ports[0])] == ["10.1.0.1"]
    store.replace_source("files", convert_text(text("10.1.0.2"), file="m.yaml").objects)
    mesh = store.snapshot()
    (svc,) = mesh.services
    assert [e.address for e in mesh.endpoints(svc, svc.ports[0])] == ["10.1.0.2"]
