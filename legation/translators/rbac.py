"""AuthorizationPolicy -> the RBAC filters of one inbound port (see `translators/authz/`).

HTTP ports get `envoy.filters.http.rbac` filters before the router; TCP ports
get `envoy.filters.network.rbac` filters before the TCP proxy. Which
policies apply to a workload (root namespace, its namespace, selectors) is
`legation.model.security.authorization_policies_for`. A denied HTTP request
gets Envoy's `403 RBAC: access denied`; a denied TCP connection is closed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from legation.model import Diagnostic, MeshSnapshot, Workload
from legation.model.security import authorization_policies_for
from legation.translators.authz.builder import BuiltRbac, build
from legation.translators.common import pack

HTTP_RBAC_FILTER = "envoy.filters.http.rbac"
NETWORK_RBAC_FILTER = "envoy.filters.network.rbac"
TCP_STAT_PREFIX = "tcp."  # Istio's network RBAC stat prefix (authz/model RBACTCPFilterStatPrefix)
DRY_RUN_STAT_PREFIX = "istio_dry_run_"


@dataclass(slots=True, kw_only=True)
class RbacFilters:
    http: list[http_connection_manager_pb2.HttpFilter] = field(default_factory=list)
    network: list[listener_components_pb2.Filter] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)


def rbac_filters(mesh: MeshSnapshot, workload: Workload, port: int, *, tcp: bool) -> RbacFilters:
    """The RBAC filters of `workload`'s inbound `port` (HTTP unless `tcp`)."""
    policies = authorization_policies_for(
        mesh.authorization_policies,
        root_namespace=mesh.root_namespace,
        namespace=workload.namespace,
        labels=workload.labels,
    )
    built = build(policies, tcp=tcp, port=port, security=mesh.security)
    out = RbacFilters(diagnostics=built.diagnostics)
    for config in built.configs:
        if tcp:
            out.network.append(_network(config))
        else:
            out.http.append(_http(config))
    return out


def _http(config: BuiltRbac) -> http_connection_manager_pb2.HttpFilter:
    rbac = http_rbac_pb2.RBAC()
    if config.rules is not None:
        rbac.rules.CopyFrom(config.rules)
    if config.shadow_rules is not None:
        rbac.shadow_rules.CopyFrom(config.shadow_rules)
        rbac.shadow_rules_stat_prefix = DRY_RUN_STAT_PREFIX
    return http_connection_manager_pb2.HttpFilter(name=HTTP_RBAC_FILTER, typed_config=pack(rbac))


def _network(config: BuiltRbac) -> listener_components_pb2.Filter:
    rbac = network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX)
    if config.rules is not None:
        rbac.rules.CopyFrom(config.rules)
    if config.shadow_rules is not None:
        rbac.shadow_rules.CopyFrom(config.shadow_rules)
        rbac.shadow_rules_stat_prefix = DRY_RUN_STAT_PREFIX
    return listener_components_pb2.Filter(name=NETWORK_RBAC_FILTER, typed_config=pack(rbac))
