"""Sidecar (`networking.istio.io`): which services a proxy may reach, so it is sent only those.

Istio's scoping rules (istio/api networking/v1alpha3/sidecar.proto):

- A Sidecar with a `workloadSelector` applies to the matching workloads of its
  namespace; one without applies to every other workload of its namespace;
  one without in the root namespace is the mesh-wide default. The most
  specific wins; among equals the oldest, here the first by name.
- `egress[].hosts` are `namespace/dnsName`: the namespace part is a name,
  `*` (any), `.` (the proxy's own namespace) or `~` (none); the name part an
  FQDN, `*`, or a `*.suffix` wildcard. A service is visible when a host entry
  covers its namespace and FQDN.
- `outboundTrafficPolicy.mode` overrides the MeshConfig's for its proxies.

`Scope` is what all proxies with the same Sidecar and namespace share: the
pipeline keys shared resources on it, so proxies of equal scope share every
byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from legation.model.diagnostics import SourceRef
from legation.model.hosts import host_matches
from legation.model.labels import Labels, selector_matches
from legation.model.meshconfig import OutboundPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class EgressHost:
    namespace: str  # a namespace, "*", "." or "~"
    host: str  # an FQDN, "*", "*.suffix", or a service's short name


@dataclass(frozen=True, slots=True, kw_only=True)
class Sidecar:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels = ()  # empty: every workload of the namespace
    hosts: tuple[EgressHost, ...] = ()  # the union of every egress listener's hosts
    outbound: OutboundPolicy | None = None  # outboundTrafficPolicy.mode; None: the mesh's


@dataclass(frozen=True, slots=True)
class Scope:
    """What a proxy may see: the egress hosts of its Sidecar, seen from its namespace."""

    namespace: str
    hosts: tuple[EgressHost, ...]
    outbound: OutboundPolicy | None = None  # the Sidecar's outboundTrafficPolicy, if set

    def sees(self, namespace: str, name: str, fqdn: str) -> bool:
        """Whether the service `name` of `namespace` (`fqdn`) is in scope (its own
        exportTo is the caller's to check)."""
        for h in self.hosts:
            ns = self.namespace if h.namespace == "." else h.namespace
            if ns == "~" or (ns != "*" and ns != namespace):
                continue
            short = "." not in h.host and not h.host.startswith("*")
            if (name == h.host) if short else host_matches(h.host, fqdn):
                return True
        return False


def sidecar_for(sidecars: tuple[Sidecar, ...], *, namespace: str, labels: Labels,
                root_namespace: str) -> Sidecar | None:
    """The Sidecar that applies to a workload (module docstring), if any. `sidecars` are
    sorted by (namespace, name)."""
    mine = [s for s in sidecars if s.namespace == namespace]
    for s in mine:
        if s.selector and selector_matches(s.selector, labels):
            return s
    for s in mine:
        if not s.selector:
            return s
    for s in sidecars:
        if s.namespace == root_namespace and not s.selector:
            return s
    return None
