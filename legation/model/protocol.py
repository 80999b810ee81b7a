"""Protocol: what a port carries (services, gateway servers)."""

from __future__ import annotations

from enum import StrEnum


class Protocol(StrEnum):
    """Istio's protocol selection: from `appProtocol` or the port name prefix."""

    HTTP = "HTTP"
    HTTP2 = "HTTP2"
    GRPC = "GRPC"
    HTTPS = "HTTPS"
    TLS = "TLS"
    TCP = "TCP"
    UNKNOWN = "UNKNOWN"  # Istio sniffs; in explicit mode we treat it as HTTP

    @property
    def is_http(self) -> bool:
        return self in (Protocol.HTTP, Protocol.HTTP2, Protocol.GRPC, Protocol.UNKNOWN)
