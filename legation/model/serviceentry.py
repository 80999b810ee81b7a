"""What a ServiceEntry adds to a service: how its endpoints are found and where it lives.

Istio's ServiceEntry (istio/api networking/v1alpha3/service_entry.proto)
adds hosts to the mesh's registry. Legation turns each of its hosts into a
`Service` (model/mesh.py `ServiceEntry.services`) named by the host itself,
carrying an `EntryInfo`: the translators then give it clusters, endpoints
and virtual hosts like any other service, with the cluster type its
resolution asks for:

- STATIC: an EDS cluster; the endpoints are the entry's `endpoints` (IP
  addresses) or the workloads its `workloadSelector` picks.
- DNS / DNS_ROUND_ROBIN: Envoy resolves the endpoints' names (or, with no
  endpoints, the host itself): STRICT_DNS / LOGICAL_DNS clusters.
- NONE / DYNAMIC_DNS: no known endpoints: the request goes to the host it
  names, resolved by Envoy's dynamic forward proxy (Istio uses an original
  destination cluster for NONE, which explicit-mode sidecars cannot have: the
  app connects to the proxy, not to the destination).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from legation.model.labels import Labels


class Resolution(StrEnum):
    NONE = "NONE"
    STATIC = "STATIC"
    DNS = "DNS"
    DNS_ROUND_ROBIN = "DNS_ROUND_ROBIN"
    DYNAMIC_DNS = "DYNAMIC_DNS"

    @property
    def by_dns(self) -> bool:
        """Envoy resolves the entry's endpoints (STRICT_DNS / LOGICAL_DNS clusters)."""
        return self in (Resolution.DNS, Resolution.DNS_ROUND_ROBIN)

    @property
    def forwarded(self) -> bool:
        """No endpoints known: the dynamic forward proxy resolves the request's host."""
        return self in (Resolution.NONE, Resolution.DYNAMIC_DNS)


class Location(StrEnum):
    MESH_EXTERNAL = "MESH_EXTERNAL"
    MESH_INTERNAL = "MESH_INTERNAL"


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryEndpoint:
    """One of `spec.endpoints`: shaped like a WorkloadEntry."""

    address: str  # an IP, or (DNS resolution) a name
    ports: tuple[tuple[str, int], ...] = ()  # service port name -> port
    labels: Labels = ()
    locality: tuple[str, str, str] = ("", "", "")  # region, zone, subzone
    weight: int = 0
    service_account: str = ""

    def port_for(self, name: str, default: int) -> int:
        return next((p for n, p in self.ports if n == name), default)


@dataclass(frozen=True, slots=True, kw_only=True)
class EntryInfo:
    """What a Service made from a ServiceEntry host has that a Kubernetes Service has not."""

    resolution: Resolution = Resolution.NONE
    location: Location = Location.MESH_EXTERNAL
    endpoints: tuple[EntryEndpoint, ...] = ()
    addresses: tuple[str, ...] = ()
    subject_alt_names: tuple[str, ...] = ()

    @property
    def external(self) -> bool:
        return self.location is Location.MESH_EXTERNAL
