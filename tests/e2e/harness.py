"""End-to-end test harness, one import for the tests: real Envoy processes and
demo apps (processes.py), Envoy bootstraps (bootstraps.py) and `MeshLab`
(mesh_lab.py). The fixtures that hand these out are in conftest.py."""

from __future__ import annotations

from legation.demo.app import DemoApp, Target
from legation.demo.controlplane import ControlPlane, ControlPlaneError
from legation.demo.envoy import Envoy, EnvoyError
from legation.demo.http import HttpResponse, request

from .bootstraps import sidecar_bootstrap, static_http_bootstrap
from .mesh_lab import (
    ADMIN_PORT,
    OUTBOUND_PORT,
    XDS_PORT,
    MeshLab,
    MeshWorkload,
    service_yaml,
    workload_entry_yaml,
)
from .processes import AppFleet, EnvoyFleet, Loopback, eventually, free_port

__all__ = [
    "ADMIN_PORT",
    "OUTBOUND_PORT",
    "XDS_PORT",
    "AppFleet",
    "ControlPlane",
    "ControlPlaneError",
    "DemoApp",
    "Envoy",
    "EnvoyError",
    "EnvoyFleet",
    "HttpResponse",
    "Loopback",
    "MeshLab",
    "MeshWorkload",
    "Target",
    "eventually",
    "free_port",
    "request",
    "service_yaml",
    "sidecar_bootstrap",
    "static_http_bootstrap",
    "workload_entry_yaml",
]
