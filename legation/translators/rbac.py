"""AuthorizationPolicy -> the RBAC filters of one inbound port (see `translators/authz/`).

HTTP ports get `envoy.filters.http.rbac` filters before the router; TCP ports
get `envoy.filters.network.rbac` filters before the TCP proxy. Which
policies apply to a workload (root namespace, its namespace, selectors) is
`legation.model.security.authorization_policies_for`. A denied HTTP request
gets Envoy's `403 RBAC: access denied`; a denied TCP connection is closed.

CUSTOM policies (extauthz.py) come first. One provider serves a workload, as
in Istio: the provider of the first CUSTOM policy (by namespace/name) that
MeshConfig defines and the port can use (a TCP port needs a gRPC provider).
Every other CUSTOM policy — another provider, an unknown one, an HTTP one on
a TCP port, a dry-run one — is reported, and its rules deny the requests they
match (Istio's behaviour when a provider cannot be used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2

from legation.model import Diagnostic, MeshSnapshot, Severity, Workload
from legation.model.meshconfig import ExtAuthzProvider
from legation.model.security import AuthorizationPolicy, AuthzAction, authorization_policies_for
from legation.translators import extauthz
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
    clusters: list[cluster_pb2.Cluster] = field(default_factory=list)  # the authorizer's
    diagnostics: list[Diagnostic] = field(default_factory=list)


def rbac_filters(mesh: MeshSnapshot, workload: Workload, port: int, *, tcp: bool,
                 issuers: tuple[str, ...] = ()) -> RbacFilters:
    """The authorization filters of `workload`'s inbound `port` (HTTP unless `tcp`);
    `issuers`: whose JWTs the workload validates (translators/jwt.py)."""
    policies = authorization_policies_for(
        mesh.authorization_policies,
        root_namespace=mesh.root_namespace,
        namespace=workload.namespace,
        labels=workload.labels,
    )
    provider, custom, notes = _custom(mesh, policies, tcp=tcp, port=port)
    rest = [p for p in policies if p not in custom]
    built = build(rest, tcp=tcp, port=port, security=mesh.security, issuers=issuers,
                  custom=custom)
    out = RbacFilters(diagnostics=[*notes, *built.diagnostics])
    if provider is not None and built.custom is not None:
        if tcp:
            out.network += [_network(BuiltRbac(action=built.custom.action,
                                               shadow_rules=built.custom),
                                     prefix=extauthz.STAT_PREFIX),
                            extauthz.network_filter(provider)]
        else:
            out.http += [_http(BuiltRbac(action=built.custom.action, shadow_rules=built.custom),
                               prefix=extauthz.STAT_PREFIX),
                         extauthz.http_filter(provider)]
        out.clusters.append(extauthz.cluster(provider))
    for config in built.configs:
        if tcp:
            out.network.append(_network(config))
        else:
            out.http.append(_http(config))
    return out


def _custom(mesh: MeshSnapshot, policies: tuple[AuthorizationPolicy, ...], *, tcp: bool,
            port: int) -> tuple[ExtAuthzProvider | None, list[AuthorizationPolicy],
                                list[Diagnostic]]:
    """(the provider, the CUSTOM policies it checks, reports of the others: module doc)."""
    chosen: ExtAuthzProvider | None = None
    custom: list[AuthorizationPolicy] = []
    notes: list[Diagnostic] = []
    for policy in (p for p in policies if p.action is AuthzAction.CUSTOM):
        provider = mesh.config.authz_provider(policy.provider)
        if policy.dry_run:
            why = "the istio.io/dry-run annotation is not supported with CUSTOM"
        elif provider is None:
            known = ", ".join(p.name for p in mesh.config.authz_providers) or "none"
            why = (f"MeshConfig defines no envoyExtAuthzHttp or envoyExtAuthzGrpc provider "
                   f"named {policy.provider!r} (defined: {known})")
        elif tcp and not provider.grpc:
            why = (f"port {port} is TCP and provider {provider.name!r} is envoyExtAuthzHttp; "
                   "a TCP connection can only be checked by an envoyExtAuthzGrpc provider")
        elif chosen is not None and provider.name != chosen.name:
            why = (f"the workload already uses provider {chosen.name!r}; one provider per "
                   "workload, as in Istio")
        else:
            chosen = provider
            custom.append(policy)
            continue
        notes.append(Diagnostic(
            ref=policy.ref, field="spec.provider", code="authorizationpolicy.custom-unusable",
            message=(f"{why}: the requests its rules match are denied instead (as Istio "
                     "does when the provider cannot be used)."),
            severity=Severity.WARNING, line=policy.line_of("spec.provider")))
    return chosen, custom, notes


def _http(config: BuiltRbac, prefix: str = DRY_RUN_STAT_PREFIX
          ) -> http_connection_manager_pb2.HttpFilter:
    rbac = http_rbac_pb2.RBAC()
    if config.rules is not None:
        rbac.rules.CopyFrom(config.rules)
    if config.shadow_rules is not None:
        rbac.shadow_rules.CopyFrom(config.shadow_rules)
        rbac.shadow_rules_stat_prefix = prefix
    return http_connection_manager_pb2.HttpFilter(name=HTTP_RBAC_FILTER, typed_config=pack(rbac))


def _network(config: BuiltRbac, prefix: str = DRY_RUN_STAT_PREFIX
             ) -> listener_components_pb2.Filter:
    rbac = network_rbac_pb2.RBAC(stat_prefix=TCP_STAT_PREFIX)
    if config.rules is not None:
        rbac.rules.CopyFrom(config.rules)
    if config.shadow_rules is not None:
        rbac.shadow_rules.CopyFrom(config.shadow_rules)
        rbac.shadow_rules_stat_prefix = prefix
    return listener_components_pb2.Filter(name=NETWORK_RBAC_FILTER, typed_config=pack(rbac))
