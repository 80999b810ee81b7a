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
    # HTTPS: "SIMPLE" or "MUTUAL", and the Secret (in the gateway workload's namespace)
    # holding the certificate, key and, for MUTUAL, the client CA
    tls_mode: str = ""
    credential: str = ""

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
    # Made from a Gateway API Gateway (mesh/gatewayapi.py): its proxies are in its own
    # namespace, and its servers are that Gateway's `spec.listeners`
    from_gateway_api: bool = False

    @property
    def servers_field(self) -> str:
        return "spec.listeners" if self.from_gateway_api else "spec.servers"

    @property
    def key(self) -> str:
        """``namespace/name``: how VirtualServices name it once qualified."""
        return f"{self.namespace}/{self.name}"

    def selects(self, labels: Labels, namespace: str = "") -> bool:
        if self.from_gateway_api and namespace != self.namespace:
            return False
        return bool(self.selector) and selector_matches(self.selector, labels)


def gateway_key(reference: str, vs_namespace: str) -> str:
    """A VirtualService's `gateways` entry as ``namespace/name`` (short: its namespace)."""
    return reference if "/" in reference else f"{vs_namespace}/{reference}"


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsCredential:
    """A Secret a gateway server names in `credentialName` (Istio's layouts): a
    `kubernetes.io/tls` or generic Secret with `tls.crt`/`tls.key` (or `cert`/`key`)
    and optionally `ca.crt` (`cacert`); a Secret holding only the CA is named
    `<credentialName>-cacert`. PEM text, checked by the converter."""

    ref: SourceRef
    name: str
    namespace: str
    cert_chain: str = ""
    private_key: str = field(default="", repr=False)
    ca_cert: str = ""
