"""AuthorizationPolicy -> Envoy RBAC: Istio's semantics, checked on the generated config.

Manifests go through the real converter and store (as in `legation serve`);
what is asserted is the RBAC each inbound port gets.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from envoy.config.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as http_rbac_pb2
from envoy.extensions.filters.network.rbac.v3 import rbac_pb2 as network_rbac_pb2
from google.protobuf import json_format

from legation.mesh.store import MeshStore
from legation.model import MeshSecurity, MeshSnapshot
from legation.sources.convert import convert_text
from legation.translators.authz import matcher
from legation.translators.authz.builder import MATCH_NEVER
from legation.translators.rbac import RbacFilters, rbac_filters

WORKLOAD = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: shop}
spec: {address: 10.0.0.1, labels: {app: db}, serviceAccount: db-sa}
"""


def mesh(policies: str, *, trust_domain: str = "cluster.local") -> MeshSnapshot:
    result = convert_text(WORKLOAD + "---\n" + textwrap.dedent(policies), file="t.yaml")
    assert [d for d in result.diagnostics if d.severity == "error"] == []
    store = MeshStore(security=MeshSecurity(mtls=True, trust_domain=trust_domain))
    store.replace_source("t", result.objects, result.diagnostics)
    return store.snapshot()


def filters(
    policies: str, *, tcp: bool = False, trust_domain: str = "cluster.local"
) -> RbacFilters:
    m = mesh(policies, trust_domain=trust_domain)
    (w,) = m.workloads
    return rbac_filters(m, w, 5432 if tcp else 9080, tcp=tcp)


def configs(f: RbacFilters) -> list[Any]:
    out = []
    for h in f.http:
        msg = http_rbac_pb2.RBAC()
        h.typed_config.Unpack(msg)
        out.append(msg)
    for n in f.network:
        msg = network_rbac_pb2.RBAC()
        n.typed_config.Unpack(msg)
        out.append(msg)
    return out


def actions(f: RbacFilters) -> list[str]:
    return [rbac_pb2.RBAC.Action.Name(c.rules.action) for c in configs(f)]


def policy(name: str, action: str = "ALLOW", rules: str = "") -> str:
    body = f"  action: {action}\n" + (f"  rules:\n{rules}" if rules else "")
    return (
        f"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: {name}, namespace: shop}}\nspec:\n{body}"
    )


def as_dict(message: Any) -> Any:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


def test_no_policy_no_filter() -> None:
    f = filters("")
    assert (f.http, f.network, f.diagnostics) == ([], [], [])


def test_allow_with_no_rules_allows_nothing() -> None:
    (config,) = configs(filters(policy("nothing")))
    assert config.rules.action == rbac_pb2.RBAC.ALLOW
    assert dict(config.rules.policies) == {"ns[shop]-policy[nothing]-rule[0]": MATCH_NEVER}


def test_deny_with_no_rules_denies_nothing() -> None:
    (config,) = configs(filters(policy("nothing", "DENY")))
    assert config.rules.action == rbac_pb2.RBAC.DENY
    assert list(config.rules.policies.values()) == [MATCH_NEVER]


def test_an_empty_rule_matches_everything() -> None:
    (config,) = configs(filters(policy("all", rules="  - {}\n")))
    (p,) = config.rules.policies.values()
    assert as_dict(p) == {
        "permissions": [{"and_rules": {"rules": [{"any": True}]}}],
        "principals": [{"and_ids": {"ids": [{"any": True}]}}],
    }


def test_filters_in_istio_order_audit_deny_allow() -> None:
    text = (
        policy("a", "ALLOW", "  - {}\n")
        + policy("d", "DENY", "  - {}\n")
        + policy("l", "AUDIT", "  - {}\n")
    )
    assert actions(filters(text)) == ["LOG", "DENY", "ALLOW"]


def test_deny_only_has_no_allow_filter() -> None:
    assert actions(filters(policy("d", "DENY", "  - {}\n"))) == ["DENY"]


def test_custom_without_its_provider_in_mesh_config_is_enforced_as_deny_and_reported() -> None:
    text = policy("c", "CUSTOM", "  - to: [{operation: {paths: [/x]}}]\n").replace(
        "  action: CUSTOM\n", "  action: CUSTOM\n  provider: {name: opa}\n"
    )
    f = filters(text)
    assert actions(f) == ["DENY"]
    (d,) = f.diagnostics
    assert d.code == "authorizationpolicy.custom-unusable" and d.field == "spec.provider"
    assert "no envoyExtAuthzHttp or envoyExtAuthzGrpc provider named 'opa'" in d.message


ONLY_POST = "  - to: [{operation: {methods: [POST]}}]\n"
POST_FROM_ORDER = (
    "  - from: [{source: {principals: [cluster.local/ns/shop/sa/order-sa]}}]\n"
    "    to: [{operation: {methods: [POST]}}]\n"
)


def test_http_only_rule_is_dropped_from_allow_on_tcp() -> None:
    f = filters(
        policy("a", rules=ONLY_POST + "  - to: [{operation: {ports: ['5432']}}]\n"), tcp=True
    )
    (config,) = configs(f)
    assert list(config.rules.policies) == ["ns[shop]-policy[a]-rule[1]"]  # rule 0 is gone
    (d,) = f.diagnostics
    assert (d.code, d.field) == ("authorizationpolicy.http-only-on-tcp", "spec.rules[0]")
    assert "never matches" in d.message


def test_http_only_conditions_are_dropped_from_deny_on_tcp() -> None:
    f = filters(policy("d", "DENY", POST_FROM_ORDER), tcp=True)
    (config,) = configs(f)
    (p,) = config.rules.policies.values()
    # the method condition is gone: any connection from order-sa is denied
    assert as_dict(p)["permissions"] == [{"and_rules": {"rules": [{"any": True}]}}]
    assert "order-sa" in str(as_dict(p)["principals"])
    assert "left out" in f.diagnostics[0].message


def test_the_same_rules_on_http_keep_everything() -> None:
    f = filters(policy("d", "DENY", POST_FROM_ORDER))
    (p,) = configs(f)[0].rules.policies.values()
    assert ":method" in str(as_dict(p)["permissions"])
    assert f.diagnostics == []


def test_dry_run_goes_to_shadow_rules() -> None:
    text = policy("d", "DENY", "  - {}\n").replace(
        "metadata: {name: d, namespace: shop}",
        "metadata: {name: d, namespace: shop, annotations: {istio.io/dry-run: 'true'}}",
    )
    (config,) = configs(filters(text))
    assert not config.HasField("rules") and config.shadow_rules.action == rbac_pb2.RBAC.DENY


def test_trust_domain_alias_for_legacy_principals() -> None:
    f = filters(policy("a", rules=POST_FROM_ORDER), trust_domain="example.org")
    (p,) = configs(f)[0].rules.policies.values()
    names = [
        i["authenticated"]["principal_name"]["exact"]
        for i in as_dict(p)["principals"][0]["and_ids"]["ids"][0]["or_ids"]["ids"]
    ]
    assert names == [
        "spiffe://cluster.local/ns/shop/sa/order-sa",
        "spiffe://example.org/ns/shop/sa/order-sa",
    ]


MATCHERS = [
    ("*", "spiffe://", {"safe_regex": {"regex": ".+"}}),
    ("cluster.local/ns/a/*", "spiffe://", {"prefix": "spiffe://cluster.local/ns/a/"}),
    ("*/sa/b.c", "spiffe://", {"safe_regex": {"regex": r"spiffe://.*/sa/b\.c"}}),
    ("*.example.com", "", {"suffix": ".example.com"}),
    ("/a/b", "", {"exact": "/a/b"}),
]


@pytest.mark.parametrize(("value", "prefix", "expected"), MATCHERS, ids=[m[0] for m in MATCHERS])
def test_istio_wildcards(value: str, prefix: str, expected: dict[str, Any]) -> None:
    assert as_dict(matcher.string(value, prefix)) == expected


def test_namespace_matcher_escapes_and_keeps_wildcards() -> None:
    assert matcher.namespace_regex("team-*").safe_regex.regex == r".*/ns/team\-.*/.*"
