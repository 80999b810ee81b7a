"""Synthetic meshes as the YAML a user would write, loaded through the real converters.

A mesh is `services` Services spread round-robin over `namespaces`
namespaces; service i selects 2-4 WorkloadEntries (its endpoints, and the
proxies that connect). Every `canary_every`-th service also gets a
DestinationRule with subsets v1/v2 and a VirtualService splitting 90/10, so
subset clusters and weighted routes are part of the cost. One YAML file per
namespace, as in a config directory. Addresses are on 127.0.0.0/8 only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, MeshObject, object_key
from legation.sources.convert import convert_text

PORT = 9080


@dataclass(frozen=True, slots=True, kw_only=True)
class MeshSpec:
    services: int
    namespaces: int
    min_endpoints: int = 2
    max_endpoints: int = 4
    canary_every: int = 10  # 0: no DestinationRules / VirtualServices

    def namespace_of(self, service: int) -> str:
        return f"ns-{service % self.namespaces:03d}"

    def endpoints_of(self, service: int) -> int:
        span = self.max_endpoints - self.min_endpoints + 1
        return self.min_endpoints + service % span

    def canary(self, service: int) -> bool:
        return self.canary_every > 0 and service % self.canary_every == 0

    def workloads(self) -> list[tuple[str, str]]:
        """(namespace, workload name) of every workload, in generation order."""
        return [
            (self.namespace_of(i), workload_name(i, j))
            for i in range(self.services)
            for j in range(self.endpoints_of(i))
        ]

    def node_ids(self) -> list[str]:
        return [f"{name}.{ns}" for ns, name in self.workloads()]


def service_name(i: int) -> str:
    return f"svc-{i:04d}"


def workload_name(i: int, j: int) -> str:
    return f"svc-{i:04d}-{j}"


def address(k: int) -> str:
    """The k-th workload address: 127.10.0.1, 127.10.0.2, ... (loopback only)."""
    return f"127.{10 + k // 64516}.{k // 254 % 254}.{k % 254 + 1}"


def namespace_yaml(name: str) -> str:
    return f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"


def service_yaml(name: str, namespace: str) -> str:
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  selector: {{app: {name}}}\n"
        f"  ports:\n  - {{name: http, port: {PORT}, targetPort: {PORT}}}\n"
    )


def workload_yaml(name: str, namespace: str, *, app: str, version: str, addr: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  address: {addr}\n  labels: {{app: {app}, version: {version}}}\n"
        f"  serviceAccount: {app}\n"
    )


def canary_yaml(name: str, namespace: str) -> str:
    return (
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  host: {name}\n  subsets:\n"
        "  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n"
        "---\n"
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec:\n  hosts: [{name}]\n  http:\n  - route:\n"
        f"    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}\n"
        f"    - {{destination: {{host: {name}, subset: v2}}, weight: 10}}\n"
    )


def mesh_files(spec: MeshSpec) -> dict[str, str]:
    """file name -> YAML text, one file per namespace."""
    docs: dict[str, list[str]] = {
        f"ns-{n:03d}": [namespace_yaml(f"ns-{n:03d}")] for n in range(spec.namespaces)
    }
    k = 0
    for i in range(spec.services):
        ns, svc = spec.namespace_of(i), service_name(i)
        docs[ns].append(service_yaml(svc, ns))
        count = spec.endpoints_of(i)
        for j in range(count):
            version = "v2" if j == count - 1 and count > 1 else "v1"
            docs[ns].append(
                workload_yaml(workload_name(i, j), ns, app=svc, version=version, addr=address(k))
            )
            k += 1
        if spec.canary(i):
            docs[ns].append(canary_yaml(svc, ns))
    return {f"{ns}.yaml": "---\n".join(texts) for ns, texts in docs.items()}


@dataclass(frozen=True, slots=True, kw_only=True)
class Loaded:
    objects: int
    diagnostics: tuple[Diagnostic, ...]
    convert_s: float  # YAML text -> model objects, all files
    yaml_bytes: int


def load(store: MeshStore, files: dict[str, str]) -> Loaded:
    """Convert every file and hand it to the store as the file source would."""
    started = time.perf_counter()
    converted = {name: convert_text(text, file=name) for name, text in files.items()}
    convert_s = time.perf_counter() - started
    diagnostics: list[Diagnostic] = []
    count = 0
    for name, result in converted.items():
        store.replace_source(f"file:{name}", result.objects, result.diagnostics)
        diagnostics.extend(result.diagnostics)
        count += len(result.objects)
    return Loaded(
        objects=count,
        diagnostics=tuple(diagnostics),
        convert_s=convert_s,
        yaml_bytes=sum(len(t.encode()) for t in files.values()),
    )


def objects_of(text: str, *, file: str) -> tuple[MeshObject, ...]:
    """Model objects of a YAML text; raises if the text has any diagnostic (a bug here)."""
    result = convert_text(text, file=file)
    if result.diagnostics or result.broken:
        raise ValueError(f"generated YAML is invalid: {[d.format() for d in result.diagnostics]}")
    return result.objects


# -- changes --------------------------------------------------------------------

_CHANGE_ADDRESSES = 1_000_000  # addresses for added workloads start here (127.25.x.y)


def extra_endpoint_address(index: int) -> str:
    return address(_CHANGE_ADDRESSES + index)


def extra_endpoint_yaml(spec: MeshSpec, *, index: int) -> str:
    """An endpoint-only change: one more WorkloadEntry for service 1 (no proxy of its own).

    Service 1 has no DestinationRule, so exactly one ClusterLoadAssignment changes.
    """
    i = 1 if spec.services > 1 else 0
    return workload_yaml(f"extra-{index}", spec.namespace_of(i), app=service_name(i),
                         version="v1", addr=extra_endpoint_address(index))


def added_service_yaml(spec: MeshSpec, *, index: int) -> str:
    """A cluster-adding change: a new Service in the first namespace with one endpoint."""
    ns, name = spec.namespace_of(0), added_service_name(index)
    return "---\n".join([
        service_yaml(name, ns),
        workload_yaml(f"{name}-0", ns, app=name, version="v1",
                      addr=address(_CHANGE_ADDRESSES + 1000 + index)),
    ])


def added_service_name(index: int) -> str:
    return f"added-{index}"


def extra_endpoint(spec: MeshSpec, *, index: int) -> tuple[MeshObject, ...]:
    return objects_of(extra_endpoint_yaml(spec, index=index), file=f"extra-{index}.yaml")


def added_service(spec: MeshSpec, *, index: int) -> tuple[MeshObject, ...]:
    return objects_of(added_service_yaml(spec, index=index), file=f"added-{index}.yaml")


def key_of(obj: MeshObject) -> tuple[str, str, str]:
    return object_key(obj)
