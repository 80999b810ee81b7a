"""Locality load balancing: how one client sees the localities of a cluster's endpoints.

Istio computes this per client (istio/istio
pilot/pkg/networking/core/loadbalancer/loadbalancer.go, ApplyLocalityLoadBalancer):

- `distribute` (applied when its `from` matches the client's locality): each
  locality group gets the weight of the first `to` entry it matches, divided
  among the groups that entry matches; groups no entry matches get nothing;
- otherwise, when the cluster has outlier detection ("Failover needs outlier
  detection, otherwise Envoy will never drop down to a lower priority"):
  priorities by proximity to the client (same region/zone/subzone 0, same
  region/zone 1, same region 2, else 3; 4 when a `failover` rule for the
  client's region names another target region), after `failoverPriority`
  labels when given (endpoints matching the client on the first N labels
  first). Priorities are then renumbered 0..N without gaps.

Failover by locality is on by default, as in Istio (whose mesh-wide
`localityLbSetting` is enabled unless turned off): any cluster with outlier
detection gets it. A DestinationRule's `localityLbSetting.enabled: false`
turns all of it off.
The result depends on the client, so it is per proxy (subsets.py); clients
for which it changes nothing share the mesh-wide assignment.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from legation.model import Endpoint, Labels, Locality
from legation.model.destination import LocalityLbSetting, PortPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class Placement:
    """A client's view: its locality and labels, and the rule's locality settings."""

    setting: LocalityLbSetting
    failover: bool  # outlier detection is on: priorities apply
    locality: Locality
    labels: Labels


def placement(policy: PortPolicy, locality: Locality, labels: Labels) -> Placement | None:
    """A client's view of a cluster, or None when locality load balancing is off for it
    (then every client sees the same assignment)."""
    if not locality_aware(policy):
        return None
    return Placement(setting=_setting(policy), failover=policy.outlier_detection is not None,
                     locality=locality, labels=labels)


def locality_aware(policy: PortPolicy) -> bool:
    """Whether clients may see a cluster with this policy differently: not unless a
    `distribute` rule or outlier detection (failover) applies and it is not disabled.
    Depends on the policy alone, so it is decided once per cluster, not per client."""
    setting = _setting(policy)
    if setting.enabled is False:
        return False
    return bool(setting.distribute) or policy.outlier_detection is not None


def reads_labels(policy: PortPolicy) -> bool:
    """Whether a client's labels can change its view (`failoverPriority`)."""
    return bool(_setting(policy).failover_priority)


def _setting(policy: PortPolicy) -> LocalityLbSetting:
    lb = policy.load_balancer
    return lb.locality if lb and lb.locality else LocalityLbSetting()


def locality_matches(locality: Locality, pattern: str) -> bool:
    """`region/zone/subzone` with a terminal `*` (Istio's util.LocalityMatch)."""
    parts = [locality.region, locality.zone, locality.subzone]
    for i, want in enumerate(pattern.split("/")):
        if want == "*":
            return True
        if i >= 3 or parts[i] != want:
            return False
    return True


def weights(p: Placement, groups: dict[Locality, int]) -> dict[Locality, int] | None:
    """Per locality group (-> its endpoints' total weight): the weight this client gives it
    (0: no traffic), or None when no `distribute` entry applies to the client."""
    rule = next((d for d in p.setting.distribute if locality_matches(p.locality, d.source)),
                None)
    if rule is None:
        return None
    out = dict.fromkeys(groups, 0)
    left = set(groups)
    for pattern, weight in rule.to:
        matched = sorted((g for g in left if locality_matches(g, pattern)),
                         key=lambda g: (g.region, g.zone, g.subzone))
        left -= set(matched)
        total = sum(groups[g] for g in matched)
        for g in matched:
            share = groups[g] * weight / total if total else 0
            out[g] = math.ceil(share) if share > 0 else 0
    return out


def priority(p: Placement, ep: Endpoint) -> int:
    """The failover priority of an endpoint for this client, before renumbering."""
    if not p.failover or p.setting.distribute:
        return 0
    label_priority = _label_priority(p, ep) if p.setting.failover_priority else 0
    use_locality = not p.setting.failover_priority or bool(p.setting.failover)
    return label_priority * 5 + (_locality_priority(p, ep.locality) if use_locality else 0)


def _label_priority(p: Placement, ep: Endpoint) -> int:
    client, theirs = dict(p.labels), dict(ep.labels)
    wanted = p.setting.failover_priority
    for i, item in enumerate(wanted):
        key, eq, value = item.partition("=")
        expected = value if eq else client.get(key)
        if expected is None or theirs.get(key) != expected:
            return len(wanted) - i
    return 0


def _locality_priority(p: Placement, loc: Locality) -> int:
    me = p.locality
    if me.region == loc.region and me.zone == loc.zone and me.subzone == loc.subzone:
        level = 0
    elif me.region == loc.region and me.zone == loc.zone:
        level = 1
    elif me.region == loc.region:
        level = 2
    else:
        level = 3
    if level == 3:
        rule = next((f for f in p.setting.failover if f.source == me.region), None)
        if rule is not None and loc.region != rule.to:
            level = 4
    return level
