"""Builders of realistic Kubernetes and Istio objects (as the API serves them),
and `cluster()`: a whole small cluster for sync tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

Obj = dict[str, Any]


def _meta(name: str, namespace: str | None = None, labels: Mapping[str, str] | None = None,
          annotations: Mapping[str, str] | None = None) -> Obj:
    meta: Obj = {"name": name}
    if namespace is not None:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = dict(labels)
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": _meta(name, labels={"kubernetes.io/metadata.name": name, **(labels or {})}),
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def node(name: str, *, region: str = "eu-west-1", zone: str = "eu-west-1a") -> Obj:
    labels = {"kubernetes.io/hostname": name, "topology.kubernetes.io/region": region,
              "topology.kubernetes.io/zone": zone}
    return {"apiVersion": "v1", "kind": "Node", "metadata": _meta(name, labels=labels),
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}


def pod(name: str, ns: str, ip: str, *, labels: Mapping[str, str] | None = None,
        service_account: str = "default", node_name: str = "node-0", ready: bool = True,
        port: int = 8080, phase: str = "Running",
        annotations: Mapping[str, str] | None = None) -> Obj:
    status: Obj = {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "hostIP": "192.168.0.10",
    }
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _meta(name, ns, labels, annotations),
        "spec": {
            "serviceAccountName": service_account,
            "nodeName": node_name,
            "containers": [{"name": "app", "image": "example/app:1",
                            "ports": [{"name": "http", "containerPort": port,
                                       "protocol": "TCP"}]}],
        },
        "status": status,
    }


def service(name: str, ns: str, *, selector: Mapping[str, str] | None = None,
            ports: Sequence[tuple[str, int, int | str]] = (("http", 80, 8080),),
            cluster_ip: str = "10.96.0.10") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta(name, ns, {"app": name}),
        "spec": {
            "type": "ClusterIP",
            "clusterIP": cluster_ip,
            "selector": dict(selector or {"app": name}),
            "ports": [{"name": n, "port": p, "targetPort": t, "protocol": "TCP"}
                      for n, p, t in ports],
        },
    }


def endpoint_slice(name: str, ns: str, service_name: str,
                   endpoints: Sequence[tuple[str, str]], *, port: int = 8080,
                   ready: bool = True) -> Obj:
    """`endpoints`: (pod name, pod IP) pairs."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": _meta(name, ns, {"kubernetes.io/service-name": service_name,
                                     "endpointslice.kubernetes.io/managed-by":
                                     "endpointslice-controller.k8s.io"}),
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready, "serving": ready,
                                               "terminating": False},
             "targetRef": {"kind": "Pod", "name": pod_name, "namespace": ns},
             "nodeName": "node-0", "zone": "eu-west-1a"}
            for pod_name, ip in endpoints
        ],
    }


def workload_entry(name: str, ns: str, address: str, *, labels: Mapping[str, str] | None = None,
                   version: str = "v1") -> Obj:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "WorkloadEntry",
            "metadata": _meta(name, ns),
            "spec": {"address": address, "labels": dict(labels or {"app": name}),
                     "serviceAccount": name, "ports": {"http": 8080}}}


def virtual_service(name: str, ns: str, host: str, *, version: str = "v1",
                    timeout: str = "5s") -> Obj:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "VirtualService",
            "metadata": _meta(name, ns),
            "spec": {"hosts": [host],
                     "http": [{"route": [{"destination": {"host": host}}], "timeout": timeout}]}}


def destination_rule(name: str, ns: str, host: str, *, version: str = "v1") -> Obj:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "DestinationRule",
            "metadata": _meta(name, ns),
            "spec": {"host": host, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}


def service_entry(name: str, ns: str, host: str, *, version: str = "v1") -> Obj:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "ServiceEntry",
            "metadata": _meta(name, ns),
            "spec": {"hosts": [host], "location": "MESH_EXTERNAL", "resolution": "DNS",
                     "ports": [{"number": 443, "name": "https", "protocol": "TLS"}]}}


def gateway(name: str, ns: str, *, version: str = "v1") -> Obj:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "Gateway",
            "metadata": _meta(name, ns),
            "spec": {"selector": {"istio": "ingressgateway"},
                     "servers": [{"port": {"number": 8080, "name": "http", "protocol": "HTTP"},
                                  "hosts": ["*"]}]}}


def sidecar(name: str, ns: str, *, version: str = "v1") -> Obj:
    return {"apiVersion": f"networking.istio.io/{version}", "kind": "Sidecar",
            "metadata": _meta(name, ns), "spec": {"egress": [{"hosts": ["./*", "istio-system/*"]}]}}


def envoy_filter(name: str, ns: str, *, app: str) -> Obj:
    """A cluster timeout set with an EnvoyFilter (v1alpha3, its only version)."""
    return {"apiVersion": "networking.istio.io/v1alpha3", "kind": "EnvoyFilter",
            "metadata": _meta(name, ns),
            "spec": {"workloadSelector": {"labels": {"app": app}},
                     "configPatches": [{"applyTo": "CLUSTER",
                                        "match": {"context": "SIDECAR_OUTBOUND"},
                                        "patch": {"operation": "MERGE",
                                                  "value": {"connect_timeout": "3s"}}}]}}


def peer_authentication(name: str, ns: str, *, mode: str = "STRICT", version: str = "v1") -> Obj:
    return {"apiVersion": f"security.istio.io/{version}", "kind": "PeerAuthentication",
            "metadata": _meta(name, ns), "spec": {"mtls": {"mode": mode}}}


def authorization_policy(name: str, ns: str, *, app: str, principal: str,
                         version: str = "v1") -> Obj:
    return {"apiVersion": f"security.istio.io/{version}", "kind": "AuthorizationPolicy",
            "metadata": _meta(name, ns),
            "spec": {"selector": {"matchLabels": {"app": app}}, "action": "ALLOW",
                     "rules": [{"from": [{"source": {"principals": [principal]}}]}]}}


def request_authentication(name: str, ns: str, *, issuer: str, app: str = "",
                           version: str = "v1") -> Obj:
    spec: dict[str, Any] = {"jwtRules": [{"issuer": issuer,
                                          "jwksUri": f"{issuer}/.well-known/jwks.json"}]}
    if app:
        spec["selector"] = {"matchLabels": {"app": app}}
    return {"apiVersion": f"security.istio.io/{version}", "kind": "RequestAuthentication",
            "metadata": _meta(name, ns), "spec": spec}


def config_map(name: str, ns: str, data: Mapping[str, str]) -> Obj:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, ns),
            "data": dict(data)}


def mesh_config(mode: str, ns: str = "istio-system", name: str = "istio") -> Obj:
    """Istio's MeshConfig ConfigMap, as Istio's installer writes it."""
    return config_map(name, ns, {"mesh": f"outboundTrafficPolicy:\n  mode: {mode}\n"})


GW_API = "gateway.networking.k8s.io/v1"


def gateway_class(name: str = "istio", controller: str = "istio.io/gateway-controller") -> Obj:
    return {"apiVersion": GW_API, "kind": "GatewayClass", "metadata": _meta(name),
            "spec": {"controllerName": controller}}


def api_gateway(name: str, ns: str, *, port: int = 8080) -> Obj:
    return {"apiVersion": GW_API, "kind": "Gateway", "metadata": _meta(name, ns),
            "spec": {"gatewayClassName": "istio",
                     "listeners": [{"name": "http", "port": port, "protocol": "HTTP"}]}}


def http_route(name: str, ns: str, *, gateway: str, backend: str, port: int = 80,
               kind: str = "HTTPRoute") -> Obj:
    return {"apiVersion": GW_API, "kind": kind, "metadata": _meta(name, ns),
            "spec": {"parentRefs": [{"name": gateway}],
                     "rules": [{"backendRefs": [{"name": backend, "port": port}]}]}}


def reference_grant(name: str, ns: str, *, from_ns: str) -> Obj:
    return {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": _meta(name, ns),
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                               "namespace": from_ns}],
                     "to": [{"group": "", "kind": "Service"}]}}


def tls_secret(name: str, ns: str, cert: str, key: str) -> Obj:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, ns),
            "type": "kubernetes.io/tls", "stringData": {"tls.crt": cert, "tls.key": key}}


def telemetry(name: str, ns: str) -> Obj:
    return {"apiVersion": "telemetry.istio.io/v1", "kind": "Telemetry",
            "metadata": _meta(name, ns),
            "spec": {"accessLogging": [{"providers": [{"name": "envoy"}]}]}}


def opaque_secret(name: str, ns: str) -> Obj:
    """A Secret that is no TLS credential (read, and skipped with an info)."""
    return {"apiVersion": "v1", "kind": "Secret", "metadata": _meta(name, ns),
            "type": "Opaque", "stringData": {"password": "hunter2"}}


def pod_ip(i: int) -> str:
    return f"10.244.{i // 250}.{i % 250 + 2}"


def cluster(*, namespaces: int = 3, nodes: int = 5, services: int = 30,
            pods: int = 300) -> list[Obj]:
    """A realistic cluster: pods spread over services (one slice each), nodes, namespaces,
    and a few Istio objects per namespace."""
    out: list[Obj] = []
    ns_names = [f"team-{i}" for i in range(namespaces)]
    out += [namespace(n, {"istio-injection": "enabled"}) for n in ns_names]
    out += [node(f"node-{i}", zone=f"eu-west-1{'abc'[i % 3]}") for i in range(nodes)]
    members: dict[int, list[tuple[str, str]]] = {s: [] for s in range(services)}
    for i in range(pods):
        s = i % services
        ns = ns_names[s % namespaces]
        name = f"svc-{s}-{i:04d}"
        out.append(pod(name, ns, pod_ip(i), labels={"app": f"svc-{s}", "version": "v1"},
                       service_account=f"svc-{s}", node_name=f"node-{i % nodes}"))
        members[s].append((name, pod_ip(i)))
    for s in range(services):
        ns = ns_names[s % namespaces]
        out.append(service(f"svc-{s}", ns, cluster_ip=f"10.96.1.{s + 1}"))
        out.append(endpoint_slice(f"svc-{s}-abcde", ns, f"svc-{s}", members[s]))
    out.append(mesh_config("REGISTRY_ONLY"))
    out.append(gateway_class())
    for n in ns_names:
        host = f"svc-0.{n}.svc.cluster.local"
        out.append(virtual_service("reviews", n, host))
        out.append(destination_rule("reviews", n, host))
        out.append(service_entry("external-api", n, "api.example.com"))
        out.append(gateway("ingress", n))
        out.append(sidecar("default", n))
        out.append(envoy_filter("timeouts", n, app="svc-1"))
        out.append(workload_entry("vm-1", n, f"192.168.50.{len(n)}", labels={"app": "vm"}))
        out.append(peer_authentication("default", n))
        out.append(authorization_policy("allow-frontend", n, app="svc-1",
                                        principal=f"cluster.local/ns/{n}/sa/frontend"))
        out.append(request_authentication("jwt", n, issuer="https://idp.example.com"))
        out.append(opaque_secret("app-config", n))
        out.append(telemetry("logs", n))
        out.append(api_gateway("web", n))
        out.append(http_route("web", n, gateway="web", backend="svc-0"))
        out.append(http_route("grpc", n, gateway="web", backend="svc-0", kind="GRPCRoute"))
        out.append(reference_grant("from-team-0", n, from_ns="team-0"))
    return out
