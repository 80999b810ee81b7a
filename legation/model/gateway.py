"""Gateway (`networking.istio.io`): the servers a gateway workload listens on.

A workload selected by a Gateway's `selector` (workloads of any namespace:
Istio's default) is a gateway proxy: it gets a listener per server port on
its own address and the routes of the VirtualServices bound to the Gateway
(`VirtualService.gateways`: ``name`` in the VirtualService's namespace,
``ns/name``; istio/api gateway.proto, virtual_service.proto).

Server `hosts` are ``[namespace/]dnsName``: the namespace part limits which
namespaces' VirtualServices may bind (``*`` any, ``.`` the Gateway's own);
the name is an FQDN, ``*``, or ``*.suffix``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from legation.model.diagnostics import SourceRef
from legation.model.labels import Labels, selector_matches
from legation.model.protocol import Protocol


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayHost:
    namespace: str  # a namespace, "*" or "."
    host: str  # an FQDN, "*" or "*.suffix" (lowercase)


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayServer:
    index: int  # position in spec.servers
    port: int
    port_name: str
    protocol: Protocol
    hosts: tuple[GatewayHost, ...]
    https_redirect: bool = False  # tls.httpsRedirect: answer 301 to https

    def admits(self, gateway_namespace: str, vs_namespace: str) -> tuple[str, ...]:
        """The host patterns VirtualServices of `vs_namespace` may bind on this server."""
        out = []
        for h in self.hosts:
            ns = gateway_namespace if h.namespace == "." else h.namespace
            if ns in ("*", vs_namespace):
                out.append(h.host)
        return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True, kw_only=True)
class Gateway:
    ref: SourceRef
    name: str
    namespace: str
    selector: Labels
    servers: tuple[GatewayServer, ...] = ()
    lines: tuple[tuple[str, int], ...] = field(default=(), repr=False)

    @property
    def key(self) -> str:
        """``namespace/name``: how VirtualServices name it once qualified."""
        return f"{self.namespace}/{self.name}"

    def selects(self, labels: Labels) -> bool:
        return bool(self.selector) and selector_matches(self.selector, labels)


def gateway_key(reference: str, vs_namespace: str) -> str:
    """A VirtualService's `gateways` entry as ``namespace/name`` (short: its namespace)."""
    return reference if "/" in reference else f"{vs_namespace}/{reference}"
