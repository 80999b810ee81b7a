"""Istio protocol selection for a Service port.

Istio documents ("Traffic Management > Protocol Selection",
https://istio.io/latest/docs/ops/configuration/traffic-management/protocol-selection/):
a port's protocol is explicit when `appProtocol` is set, which takes precedence,
or when the port name is `<protocol>` or `<protocol>-<suffix>`. Supported:
http, http2, https, tcp, tls, grpc, grpc-web, mongo, mysql, redis, udp.
gRPC and gRPC-Web are "the same as http2" for a sidecar; mongo, mysql and
redis are opaque TCP unless Istio's experimental filters are enabled (they
are not here). Kubernetes' own appProtocol values `kubernetes.io/h2c`,
`kubernetes.io/ws` and `kubernetes.io/wss` are honoured too. Anything else is
`Protocol.UNKNOWN` (Istio would sniff; see `Protocol`).
"""

from __future__ import annotations

from types import MappingProxyType

from legation.model import Protocol

_BY_NAME = MappingProxyType(
    {
        "http": Protocol.HTTP,
        "http2": Protocol.HTTP2,
        "https": Protocol.HTTPS,
        "tcp": Protocol.TCP,
        "tls": Protocol.TLS,
        "grpc": Protocol.GRPC,
        "grpc-web": Protocol.GRPC,
        "mongo": Protocol.TCP,
        "mysql": Protocol.TCP,
        "redis": Protocol.TCP,
        # Kubernetes-defined appProtocol names (Service API reference).
        "kubernetes.io/h2c": Protocol.HTTP2,
        "kubernetes.io/ws": Protocol.HTTP,
        "kubernetes.io/wss": Protocol.HTTPS,
    }
)


def protocol_of(name: str | None) -> Protocol | None:
    """The protocol a port name or appProtocol value selects, or None when it selects none."""
    if not name:
        return None
    lowered = name.lower()
    exact = _BY_NAME.get(lowered)
    if exact is not None:
        return exact
    if lowered.startswith("grpc-web-"):  # must win over the plain `grpc-` prefix
        return Protocol.GRPC
    prefix, dash, _ = lowered.partition("-")
    return _BY_NAME.get(prefix) if dash and "/" not in prefix else None


def select_protocol(*, port_name: str, app_protocol: str = "") -> Protocol:
    """`appProtocol` first, then the port name prefix, else UNKNOWN.

    An `appProtocol` Istio does not recognise (e.g. `example.com/custom`) does
    not select a protocol, so the port name is consulted next.
    """
    return protocol_of(app_protocol) or protocol_of(port_name) or Protocol.UNKNOWN
