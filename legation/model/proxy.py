"""Proxy: a connected Envoy, resolved to the workload its node id names."""

from __future__ import annotations

from dataclasses import dataclass

from legation.model.mesh import InterceptionMode, Workload

__all__ = ["InterceptionMode", "Proxy"]  # InterceptionMode lives in mesh.py (Workload uses it)


@dataclass(frozen=True, slots=True, kw_only=True)
class Proxy:
    node_id: str
    workload: Workload
    mode: InterceptionMode = InterceptionMode.EXPLICIT

    @property
    def namespace(self) -> str:
        return self.workload.namespace
