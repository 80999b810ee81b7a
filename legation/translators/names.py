"""Every Envoy resource name Legation emits or reads, each with its parser.

Istio's formats are reused so that users' tooling and habits carry over
(DESIGN.md §4):

- clusters: ``outbound|<port>|<subset>|<fqdn>`` and ``inbound|<port>||``
- listeners (explicit mode): ``<address>_<port>``, e.g. ``10.0.0.5_15001``
- the outbound RouteConfiguration: ``http_proxy`` (Istio's name for the route
  of its HTTP_PROXY listener)
- outbound virtual hosts ``<fqdn>:<port>``; the inbound one ``inbound|http|<port>``
- node ids: ``<workload>.<namespace>``, or Istio's
  ``sidecar~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local``
- transparent mode (Istio's layout): listeners ``virtualOutbound`` (15001)
  and ``virtualInbound`` (15006); per-port RouteConfigurations named by the
  port (``9080``); outbound filter chains named like Istio's per-port
  listeners (``0.0.0.0_9080``, ``<clusterIP>_<port>``), inbound ones
  ``inbound-9080`` / ``inbound-mtls-9080`` / ``inbound-plaintext-9080``; the
  clusters ``PassthroughCluster``, ``InboundPassthroughCluster`` and
  ``BlackHoleCluster`` and the catch-all virtual host ``allow_any``

Stat prefixes (``outbound_<address>_<port>``, ``inbound_<address>_<port>``)
are spelled here too; they name no resource, so they have no parser.
Formatters never fail; parsers return None for a name that is not theirs.
Nothing else in the translators spells a name out by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

OUTBOUND_PROXY_PORT = 15001  # the explicit-mode HTTP proxy listener (Istio's outbound port)
INBOUND_CAPTURE_PORT = 15006  # transparent mode: where iptables sends inbound traffic
HTTP_PROXY_ROUTE = "http_proxy"
DEFAULT_ROUTE = "default"  # the name of the single route of a virtual host (as Istio)
ISTIO_NODE_TYPES = ("sidecar", "router", "proxyless")
PROXYLESS_NODE_TYPE = "proxyless"  # a gRPC client (translators/proxyless.py)

_MAX_PORT = 65535


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterName:
    """The parts of an Istio-style cluster name."""

    direction: Direction
    port: int
    subset: str = ""
    host: str = ""  # the service FQDN; "" for inbound clusters

    def __str__(self) -> str:
        return f"{self.direction}|{self.port}|{self.subset}|{self.host}"


def _port(text: str) -> int | None:
    """A decimal port 1..65535 in canonical form (no sign, no leading zero)."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        return None
    value = int(text)
    return value if 0 < value <= _MAX_PORT else None


# -- clusters ----------------------------------------------------------------


def outbound_cluster(fqdn: str, port: int, subset: str = "") -> str:
    return str(ClusterName(direction=Direction.OUTBOUND, port=port, subset=subset, host=fqdn))


def inbound_cluster(port: int) -> str:
    return str(ClusterName(direction=Direction.INBOUND, port=port))


def parse_cluster(name: str) -> ClusterName | None:
    parts = name.split("|")
    if len(parts) != 4:
        return None
    direction, port_text, subset, host = parts
    port = _port(port_text)
    if port is None:
        return None
    if direction == Direction.OUTBOUND and host:
        return ClusterName(direction=Direction.OUTBOUND, port=port, subset=subset, host=host)
    if direction == Direction.INBOUND and not subset and not host:
        return ClusterName(direction=Direction.INBOUND, port=port)
    return None


# -- listeners -----------------------------------------------------------------


def listener_name(address: str, port: int) -> str:
    """Explicit mode binds real ports, so a listener is named by what it binds."""
    return f"{address}_{port}"


def parse_listener(name: str) -> tuple[str, int] | None:
    address, sep, port_text = name.rpartition("_")
    port = _port(port_text)
    if not sep or not address or port is None:
        return None
    return address, port


def outbound_stat_prefix(address: str, port: int) -> str:
    return f"outbound_{address}_{port}"


def inbound_stat_prefix(address: str, port: int) -> str:
    return f"inbound_{address}_{port}"


# -- virtual hosts ---------------------------------------------------------------


def virtual_host_name(fqdn: str, port: int) -> str:
    return f"{fqdn}:{port}"


def parse_virtual_host(name: str) -> tuple[str, int] | None:
    host, sep, port_text = name.rpartition(":")
    port = _port(port_text)
    if not sep or not host or port is None:
        return None
    return host, port


def vhds_virtual_host(route: str, virtual_host: str) -> str:
    """A virtual host delivered over VHDS: ``<route configuration>/<virtual host>``
    (Envoy docs, "Virtual Host Resource Naming Convention")."""
    return f"{route}/{virtual_host}"


def parse_vhds_virtual_host(name: str) -> tuple[str, str] | None:
    """(route configuration, virtual host) of a VHDS name. Split at the LAST slash: a
    host entry holds none, a route configuration name may."""
    route, sep, host = name.rpartition("/")
    if not sep or not route or not host:
        return None
    return route, host


def inbound_virtual_host(port: int) -> str:
    return f"inbound|http|{port}"


def parse_inbound_virtual_host(name: str) -> int | None:
    prefix = "inbound|http|"
    if not name.startswith(prefix):
        return None
    return _port(name[len(prefix) :])


# -- node ids ------------------------------------------------------------------


def node_id(name: str, namespace: str) -> str:
    """Legation's own node id: ``<workload>.<namespace>``."""
    return f"{name}.{namespace}"


def istio_node_id(
    name: str,
    namespace: str,
    *,
    ip: str,
    node_type: str = "sidecar",
    domain: str = "cluster.local",
) -> str:
    """Istio's ``<type>~<ip>~<pod>.<namespace>~<namespace>.svc.<domain>``."""
    return f"{node_type}~{ip}~{name}.{namespace}~{namespace}.svc.{domain}"


def parse_node_id(text: str) -> tuple[str, str] | None:
    """(workload name, namespace) named by a node id, in either format.

    Workload names may contain dots (Kubernetes object names may), namespace
    names may not (they are DNS labels): so the id splits on its LAST dot.
    """
    if "~" in text:
        parts = text.split("~")
        if len(parts) != 4 or parts[0] not in ISTIO_NODE_TYPES:
            return None
        text = parts[2]
    name, sep, namespace = text.rpartition(".")
    if not sep or not name or not namespace:
        return None
    return name, namespace


# -- secrets, SNI and RBAC policies (security) -------------------------------------

WORKLOAD_SECRET = "default"  # the proxy's own certificate chain and key (Istio's name)
ROOT_SECRET = "ROOTCA"  # the trust bundle, a validation context (Istio's name)


def outbound_sni(fqdn: str, port: int, subset: str = "") -> str:
    """The SNI a sidecar sends to a meshed upstream (Istio's format):
    ``outbound_.<port>_.<subset>_.<fqdn>``."""
    return f"outbound_.{port}_.{subset}_.{fqdn}"


def parse_outbound_sni(sni: str) -> ClusterName | None:
    parts = sni.split("_.", 3)
    if len(parts) != 4 or parts[0] != Direction.OUTBOUND.value or not parts[3]:
        return None
    port = _port(parts[1])
    if port is None:
        return None
    return ClusterName(direction=Direction.OUTBOUND, port=port, subset=parts[2], host=parts[3])


def rbac_policy(namespace: str, name: str, rule: int) -> str:
    """An RBAC policy: one rule of an AuthorizationPolicy (Istio's format):
    ``ns[<namespace>]-policy[<name>]-rule[<index>]``."""
    return f"ns[{namespace}]-policy[{name}]-rule[{rule}]"


def parse_rbac_policy(text: str) -> tuple[str, str, int] | None:
    if not text.startswith("ns[") or not text.endswith("]"):
        return None
    namespace, sep, rest = text[3:].partition("]-policy[")
    name, sep2, index = rest.rpartition("]-rule[")
    if not sep or not sep2 or not namespace or not name:
        return None
    digits = index[:-1]
    if not digits.isascii() or not digits.isdigit() or (len(digits) > 1 and digits[0] == "0"):
        return None
    return namespace, name, int(digits)


# -- transparent mode (Istio's names, istio/istio pilot/pkg/networking/util) --------

VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
PASSTHROUGH_CLUSTER = "PassthroughCluster"  # outbound: to the original destination
INBOUND_PASSTHROUGH_CLUSTER = "InboundPassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"  # no endpoints: connections to it are closed
ALLOW_ANY_VHOST = "allow_any"  # per-port routes: unknown hosts go to PassthroughCluster
BLOCK_ALL_VHOST = "block_all"  # outboundTrafficPolicy REGISTRY_ONLY: unknown hosts get 502
OUTBOUND_CATCHALL_CHAIN = "virtualOutbound-catchall-tcp"
OUTBOUND_BLACKHOLE_CHAIN = "virtualOutbound-blackhole"
INBOUND_BLACKHOLE_CHAIN = "virtualInbound-blackhole"
INBOUND_CATCHALL_CHAIN = "virtualInbound-catchall-tcp"


def gateway_route(port: int) -> str:
    """A gateway's RouteConfiguration for one server port (Istio's ``http.<port>``)."""
    return f"http.{port}"


def gateway_tls_route(port: int, server: str, gateway: str, namespace: str) -> str:
    """The routes of one HTTPS server (its port name, else its index), as Istio names them:
    ``https.<port>.<server>.<gateway>.<namespace>``."""
    return f"https.{port}.{server}.{gateway}.{namespace}"


def credential_secret(name: str) -> str:
    """A `credentialName` Secret over SDS (Istio's ``kubernetes://<name>``)."""
    return f"kubernetes://{name}"


def credential_ca_secret(name: str) -> str:
    return f"kubernetes://{name}-cacert"


def port_route(port: int) -> str:
    """The RouteConfiguration of one outbound HTTP port: the port number, as Istio."""
    return str(port)


def parse_port_route(name: str) -> int | None:
    return _port(name)


def outbound_chain(address: str, port: int) -> str:
    """An outbound filter chain of ``virtualOutbound``: named as Istio names the
    listener it would use for the same traffic (``0.0.0.0_9080``, ``10.96.0.10_5432``)."""
    return listener_name(address, port)


def parse_outbound_chain(name: str) -> tuple[str, int] | None:
    return parse_listener(name)


def inbound_chain(kind: str, port: int) -> str:
    """An inbound filter chain of ``virtualInbound``: ``<kind>-<port>``, where `kind`
    is ``inbound``, ``inbound-mtls`` or ``inbound-plaintext``."""
    return f"{kind}-{port}"


def parse_inbound_chain(name: str) -> tuple[str, int] | None:
    kind, sep, port_text = name.rpartition("-")
    port = _port(port_text)
    if not sep or not (kind == "inbound" or kind.startswith("inbound-")) or port is None:
        return None
    return kind, port


def inbound_catchall_chain(security: str = "") -> str:
    """The passthrough chain of ``virtualInbound``, per transport: `security` is ""
    (plaintext only), ``mtls`` or ``plaintext`` (the PERMISSIVE pair)."""
    return f"{INBOUND_CATCHALL_CHAIN}-{security}" if security else INBOUND_CATCHALL_CHAIN


def parse_inbound_catchall_chain(name: str) -> str | None:
    if name == INBOUND_CATCHALL_CHAIN:
        return ""
    security = name.removeprefix(INBOUND_CATCHALL_CHAIN + "-")
    return security if security != name and security in ("mtls", "plaintext") else None
