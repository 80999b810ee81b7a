"""The AuthorizationPolicies of one workload port -> Envoy RBAC filters, in order.

Order and actions as Istio (istio/istio pilot/pkg/security/authz/builder/builder.go,
`build`): AUDIT (Envoy action LOG), then DENY, then ALLOW, one RBAC filter
each, only for the actions some policy uses. So a DENY that matches wins
over any ALLOW; with no ALLOW policy every request not denied passes; with
one, a request must match one of its rules.

- A policy without rules: ALLOW allows nothing; DENY and AUDIT never match
  (Istio's explicit "match never" policy, kept so the filter is visible).
- CUSTOM: the policies whose provider the port can use (rbac.py decides)
  come first, as the *shadow* rules of an RBAC filter that only marks the
  requests to send to the external authorizer (translators/extauthz.py);
  the others' rules are enforced as DENY, as Istio does when a provider is
  missing or cannot be used.
- `istio.io/dry-run: "true"`: the policy goes to `shadow_rules` (evaluated,
  counted, logged; not enforced).
- A TCP port gets network RBAC filters; rules with HTTP-only conditions
  follow `generate.py` (dropped from ALLOW, narrowed in DENY/AUDIT), and
  each such case is reported.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from envoy.config.rbac.v3 import rbac_pb2

from legation.model import Diagnostic, Severity
from legation.model.security import AuthorizationPolicy, AuthzAction, MeshSecurity
from legation.translators import names
from legation.translators.authz.generate import Context, rule_policy
from legation.translators.extauthz import POLICY_PREFIX

# Istio's explicit "never matches" policy (builder.go, rbacPolicyMatchNever).
MATCH_NEVER = rbac_pb2.Policy(
    permissions=[rbac_pb2.Permission(not_rule=rbac_pb2.Permission(any=True))],
    principals=[rbac_pb2.Principal(not_id=rbac_pb2.Principal(any=True))],
)

# (Envoy action, the policy actions it enforces), in filter order.
_ORDER = (
    (rbac_pb2.RBAC.LOG, (AuthzAction.AUDIT,)),
    (rbac_pb2.RBAC.DENY, (AuthzAction.CUSTOM, AuthzAction.DENY)),
    (rbac_pb2.RBAC.ALLOW, (AuthzAction.ALLOW,)),
)


@dataclass(slots=True, kw_only=True)
class BuiltRbac:
    """The RBAC configuration of one action: enforced rules and dry-run (shadow) rules."""

    action: int  # rbac_pb2.RBAC.Action
    rules: rbac_pb2.RBAC | None = None
    shadow_rules: rbac_pb2.RBAC | None = None


@dataclass(slots=True, kw_only=True)
class Built:
    configs: list[BuiltRbac] = field(default_factory=list)  # in filter order
    # CUSTOM policies sent to the external authorizer: shadow rules that mark requests
    custom: rbac_pb2.RBAC | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)


def build(
    policies: Iterable[AuthorizationPolicy],
    *,
    tcp: bool,
    port: int,
    security: MeshSecurity,
    issuers: tuple[str, ...] = (),
    custom: Iterable[AuthorizationPolicy] = (),
) -> Built:
    """RBAC configurations for one workload port's filter chain (module docstring).
    `issuers`: whose JWTs the workload validates; `custom`: the CUSTOM policies that go
    to the external authorizer (CUSTOM ones in `policies` are enforced as DENY)."""
    out = Built()
    for policy in custom:
        if out.custom is None:
            out.custom = rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW)
        for name, generated in _policies(policy, tcp, port, security, issuers,
                                         out.diagnostics):
            out.custom.policies[POLICY_PREFIX + name].CopyFrom(generated)
    chosen = list(policies)
    for action, kinds in _ORDER:
        group = [p for p in chosen if p.action in kinds]
        if not group:
            continue
        built = BuiltRbac(action=action)
        for policy in group:
            target = _target(built, policy.dry_run)
            for name, generated in _policies(policy, tcp, port, security, issuers,
                                             out.diagnostics):
                target.policies[name].CopyFrom(generated)
        out.configs.append(built)
    return out


def _target(built: BuiltRbac, dry_run: bool) -> rbac_pb2.RBAC:
    if dry_run:
        if built.shadow_rules is None:
            built.shadow_rules = rbac_pb2.RBAC(action=built.action)  # type: ignore[arg-type]
        return built.shadow_rules
    if built.rules is None:
        built.rules = rbac_pb2.RBAC(action=built.action)  # type: ignore[arg-type]
    return built.rules


def _policies(
    policy: AuthorizationPolicy,
    tcp: bool,
    port: int,
    security: MeshSecurity,
    issuers: tuple[str, ...],
    diagnostics: list[Diagnostic],
) -> list[tuple[str, rbac_pb2.Policy]]:
    if not policy.rules:
        return [(names.rbac_policy(policy.namespace, policy.name, 0), MATCH_NEVER)]
    ctx = Context(
        tcp=tcp,
        strict=policy.action is AuthzAction.ALLOW,  # CUSTOM: widened, checks more
        security=security,
        namespace=policy.namespace,
        issuers=issuers,
    )
    out = []
    for index, rule in enumerate(policy.rules):
        generated, dropped = rule_policy(rule, ctx)
        reported = sorted({u.reason for u in dropped if u.http_only})
        if reported:
            diagnostics.append(_http_only(policy, rule.field, reported, port, generated))
        if generated is not None:
            out.append((names.rbac_policy(policy.namespace, policy.name, index), generated))
    return out


def _http_only(
    policy: AuthorizationPolicy,
    where: str,
    reasons: list[str],
    port: int,
    generated: rbac_pb2.Policy | None,
) -> Diagnostic:
    if generated is None:
        effect = (
            "so on this TCP port the rule never matches and allows nothing (Istio "
            "ignores such a rule in an ALLOW policy)"
        )
    else:
        effect = (
            "so on this TCP port those conditions are left out and the rule matches "
            "more connections (Istio widens DENY and AUDIT rules the same way)"
        )
    # port 0: a transparent sidecar's passthrough (translators/transparent.py)
    target = f"TCP port {port}" if port else "TCP connections to ports no service declares"
    return Diagnostic(
        ref=policy.ref,
        field=where,
        code="authorizationpolicy.http-only-on-tcp",
        message=(
            f"the rule applies to {target}, but {' and '.join(reasons)}: a TCP connection "
            f"carries no HTTP request, {effect}. Restrict the policy to HTTP ports (to.ports) "
            "or split the rule."
        ),
        severity=Severity.WARNING,
        line=policy.line_of(where),
    )
