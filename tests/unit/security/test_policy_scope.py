"""Which PeerAuthentication mode and which AuthorizationPolicies apply to a workload."""

from __future__ import annotations

import pytest

from legation.model import AuthorizationPolicy, MtlsMode, PeerAuthentication, SourceRef, labels_of
from legation.model.security import (
    AuthzAction,
    authorization_policies_for,
    peer_authentication_for,
)

ROOT = "istio-system"


def pa(
    namespace: str,
    name: str,
    mode: MtlsMode,
    selector: dict[str, str] | None = None,
    ports: dict[int, MtlsMode] | None = None,
) -> PeerAuthentication:
    return PeerAuthentication(
        ref=SourceRef(kind="PeerAuthentication", namespace=namespace, name=name),
        name=name,
        namespace=namespace,
        selector=labels_of(selector),
        mode=mode,
        port_modes=tuple(sorted((ports or {}).items())),
    )


def mode(
    policies: list[PeerAuthentication],
    *,
    namespace: str = "shop",
    labels: dict[str, str] | None = None,
    port: int = 9080,
) -> MtlsMode:
    return peer_authentication_for(
        policies,
        root_namespace=ROOT,
        namespace=namespace,
        labels=labels_of(labels or {"app": "db"}),
        port=port,
    ).mode


MESH_STRICT = pa(ROOT, "default", MtlsMode.STRICT)
NS_DISABLE = pa("shop", "default", MtlsMode.DISABLE)
NS_UNSET = pa("shop", "default", MtlsMode.UNSET)
WL = pa("shop", "db", MtlsMode.UNSET, {"app": "db"}, {5432: MtlsMode.STRICT, 8080: MtlsMode.UNSET})

CASES = [
    ("nothing-is-permissive", [], 9080, MtlsMode.PERMISSIVE),
    ("mesh-wide", [MESH_STRICT], 9080, MtlsMode.STRICT),
    ("namespace-over-mesh", [MESH_STRICT, NS_DISABLE], 9080, MtlsMode.DISABLE),
    ("unset-namespace-inherits-mesh", [MESH_STRICT, NS_UNSET], 9080, MtlsMode.STRICT),
    ("port-level-over-all", [NS_DISABLE, WL], 5432, MtlsMode.STRICT),
    ("unset-port-inherits-workload-then-namespace", [NS_DISABLE, WL], 8080, MtlsMode.DISABLE),
    ("other-ports-from-the-workload-level", [MESH_STRICT, WL], 9080, MtlsMode.STRICT),
    (
        "another-namespace-does-not-apply",
        [pa("other", "default", MtlsMode.STRICT)],
        9080,
        MtlsMode.PERMISSIVE,
    ),
    (
        "selector-in-root-namespace-is-ignored",
        [pa(ROOT, "sel", MtlsMode.STRICT, {"app": "db"})],
        9080,
        MtlsMode.PERMISSIVE,
    ),
    (
        "selector-not-matching",
        [pa("shop", "x", MtlsMode.STRICT, {"app": "web"})],
        9080,
        MtlsMode.PERMISSIVE,
    ),
]


@pytest.mark.parametrize(
    ("policies", "port", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_peer_authentication_mode(
    policies: list[PeerAuthentication], port: int, expected: MtlsMode
) -> None:
    assert mode(policies, port=port) is expected


def test_first_policy_of_a_scope_wins_and_the_others_are_reported() -> None:
    b = pa("shop", "b", MtlsMode.STRICT)
    a = pa("shop", "a", MtlsMode.DISABLE)
    decision = peer_authentication_for(
        [b, a], root_namespace=ROOT, namespace="shop", labels=labels_of({"app": "db"}), port=1
    )
    assert decision.mode is MtlsMode.DISABLE
    assert decision.applied == (a,) and decision.shadowed == (b,)


def ap(
    namespace: str, name: str, selector: dict[str, str] | None = None, target_ref: bool = False
) -> AuthorizationPolicy:
    return AuthorizationPolicy(
        ref=SourceRef(kind="AuthorizationPolicy", namespace=namespace, name=name),
        name=name,
        namespace=namespace,
        action=AuthzAction.ALLOW,
        selector=labels_of(selector),
        targets_other_proxies=target_ref,
    )


def test_authorization_policy_scope() -> None:
    policies = [
        ap(ROOT, "mesh"),
        ap(ROOT, "mesh-selected", {"app": "db"}),  # root namespace: every namespace
        ap(ROOT, "mesh-other", {"app": "web"}),
        ap("shop", "ns"),
        ap("shop", "selected", {"app": "db"}),
        ap("shop", "other", {"app": "web"}),
        ap("shop", "waypoint", target_ref=True),
        ap("staging", "elsewhere"),
    ]
    found = authorization_policies_for(
        policies, root_namespace=ROOT, namespace="shop", labels=labels_of({"app": "db", "v": "1"})
    )
    assert [(p.namespace, p.name) for p in found] == [
        (ROOT, "mesh"),
        (ROOT, "mesh-selected"),
        ("shop", "ns"),
        ("shop", "selected"),
    ]
