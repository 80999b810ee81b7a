"""Proxy: a connected Envoy, resolved to the workload its node id names."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from legation.model.mesh import Workload


class InterceptionMode(StrEnum):
    EXPLICIT = "explicit"  # real ports on the workload address; no iptables (DESIGN.md §4)
    TRANSPARENT = "transparent"  # iptables redirection, Istio's 15001/15006 layout


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxy:
    node_id: str
    workload: Workload
    mode: InterceptionMode = InterceptionMode.EXPLICIT

    @property
    def namespace(self) -> str:
        return self.workload.namespace
