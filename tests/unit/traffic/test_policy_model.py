"""Istio's inheritance and precedence rules for DestinationRules (destination.py, hosts.py)."""

from __future__ import annotations

from legation.model import SourceRef
from legation.model.destination import (
    ConnectionPool,
    DestinationRule,
    LoadBalancer,
    OutlierDetection,
    PortPolicy,
    PortTrafficPolicy,
    SimpleLb,
    Subset,
    TcpPool,
    TrafficPolicy,
    effective_policy,
)
from legation.model.hosts import merge_rules, select_rule

RR = LoadBalancer(simple=SimpleLb.ROUND_ROBIN)
RANDOM = LoadBalancer(simple=SimpleLb.RANDOM)
OUTLIERS = OutlierDetection(consecutive_5xx_errors=7)
POOL = ConnectionPool(tcp=TcpPool(max_connections=5))


def rule(name: str = "r", namespace: str = "shop", host: str = "catalog", *,
         policy: TrafficPolicy | None = None, subsets: tuple[Subset, ...] = ()) -> DestinationRule:
    return DestinationRule(ref=SourceRef(kind="DestinationRule", namespace=namespace, name=name),
                           name=name, namespace=namespace, host=host, traffic_policy=policy,
                           subsets=subsets)


TOP = TrafficPolicy(
    policy=PortPolicy(load_balancer=RANDOM, outlier_detection=OUTLIERS),
    port_level=(PortTrafficPolicy(port=9091, policy=PortPolicy(connection_pool=POOL)),),
)


def test_no_rule_no_policy() -> None:
    assert effective_policy(None, "", 80) == PortPolicy()


def test_subset_overrides_section_by_section() -> None:
    r = rule(policy=TOP, subsets=(
        Subset(name="v1", traffic_policy=TrafficPolicy(policy=PortPolicy(load_balancer=RR))),))
    assert effective_policy(r, "v1", 9080) == PortPolicy(load_balancer=RR,
                                                         outlier_detection=OUTLIERS)
    assert effective_policy(r, "", 9080) == TOP.policy
    assert effective_policy(r, "unknown", 9080) == TOP.policy


def test_port_level_settings_replace_everything_and_omit_means_default() -> None:
    r = rule(policy=TOP, subsets=(
        Subset(name="v1", traffic_policy=TrafficPolicy(policy=PortPolicy(load_balancer=RR))),))
    assert effective_policy(r, "", 9091) == PortPolicy(connection_pool=POOL)
    assert effective_policy(r, "v1", 9091) == PortPolicy(load_balancer=RR, connection_pool=POOL)


def test_subset_port_level_settings_win_over_everything() -> None:
    own = TrafficPolicy(policy=PortPolicy(load_balancer=RR),
                        port_level=(PortTrafficPolicy(port=9080,
                                                      policy=PortPolicy(connection_pool=POOL)),))
    r = rule(policy=TOP, subsets=(Subset(name="v1", traffic_policy=own),))
    assert effective_policy(r, "v1", 9080) == PortPolicy(connection_pool=POOL)
    assert effective_policy(r, "v1", 9090) == PortPolicy(load_balancer=RR,
                                                         outlier_detection=OUTLIERS)


def test_merging_keeps_the_first_policy_and_every_new_subset() -> None:
    a = rule("a", policy=TOP, subsets=(Subset(name="v1"),))
    b = rule("b", policy=TrafficPolicy(policy=PortPolicy(load_balancer=RR)),
             subsets=(Subset(name="v1", labels=(("x", "y"),)), Subset(name="v2")))
    merged, notes = merge_rules([b, a])
    assert merged is not None
    assert merged.traffic_policy == TOP and [s.name for s in merged.subsets] == ["v1", "v2"]
    assert merged.subset("v1") == Subset(name="v1")
    assert [(r.name, path) for r, path, _ in notes] == [("b", "spec.trafficPolicy"),
                                                        ("b", "spec.subsets[0].name")]


def test_a_later_rule_supplies_the_policy_when_the_first_has_none() -> None:
    merged, notes = merge_rules([rule("a"), rule("b", policy=TOP)])
    assert merged is not None and merged.traffic_policy == TOP and notes == []


def test_precedence_exact_host_then_service_namespace_then_root() -> None:
    fqdn = "catalog.shop.svc.cluster.local"
    wildcard = rule("wild", host="*.shop.svc.cluster.local")
    elsewhere = rule("elsewhere", namespace="other", host=fqdn)
    root = rule("root", namespace="istio-system", host=fqdn)
    local = rule("local", host=fqdn)

    def pick(*rules: DestinationRule) -> str:
        found, _ = select_rule(fqdn, "shop", "istio-system", [(r.host, r) for r in rules])
        assert found is not None
        return found.name

    assert pick(wildcard) == "wild"
    assert pick(wildcard, elsewhere) == "elsewhere"
    assert pick(wildcard, elsewhere, root) == "root"
    assert pick(wildcard, elsewhere, root, local) == "local"
    assert select_rule(fqdn, "shop", "istio-system", [])[0] is None
