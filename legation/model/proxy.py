"""Proxy: a connected Envoy, resolved to the workload its node id names."""

from __future__ import annotations

from dataclasses import dataclass

from legation.model.gateway import Gateway
from legation.model.mesh import InterceptionMode, Workload

__all__ = ["InterceptionMode", "Proxy"]  # InterceptionMode lives in mesh.py (Workload uses it)


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxy:
    node_id: str
    workload: Workload
    mode: InterceptionMode = InterceptionMode.EXPLICIT
    # Outbound virtual hosts and clusters on first use: the workload asked for it
    # (sidecar.legation.io/on-demand), and the proxy is on delta ADS in explicit mode.
    on_demand: bool = False
    # The Istio Gateways whose selector picks the workload: it is a gateway proxy
    gateways: tuple[Gateway, ...] = ()
    proxyless: bool = False  # a gRPC client's own xDS client, not an Envoy

    @property
    def namespace(self) -> str:
        return self.workload.namespace
