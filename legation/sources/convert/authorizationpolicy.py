"""`security.istio.io` AuthorizationPolicy -> `AuthorizationPolicy`, with every per-object check.

Istio's schema (istio/api security/v1beta1/authorization_policy.proto) and
validation (istio/istio pkg/config/validation, ValidateAuthorizationPolicy):
`action` ALLOW (default), DENY, AUDIT or CUSTOM (CUSTOM needs `provider`,
nothing else may have one); `selector` and `targetRef(s)` exclude each
other; every `from` needs a non-empty `source`, every `to` a non-empty
`operation`; every `when` a known `key` and `values` or `notValues`. Values
are checked by what they test (IP blocks, ports) in `authzvalues.py`.

What Legation cannot enforce is converted anyway and reported, the way the
policy then behaves spelled out: targetRef (gateways and waypoints, not
sidecars: not applied). JWT attributes (request principals, claims) are
read from tokens a RequestAuthentication validated (translators/jwt.py);
CUSTOM providers are resolved per workload (translators/rbac.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model.security import (
    Attribute,
    AuthorizationPolicy,
    AuthzAction,
    AuthzRule,
    Condition,
)
from legation.sources.convert import istio
from legation.sources.convert.authzvalues import parse_when_key, values
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta
from legation.sources.convert.peerauthentication import workload_selector
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("selector", "targetRef", "targetRefs", "rules", "action", "provider")
ACTIONS = tuple(a.value for a in AuthzAction)
DRY_RUN_ANNOTATION = "istio.io/dry-run"

# `from.source` fields: (values field, notValues field, attribute)
SOURCE_FIELDS = (
    ("principals", "notPrincipals", Attribute.SOURCE_PRINCIPAL),
    ("requestPrincipals", "notRequestPrincipals", Attribute.REQUEST_PRINCIPAL),
    ("namespaces", "notNamespaces", Attribute.SOURCE_NAMESPACE),
    ("serviceAccounts", "notServiceAccounts", Attribute.SOURCE_SERVICE_ACCOUNT),
    ("ipBlocks", "notIpBlocks", Attribute.SOURCE_IP),
    ("remoteIpBlocks", "notRemoteIpBlocks", Attribute.REMOTE_IP),
)
# `to.operation` fields
OPERATION_FIELDS = (
    ("hosts", "notHosts", Attribute.HOST),
    ("ports", "notPorts", Attribute.DESTINATION_PORT),
    ("methods", "notMethods", Attribute.METHOD),
    ("paths", "notPaths", Attribute.PATH),
)


def convert_authorization_policy(
    ctx: Ctx, meta: Meta, data: Mapping[str, Any]
) -> AuthorizationPolicy | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="an AuthorizationPolicy spec")
    value = istio.enum_value(ctx, spec, "action", "spec", ACTIONS)
    action = AuthzAction(value) if value is not None else AuthzAction.ALLOW
    provider = _provider(ctx, spec, action)
    selector = workload_selector(ctx, spec)
    targets = _target_refs(ctx, spec, bool(selector))
    rules = tuple(
        _rule(ctx, raw, path) for path, raw in ctx.items(spec, "rules", "spec", problem="rule")
    )
    return AuthorizationPolicy(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        action=action,
        selector=selector,
        rules=tuple(r for r in rules if r is not None),
        targets_other_proxies=targets,
        provider=provider,
        dry_run=_dry_run(ctx, meta),
        lines=tuple(sorted((p, n) for p, n in ctx.lines.items() if p.startswith("spec"))),
    )


def _provider(ctx: Ctx, spec: Mapping[str, Any], action: AuthzAction) -> str:
    section = istio.section(ctx, spec, "provider", "spec")
    if section is None:
        if action is AuthzAction.CUSTOM:
            ctx.missing(
                "spec.provider",
                "provider",
                "the extension provider of a CUSTOM policy, e.g. {name: my-authz}",
            )
        return ""
    istio.check_fields(ctx, section, "spec.provider", ("name",), what="a provider")
    name = istio.string(
        ctx,
        section,
        "name",
        "spec.provider",
        required=True,
        expected="the name of an extension provider",
    )
    if action is not AuthzAction.CUSTOM:
        ctx.error(
            "spec.provider",
            "provider-invalid",
            f"a provider is only allowed with action CUSTOM, not {action}; remove it.",
        )
    return name


def _target_refs(ctx: Ctx, spec: Mapping[str, Any], has_selector: bool) -> bool:
    given = [k for k in ("targetRef", "targetRefs") if spec.get(k) is not None]
    if not given:
        return False
    if has_selector:
        ctx.error(
            f"spec.{given[0]}",
            "target-ref-invalid",
            f"{given[0]} and selector exclude each other; keep one of them.",
        )
    ctx.warn(
        f"spec.{given[0]}",
        "target-ref-unsupported",
        f"{given[0]} attaches the policy to gateways or waypoints, which Legation does "
        "not configure; it is not applied to any sidecar.",
    )
    return True


def _dry_run(ctx: Ctx, meta: Meta) -> bool:
    raw = meta.annotations.get(DRY_RUN_ANNOTATION)
    if raw is None:
        return False
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    ctx.warn(
        f"metadata.annotations[{DRY_RUN_ANNOTATION}]",
        "dry-run-invalid",
        f'found {raw!r}; expected "true" or "false". The policy is enforced.',
    )
    return False


def _rule(ctx: Ctx, raw: Any, path: str) -> AuthzRule | None:
    if raw is None:  # `- ` in YAML: an empty rule, which matches everything
        return AuthzRule(field=path)
    rule = ctx.as_mapping(raw, path, problem="rule")
    if rule is None:
        return None
    istio.check_fields(ctx, rule, path, ("from", "to", "when"), what="a rule")
    sources = tuple(
        _conditions(ctx, item, p, "source", SOURCE_FIELDS)
        for p, item in ctx.mapping_items(rule, "from", path, problem="from")
    )
    operations = tuple(
        _conditions(ctx, item, p, "operation", OPERATION_FIELDS)
        for p, item in ctx.mapping_items(rule, "to", path, problem="to")
    )
    when = tuple(
        c
        for p, item in ctx.mapping_items(rule, "when", path, problem="when")
        if (c := _when(ctx, item, p)) is not None
    )
    return AuthzRule(sources=sources, operations=operations, when=when, field=path)


def _conditions(
    ctx: Ctx,
    entry: Mapping[str, Any],
    path: str,
    key: str,
    fields: tuple[tuple[str, str, Attribute], ...],
) -> tuple[Condition, ...]:
    """One `from` (key "source") or `to` (key "operation") entry."""
    entry_name = "from" if key == "source" else "to"
    istio.check_fields(ctx, entry, path, (key,), what=f"a `{entry_name}` entry")
    p = child_path(path, key)
    section = ctx.mapping(
        entry,
        key,
        path,
        problem=key,
        required=True,
        expected=f"a mapping with at least one {key} field",
    )
    names = [f for trio in fields for f in trio[:2]]
    istio.check_fields(ctx, section, p, names, what=f"a {key}")
    out = []
    for values_key, not_key, attribute in fields:
        found = values(ctx, section, values_key, p, attribute)
        not_found = values(ctx, section, not_key, p, attribute)
        if not found and not not_found:
            continue
        where = child_path(p, values_key if found else not_key)
        out.append(Condition(attribute=attribute, values=found, not_values=not_found, field=where))
    if isinstance(entry.get(key), Mapping) and not any(section.get(n) for n in names):
        ctx.error(
            p,
            f"{key}-empty",
            f"the {key} sets no condition; expected at least one of "
            f"{', '.join(n for n in names if not n.startswith('not'))} or their not-forms "
            "(omit the entry to match everything).",
        )
    return tuple(out)


def _when(ctx: Ctx, entry: Mapping[str, Any], path: str) -> Condition | None:
    istio.check_fields(ctx, entry, path, ("key", "values", "notValues"), what="a condition")
    raw_key = istio.string(
        ctx,
        entry,
        "key",
        path,
        required=True,
        expected="an attribute such as source.ip or request.headers[x-user]",
    )
    if not entry.get("values") and not entry.get("notValues"):
        ctx.error(
            path,
            "when-values-missing",
            "the condition has neither values nor notValues; expected at least one.",
        )
    if not raw_key:
        return None
    parsed = parse_when_key(raw_key)
    if isinstance(parsed, str):
        ctx.error(child_path(path, "key"), "when-key-invalid", f"{parsed}.")
        return None
    attribute, name = parsed
    found = values(ctx, entry, "values", path, attribute)
    not_found = values(ctx, entry, "notValues", path, attribute)
    if attribute is Attribute.ENVOY_FILTER:
        ctx.warn(
            child_path(path, "key"),
            "when-key-unsupported",
            f"{raw_key} reads Envoy filter metadata that Legation's sidecars never set; "
            "the condition never matches (and its notValues always do).",
        )
    return Condition(
        attribute=attribute,
        values=found,
        not_values=not_found,
        key=name,
        field=child_path(path, "key"),
    )
