"""Host names in Istio rules: resolution of short names, wildcard matching, rule precedence.

Istio's rule (istio/api virtual_service.proto, Destination.host): "When
short names are used (e.g. "reviews" instead of
"reviews.default.svc.cluster.local"), Istio will interpret the short name
based on the namespace of the rule, not the service." A name with no dot is
short; anything with a dot is taken as written. Legation also expands
`name.ns` and `name.ns.svc` when that names a Service of the mesh (Istio
would take them literally and match nothing); `validate.py` warns when it
does, so the YAML means the same on Istio once written as an FQDN.

Wildcards (`*.shop.svc.cluster.local`, `*`) match by suffix, as Istio's
host.Name.Matches: `*.foo.com` matches `bar.foo.com`, not `foo.com`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from legation.model.destination import DestinationRule, Subset


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Qualified:
    fqdn: str
    expanded: bool = False  # a `name.ns` / `name.ns.svc` form was expanded (Legation only)


def qualify(
    host: str, namespace: str, domain: str, is_service: Callable[[str, str], bool]
) -> Qualified:
    """The FQDN a host in a rule of `namespace` means (see module docstring)."""
    host = host.lower().rstrip(".")
    if host == "*" or host.startswith("*.") or is_ip_literal(host):
        return Qualified(fqdn=host)
    parts = host.split(".")
    if len(parts) == 1:
        return Qualified(fqdn=f"{host}.{namespace}.svc.{domain}")
    if (len(parts) == 2 or (len(parts) == 3 and parts[2] == "svc")) and is_service(
        parts[1], parts[0]
    ):
        return Qualified(fqdn=f"{parts[0]}.{parts[1]}.svc.{domain}", expanded=True)
    return Qualified(fqdn=host)


def host_matches(pattern: str, host: str) -> bool:
    """Does a (possibly wildcard) pattern cover a concrete host name?"""
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def intersect_hosts(hosts: Iterable[str], patterns: Iterable[str]) -> list[str]:
    """Each host covered by a pattern, or each pattern covered by a wildcard host: the
    more specific of the two, once each (Istio's intersection of a VirtualService's or
    route's hosts with a gateway server's or listener's)."""
    wanted = list(patterns)
    out: list[str] = []
    for host in hosts:
        for pattern in wanted:
            if host_matches(pattern, host):
                out.append(host)
            elif host_matches(host, pattern):
                out.append(pattern)
    return list(dict.fromkeys(out))


def specificity(pattern: str) -> tuple[int, int]:
    """Exact names first, then longer wildcards: the most specific rule wins (as Istio)."""
    return (0 if not pattern.startswith("*") else 1, -len(pattern))


MergeNote = tuple[DestinationRule, str, str]  # (rule, field path, what was ignored and why)


def merge_rules(
    rules: Iterable[DestinationRule],
) -> tuple[DestinationRule | None, list[MergeNote]]:
    """One effective rule from rules of ONE namespace for one host, in (name) order.

    Istio merges such rules: the first rule's traffic policy is used, subsets
    are combined, and a subset name defined twice keeps its first
    definition. Returns the merged rule and notes on what was ignored.
    """
    ordered = sorted(rules, key=lambda r: r.name)
    if not ordered:
        return None, []
    first = ordered[0]
    policy = first.traffic_policy
    policy_from = first
    subsets: dict[str, Subset] = {}
    notes: list[MergeNote] = []
    for rule in ordered:
        if rule is not first and rule.traffic_policy is not None:
            if policy is None:
                policy, policy_from = rule.traffic_policy, rule
            else:
                notes.append((
                    rule, "spec.trafficPolicy",
                    f"this trafficPolicy is ignored: DestinationRule {policy_from.namespace}/"
                    f"{policy_from.name} for the same host sets one and is used (Istio merges "
                    "rules for one host, keeping the first traffic policy)",
                ))
        for i, s in enumerate(rule.subsets):
            if s.name in subsets:
                notes.append((
                    rule, f"spec.subsets[{i}].name",
                    f"subset {s.name!r} is already defined by another DestinationRule for the "
                    "same host; this definition is ignored",
                ))
                continue
            subsets[s.name] = s
    merged = DestinationRule(
        ref=first.ref,
        name=first.name,
        namespace=first.namespace,
        host=first.host,
        traffic_policy=policy,
        subsets=tuple(subsets.values()),
        export_to=first.export_to,
        lines=first.lines,
    )
    return merged, notes


def select_rule(
    fqdn: str,
    namespace: str,
    root_namespace: str,
    rules: Iterable[tuple[str, DestinationRule]],
) -> tuple[DestinationRule | None, list[MergeNote]]:
    """The effective DestinationRule of a service (its FQDN and namespace).

    `rules` are (qualified host, rule). The most specific host wins; among
    rules for that host, those of the service's namespace, else of the root
    namespace, else of the first other namespace (by name) are merged.
    Istio also prefers a rule in the CLIENT's namespace; Legation's clusters
    are shared by every client, so such per-client rules are not supported
    (validate.py says so).
    """
    matching = [(h, r) for h, r in rules if host_matches(h, fqdn)]
    if not matching:
        return None, []
    best = min(specificity(h) for h, _ in matching)
    candidates = [r for h, r in matching if specificity(h) == best]
    order = sorted({r.namespace for r in candidates},
                   key=lambda ns: (ns != namespace, ns != root_namespace, ns))
    return merge_rules(r for r in candidates if r.namespace == order[0])
