"""Cross-object checks of traffic policy: what only the whole mesh can tell.

Converters check each VirtualService and DestinationRule on its own; this
pure pass checks them against each other and against the services:

- a VirtualService destination (or mirror) whose host is no Service of the
  mesh, whose port the service does not have, or whose subset no
  DestinationRule defines (errors: the object must not be applied);
- two VirtualServices claiming one host for the same clients (an error for
  the newcomer: Istio's analyzer IST0109, "multiple virtual services defined
  to use the same hostname and attached to a mesh gateway will generate an
  error message", https://istio.io/docs/reference/config/analysis/ist0109);
- DestinationRules for unknown hosts ("Rules defined for services that do
  not exist in the service registry will be ignored", Istio), shadowed or
  merged rules, subsets selecting no endpoint, port settings for ports the
  service lacks (warnings);
- `name.ns` host forms that Istio would not expand (warnings).

The MeshStore decides what to do with an invalid object (keep its last good
version, or leave it out) and re-checks; see `legation/mesh/store.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from legation.model.destination import DestinationRule
from legation.model.diagnostics import Diagnostic, Severity
from legation.model.gateway import gateway_key
from legation.model.hosts import host_matches
from legation.model.mesh import ObjectKey, Service, selector_matches
from legation.model.snapshot import MeshSnapshot
from legation.model.traffic import MESH_GATEWAY, Destination, VirtualService


@dataclass(frozen=True, slots=True, kw_only=True)
class MissingSubset:
    """A destination names a subset that no rule for its host defines (yet)."""

    fqdn: str
    subset: str


@dataclass(slots=True, kw_only=True)
class TrafficCheck:
    errors: dict[ObjectKey, list[Diagnostic]] = field(default_factory=dict)
    missing_subsets: dict[ObjectKey, list[MissingSubset]] = field(default_factory=dict)
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def invalid(self) -> set[ObjectKey]:
        return set(self.errors)

    def error(self, key: ObjectKey, diagnostic: Diagnostic) -> None:
        self.errors.setdefault(key, []).append(diagnostic)


def vs_key(vs: VirtualService) -> ObjectKey:
    return ("VirtualService", vs.namespace, vs.name)


def dr_key(dr: DestinationRule) -> ObjectKey:
    return ("DestinationRule", dr.namespace, dr.name)


def check_traffic(mesh: MeshSnapshot, *, incumbents: frozenset[ObjectKey] = frozenset()
                  ) -> TrafficCheck:
    """Every cross-object finding; `incumbents` win host conflicts (they were in force)."""
    out = TrafficCheck()
    gateways = {g.key for g in mesh.gateways}
    for vs in mesh.virtual_services:
        _check_hosts(mesh, vs, out)
        _check_gateways(vs, gateways, out)
        for path, dest in vs.destinations():
            _check_destination(mesh, vs, path, dest, out)
    _check_conflicts(mesh, incumbents, out)
    for dr in mesh.destination_rules:
        _check_rule(mesh, dr, out)
    _merge_notes(mesh, out)
    return out


def _diag(obj: VirtualService | DestinationRule, path: str, code: str, message: str,
          severity: Severity = Severity.ERROR) -> Diagnostic:
    return Diagnostic(ref=obj.ref, field=path, code=code, message=message, severity=severity,
                      line=obj.line_of(path))


def _not_fqdn(obj: VirtualService | DestinationRule, path: str, host: str, fqdn: str
              ) -> Diagnostic:
    kind = obj.ref.kind.lower()
    return _diag(obj, path, f"{kind}.host-not-fqdn",
                 f"{host!r} is read as {fqdn}; Istio would not expand it and would match "
                 f"nothing, so write {fqdn} (or the short name) for the same meaning on both.",
                 Severity.WARNING)


def _check_hosts(mesh: MeshSnapshot, vs: VirtualService, out: TrafficCheck) -> None:
    for i, host in enumerate(vs.hosts):
        q = mesh.qualify_host(host, vs.namespace)
        if q.expanded:
            out.warnings.append(_not_fqdn(vs, f"spec.hosts[{i}]", host, q.fqdn))


def _check_gateways(vs: VirtualService, known: set[str], out: TrafficCheck) -> None:
    """A gateway the VirtualService binds to that no Gateway defines (Istio IST0101): its
    rules reach no proxy there until one does."""
    refs = [(f"spec.gateways[{i}]", g) for i, g in enumerate(vs.gateways)]
    refs += [(f"{rule.path}.match[{j}].gateways[{k}]", g)
             for rule in vs.http for j, m in enumerate(rule.match)
             for k, g in enumerate(m.gateways)]
    for path, ref in refs:
        if ref != MESH_GATEWAY and gateway_key(ref, vs.namespace) not in known:
            out.warnings.append(_diag(
                vs, path, "virtualservice.gateway-not-found",
                f"gateway {gateway_key(ref, vs.namespace)} is not defined: expected a Gateway "
                f"of that namespace/name (or 'mesh'); until one exists these rules apply to "
                "no gateway.", Severity.WARNING))


def _check_destination(mesh: MeshSnapshot, vs: VirtualService, path: str, dest: Destination,
                       out: TrafficCheck) -> None:
    q = mesh.qualify_host(dest.host, vs.namespace)
    if q.expanded:
        out.warnings.append(_not_fqdn(vs, f"{path}.host", dest.host, q.fqdn))
    svc = mesh.service_by_fqdn(q.fqdn)
    if svc is None:
        out.error(vs_key(vs), _diag(
            vs, f"{path}.host", "virtualservice.host-unknown",
            f"destination host {dest.host!r} ({q.fqdn}) is no Service of the mesh; expected "
            "a Service's name, name.namespace or FQDN, or a host of a ServiceEntry as written "
            "there (a wildcard entry host is routed by its own name, e.g. *.example.com)."))
        return
    if dest.port and svc.port(dest.port) is None:
        ports = ", ".join(str(p.port) for p in svc.ports) or "none"
        out.error(vs_key(vs), _diag(
            vs, f"{path}.port.number", "virtualservice.port-unknown",
            f"{svc.ref.kind} {svc.namespace}/{svc.name} has no port {dest.port}; expected one "
            f"of its ports ({ports})."))
    if not dest.subset:
        return
    rule = mesh.destination_rule_for(q.fqdn)
    if rule is not None and rule.subset(dest.subset) is not None:
        return
    if rule is None:
        where = f"no DestinationRule for {q.fqdn} defines subsets"
    else:
        known = ", ".join(repr(s.name) for s in rule.subsets) or "none"
        where = (f"DestinationRule {rule.namespace}/{rule.name} for {q.fqdn} defines "
                 f"{known}")
    out.error(vs_key(vs), _diag(
        vs, f"{path}.subset", "virtualservice.subset-unknown",
        f"subset {dest.subset!r} is not defined: {where}. Expected a subset of a "
        "DestinationRule for this host (requests to an undefined subset would fail)."))
    out.missing_subsets.setdefault(vs_key(vs), []).append(
        MissingSubset(fqdn=q.fqdn, subset=dest.subset))


def _check_conflicts(mesh: MeshSnapshot, incumbents: frozenset[ObjectKey],
                     out: TrafficCheck) -> None:
    claims: dict[str, list[tuple[VirtualService, int]]] = defaultdict(list)
    for vs in mesh.virtual_services:
        if not vs.applies_to_sidecars:
            continue
        for i, host in enumerate(vs.hosts):
            claims[mesh.qualify_host(host, vs.namespace).fqdn].append((vs, i))
    for fqdn, owners in sorted(claims.items()):
        ordered = sorted(owners, key=lambda o: (vs_key(o[0]) not in incumbents,
                                                o[0].namespace, o[0].name))
        kept: list[VirtualService] = []
        for vs, i in ordered:
            rival = next((k for k in kept if _overlap(k, vs, mesh)), None)
            if rival is None:
                kept.append(vs)
                continue
            out.error(vs_key(vs), _diag(
                vs, f"spec.hosts[{i}]", "virtualservice.host-conflict",
                f"host {fqdn} is already routed by VirtualService {rival.namespace}/"
                f"{rival.name}; sidecars use one VirtualService per host (Istio IST0109). "
                "Merge the rules into one VirtualService, or limit each with exportTo."))


def _overlap(a: VirtualService, b: VirtualService, mesh: MeshSnapshot) -> bool:
    """Is some namespace shown both VirtualServices?"""
    namespaces = {a.namespace, b.namespace, *a.export_to, *b.export_to,
                  *(n.name for n in mesh.namespaces), *(w.namespace for w in mesh.workloads)}
    return any(a.visible_in(ns) and b.visible_in(ns) for ns in namespaces if ns not in ".*")


def _check_rule(mesh: MeshSnapshot, dr: DestinationRule, out: TrafficCheck) -> None:
    if dr.workload_selector:
        return  # never applied; the converter said so
    q = mesh.qualify_host(dr.host, dr.namespace)
    if q.expanded:
        out.warnings.append(_not_fqdn(dr, "spec.host", dr.host, q.fqdn))
    if q.fqdn.startswith("*"):
        services = [s for s in mesh.services if host_matches(q.fqdn, s.fqdn(mesh.domain))]
    else:
        exact = mesh.service_by_fqdn(q.fqdn)
        services = [exact] if exact is not None else []
    if not services:
        out.warnings.append(_diag(
            dr, "spec.host", "destinationrule.host-unknown",
            f"host {dr.host!r} ({q.fqdn}) is no Service of the mesh, so this rule has no "
            "effect (Istio ignores such rules too); expected a Service's name or FQDN.",
            Severity.WARNING))
        return
    for svc in services:
        chosen = mesh.destination_rule_for(svc.fqdn(mesh.domain))
        if chosen is not None and chosen.namespace != dr.namespace:
            out.warnings.append(_diag(
                dr, "spec.host", "destinationrule.shadowed",
                f"not applied to {svc.fqdn(mesh.domain)}: DestinationRule {chosen.namespace}/"
                f"{chosen.name} for it takes precedence (rules in the service's namespace, "
                "then the root namespace, win; Legation does not support per-client rules).",
                Severity.WARNING))
    _check_subsets(mesh, dr, services, out)
    _check_ports(dr, services, out)


def _check_subsets(mesh: MeshSnapshot, dr: DestinationRule, services: list[Service],
                   out: TrafficCheck) -> None:
    for i, subset in enumerate(dr.subsets):
        if not subset.labels:
            continue
        found = any(
            selector_matches(subset.labels, ep.labels)
            for svc in services for port in svc.ports for ep in mesh.endpoints(svc, port)
        )
        if not found:
            shown = ", ".join(f"{k}={v}" for k, v in subset.labels)
            out.warnings.append(_diag(
                dr, f"spec.subsets[{i}].labels", "destinationrule.subset-empty",
                f"subset {subset.name!r} ({shown}) selects no endpoint of "
                f"{', '.join(s.fqdn(mesh.domain) for s in services)}; requests routed to it "
                "fail with 503 until a matching workload appears.", Severity.WARNING))


def _check_ports(dr: DestinationRule, services: list[Service], out: TrafficCheck) -> None:
    policies = [("spec.trafficPolicy", dr.traffic_policy)]
    policies += [(f"spec.subsets[{i}].trafficPolicy", s.traffic_policy)
                 for i, s in enumerate(dr.subsets)]
    ports = {p.port for svc in services for p in svc.ports}
    for path, policy in policies:
        for j, level in enumerate(policy.port_level if policy else ()):
            if level.port not in ports:
                out.warnings.append(_diag(
                    dr, f"{path}.portLevelSettings[{j}].port.number",
                    "destinationrule.port-unknown",
                    f"no port {level.port} on the host; these settings apply to nothing "
                    f"(expected one of {', '.join(map(str, sorted(ports)))}).",
                    Severity.WARNING))


def _merge_notes(mesh: MeshSnapshot, out: TrafficCheck) -> None:
    seen: set[tuple[ObjectKey, str]] = set()
    for svc in mesh.services:
        _, notes = mesh.destination_rule_notes(svc.fqdn(mesh.domain))
        for rule, path, message in notes:
            if (dr_key(rule), path) in seen:
                continue
            seen.add((dr_key(rule), path))
            out.warnings.append(_diag(rule, path, "destinationrule.merged", message,
                                      Severity.WARNING))
