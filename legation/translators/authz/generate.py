"""One AuthorizationPolicy rule -> one Envoy RBAC `Policy` (Istio's authz "model").

Shape (istio/istio pilot/pkg/security/authz/model/model.go): a rule's
`from` entries become the policy's principals (ORed), each the AND of its
conditions plus the `when` conditions about the peer; its `to` entries the
permissions (ORed), each the AND of its conditions plus the `when`
conditions about the request. A missing `from` or `to` is one entry with
only the `when` conditions; an empty AND matches anything. A condition is
`OR(values)` and `NOT(OR(notValues))`, each only when given.

A value Envoy cannot be given for this filter (an HTTP-only attribute on a
TCP port, a path template) is an `Unsupported`. Istio's rule for it
(model.go, `checkError`): in an ALLOW policy the whole rule is dropped (a
smaller allow: it can only allow less); in DENY and AUDIT only that value
is dropped (a wider deny: it can only deny more).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from envoy.config.rbac.v3 import rbac_pb2
from envoy.type.matcher.v3 import metadata_pb2, string_pb2

from legation.model.security import Attribute, AuthzRule, Condition, MeshSecurity
from legation.translators.authz import matcher

Permission = rbac_pb2.Permission
Principal = rbac_pb2.Principal
StringMatcher = string_pb2.StringMatcher

SPIFFE_PREFIX = "spiffe://"
LEGACY_TRUST_DOMAIN = "cluster.local"  # Istio treats it as an alias of the mesh's own

T = TypeVar("T", rbac_pb2.Principal, rbac_pb2.Permission)


class Unsupported(Exception):
    """A value this filter cannot test; `reason` says why (for diagnostics)."""

    def __init__(self, reason: str, *, http_only: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_only = http_only


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """What generating one rule depends on besides the rule."""

    tcp: bool  # for a network (TCP) filter: HTTP-only attributes are Unsupported
    strict: bool  # ALLOW: an Unsupported value drops the rule; else only the value
    security: MeshSecurity
    namespace: str  # of the policy: the default namespace of `serviceAccounts`
    issuers: tuple[str, ...] = ()  # whose tokens the workload validates (RequestAuthentication)


def rule_policy(rule: AuthzRule, ctx: Context) -> tuple[rbac_pb2.Policy | None, list[Unsupported]]:
    """The RBAC policy of `rule`, or None when ALLOW semantics drop it; and what was left out."""
    dropped: list[Unsupported] = []
    try:
        when_peer = [c for c in rule.when if c.attribute.about_peer]
        when_request = [c for c in rule.when if not c.attribute.about_peer]
        principals = [
            _and_principal([*source, *when_peer], ctx, dropped) for source in rule.sources or ((),)
        ]
        permissions = [
            _and_permission([*operation, *when_request], ctx, dropped)
            for operation in rule.operations or ((),)
        ]
    except Unsupported as e:
        return None, [e]
    return rbac_pb2.Policy(permissions=permissions, principals=principals), dropped


def _and_principal(
    conditions: list[Condition], ctx: Context, dropped: list[Unsupported]
) -> rbac_pb2.Principal:
    ids: list[rbac_pb2.Principal] = []
    for c in conditions:
        values = _each(c, c.values, _principal, ctx, dropped)
        not_values = _each(c, c.not_values, _principal, ctx, dropped)
        if values:
            ids.append(Principal(or_ids=Principal.Set(ids=values)))
        if not_values:
            ids.append(Principal(not_id=Principal(or_ids=Principal.Set(ids=not_values))))
    return Principal(and_ids=Principal.Set(ids=ids or [rbac_pb2.Principal(any=True)]))


def _and_permission(
    conditions: list[Condition], ctx: Context, dropped: list[Unsupported]
) -> rbac_pb2.Permission:
    rules: list[rbac_pb2.Permission] = []
    for c in conditions:
        values = _each(c, c.values, _permission, ctx, dropped)
        not_values = _each(c, c.not_values, _permission, ctx, dropped)
        if values:
            rules.append(Permission(or_rules=Permission.Set(rules=values)))
        if not_values:
            rules.append(Permission(not_rule=Permission(or_rules=Permission.Set(rules=not_values))))
    return Permission(and_rules=Permission.Set(rules=rules or [rbac_pb2.Permission(any=True)]))


def _each(
    c: Condition,
    values: tuple[str, ...],
    make: Callable[[Condition, str, Context], list[T]],
    ctx: Context,
    dropped: list[Unsupported],
) -> list[T]:
    out: list[T] = []
    for value in values:
        try:
            out.extend(make(c, value, ctx))
        except Unsupported as e:
            if ctx.strict:
                raise
            dropped.append(e)
    return out


def _http_only(c: Condition, ctx: Context) -> None:
    if ctx.tcp and c.attribute.http_only:
        raise Unsupported(f"{c.attribute.value} is HTTP-only", http_only=True)


def _principal(c: Condition, value: str, ctx: Context) -> list[rbac_pb2.Principal]:
    _http_only(c, ctx)
    a = c.attribute
    if a is Attribute.SOURCE_PRINCIPAL:
        return [_authenticated(matcher.string(v, SPIFFE_PREFIX)) for v in _aliases(value, ctx)]
    if a is Attribute.SOURCE_NAMESPACE:
        return [_authenticated(matcher.namespace_regex(value))]
    if a is Attribute.SOURCE_SERVICE_ACCOUNT:
        ns, _, sa = value.rpartition("/")
        uri = ctx.security.spiffe_uri(ns or ctx.namespace, sa)
        return [_authenticated(matcher.string(uri))]
    if a is Attribute.SOURCE_IP:
        return [rbac_pb2.Principal(direct_remote_ip=matcher.cidr(value))]
    if a is Attribute.REMOTE_IP:
        return [rbac_pb2.Principal(remote_ip=matcher.cidr(value))]
    if a is Attribute.REQUEST_HEADERS:
        return [rbac_pb2.Principal(header=matcher.header(c.key, value))]
    return _jwt(c, value, ctx)


def _jwt(c: Condition, value: str, ctx: Context) -> list[rbac_pb2.Principal]:
    """A JWT attribute, read from the payload of a validated token: the jwt_authn filter
    writes it under its issuer (translators/jwt.py), so each of the workload's issuers is
    one alternative. No issuer: nothing can match (a never-matching principal)."""
    a = c.attribute
    found: list[metadata_pb2.MetadataMatcher] = []
    for issuer in ctx.issuers:
        if a is Attribute.REQUEST_PRINCIPAL:
            found += _principal_of(issuer, value)
        elif a is Attribute.REQUEST_AUDIENCES:
            found += matcher.claim(issuer, ["aud"], value)
        elif a is Attribute.REQUEST_PRESENTER:
            found += matcher.claim(issuer, ["azp"], value)
        else:  # REQUEST_CLAIMS: request.auth.claims[a][b] -> keys a, b
            found += matcher.claim(issuer, c.key.split("]["), value)
    if not found:
        return [Principal(not_id=Principal(any=True))]
    return [Principal(sourced_metadata=rbac_pb2.SourcedMetadata(metadata_matcher=m))
            for m in found]


def _principal_of(issuer: str, value: str) -> list[metadata_pb2.MetadataMatcher]:
    """`<iss>/<sub>` against tokens of `issuer`: Envoy keeps iss and sub apart, so the
    value (Istio's exact, `prefix*`, `*suffix` or `*`) becomes a test of sub alone."""
    head = issuer + "/"
    if value == "*":
        return [matcher.claim_present(issuer, "sub")]
    if value.startswith("*"):
        suffix = value[1:]
        out = [matcher.claim_string(issuer, "sub", StringMatcher(suffix=suffix))]
        # the suffix may begin inside "<iss>/": then sub is the rest of it
        out += [matcher.claim_string(issuer, "sub", StringMatcher(exact=suffix[k:]))
                for k in range(1, len(suffix)) if head.endswith(suffix[:k])]
        return out
    if value.endswith("*"):
        prefix = value[:-1]
        if head.startswith(prefix):
            return [matcher.claim_present(issuer, "sub")]
        if prefix.startswith(head):
            return [matcher.claim_string(issuer, "sub", StringMatcher(prefix=prefix[len(head):]))]
        return []
    if value.startswith(head) and len(value) > len(head):
        return [matcher.claim_string(issuer, "sub", StringMatcher(exact=value[len(head):]))]
    return []


def _permission(c: Condition, value: str, ctx: Context) -> list[rbac_pb2.Permission]:
    _http_only(c, ctx)
    a = c.attribute
    if a is Attribute.HOST:
        return [rbac_pb2.Permission(header=matcher.header(":authority", value, ignore_case=True))]
    if a is Attribute.METHOD:
        return [rbac_pb2.Permission(header=matcher.header(":method", value))]
    if a is Attribute.PATH:
        if "{" in value or "}" in value:
            raise Unsupported(f"path template {value!r} is not supported")
        return [rbac_pb2.Permission(url_path=matcher.path(value))]
    if a is Attribute.DESTINATION_IP:
        return [rbac_pb2.Permission(destination_ip=matcher.cidr(value))]
    if a is Attribute.DESTINATION_PORT:
        return [rbac_pb2.Permission(destination_port=int(value))]
    if a is Attribute.CONNECTION_SNI:
        return [rbac_pb2.Permission(requested_server_name=matcher.string(value))]
    # ENVOY_FILTER: experimental.envoy.filters.<name>[<key>]
    name, _, key = c.key.partition("[")
    if not name or not key.endswith("]") or len(key) < 2:
        raise Unsupported(f"experimental.envoy.filters.{c.key} is not <filter>[<key>]")
    keys = key[:-1].split("][")
    m = matcher.metadata(f"envoy.filters.{name}", keys, value)
    return [rbac_pb2.Permission(sourced_metadata=rbac_pb2.SourcedMetadata(metadata_matcher=m))]


def _authenticated(m: string_pb2.StringMatcher) -> rbac_pb2.Principal:
    return Principal(authenticated=Principal.Authenticated(principal_name=m))


def _aliases(value: str, ctx: Context) -> list[str]:
    """Istio reads the trust domain ``cluster.local`` in a principal as the mesh's own."""
    td = ctx.security.trust_domain
    if td != LEGACY_TRUST_DOMAIN and value.startswith(LEGACY_TRUST_DOMAIN + "/"):
        return [value, td + value[len(LEGACY_TRUST_DOMAIN) :]]
    return [value]
