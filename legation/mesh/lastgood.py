"""Last good versions of traffic policy: an invalid object is never applied.

The MeshStore hands every snapshot it builds through `LastGood.settle`,
which runs the cross-object checks (`legation.model.validate`) and, until
they pass, takes back what broke them:

- an object whose own current version fails goes back to its last good
  version (the last one that was in force), or is left out if it never had
  one or that one fails too;
- a VirtualService that did not change but now names a subset that a
  DestinationRule edit removed keeps working: the DestinationRule edit is
  the one taken back (its last good version stays), and the error says so.

Each error keeps the file, line and field of the version that failed, plus
a sentence saying what stays in force. This is the only state here; the
checks themselves are pure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from legation.model import Diagnostic, MeshSnapshot, ObjectKey, Severity
from legation.model.destination import DestinationRule
from legation.model.traffic import VirtualService
from legation.model.validate import MissingSubset, TrafficCheck, check_traffic

Policy = VirtualService | DestinationRule

_KEPT = " The last good version of this object stays in force until this is fixed."
_KEPT_503 = (" The rule stays in force: requests it routes to the missing subset fail "
             "with 503 (as in Istio) instead of spreading over every version.")
_LEFT_OUT = " This object is not applied until this is fixed (it has no earlier valid version)."


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a settled mesh holds in force, to become the last good state once served."""

    good: Mapping[ObjectKey, Policy]
    in_force: frozenset[ObjectKey]


class LastGood:
    def __init__(self) -> None:
        self._good: dict[ObjectKey, Policy] = {}
        self._in_force: frozenset[ObjectKey] = frozenset()

    def settle(
        self, base: MeshSnapshot, current: Mapping[ObjectKey, Policy]
    ) -> tuple[MeshSnapshot, Verdict]:
        """`base` with the traffic policy that passes the checks, and every finding; and
        the verdict to `accept` once that mesh is in force (served). Changes nothing:
        reading a snapshot, however often, never moves what counts as last good."""
        chosen: dict[ObjectKey, Policy] = dict(current)
        first_errors: dict[ObjectKey, list[Diagnostic]] = {}
        outcome: dict[ObjectKey, str] = {}
        extra: list[Diagnostic] = []
        check = TrafficCheck()
        kept_routing: set[ObjectKey] = set()  # in force though a subset they name is gone
        for _ in range(2 * len(current) + 2):
            mesh = _with(base, chosen)
            check = check_traffic(mesh, incumbents=self._in_force)
            if not set(check.errors) - kept_routing:
                break
            for key in sorted(set(check.errors) - kept_routing):
                if key not in chosen:
                    continue
                culprit = self._culprit(mesh, check.missing_subsets.get(key, []), key,
                                        chosen, current)
                if culprit is not None:
                    extra.append(self._blame(culprit, key, chosen, current, check))
                    chosen[culprit] = self._good[culprit]
                    continue
                first_errors.setdefault(key, check.errors[key])
                if self._keeps_routing(key, check, chosen, current):
                    kept_routing.add(key)
                    outcome[key] = _KEPT_503
                    continue
                if chosen[key] is current.get(key) and self._good.get(key) not in (
                    None, current.get(key)
                ):
                    chosen[key] = self._good[key]
                    outcome[key] = _KEPT
                else:
                    del chosen[key]
                    outcome[key] = _LEFT_OUT
        verdict = Verdict(
            good={k: v for k, v in {**self._good, **chosen}.items() if k in current},
            in_force=frozenset(chosen),
        )
        errors = [_note(d, outcome[k]) for k, ds in sorted(first_errors.items()) for d in ds]
        final = _with(base, chosen)
        mesh = final.with_diagnostics((*base.diagnostics, *errors, *extra, *check.warnings))
        return mesh, verdict

    def accept(self, verdict: Verdict) -> None:
        """The mesh `verdict` came with is in force: its rules are now the last good ones."""
        self._good, self._in_force = dict(verdict.good), verdict.in_force

    def _keeps_routing(self, key: ObjectKey, check: TrafficCheck,
                       chosen: Mapping[ObjectKey, Policy], current: Mapping[ObjectKey, Policy]
                       ) -> bool:
        """An unchanged rule in force whose only fault is a subset that went away (its
        DestinationRule was deleted): it stays, so its traffic never widens to versions
        it did not name; the missing subset's cluster answers 503 (as Istio)."""
        return (
            key in self._in_force
            and chosen.get(key) is current.get(key)
            and self._good.get(key) == current.get(key)
            and all(d.code == "virtualservice.subset-unknown" for d in check.errors[key])
        )

    def _culprit(self, mesh: MeshSnapshot, missing: list[MissingSubset], key: ObjectKey,
                 chosen: Mapping[ObjectKey, Policy], current: Mapping[ObjectKey, Policy]
                 ) -> ObjectKey | None:
        """A changed DestinationRule whose edit removed a subset an unchanged VS uses."""
        if not missing or self._good.get(key) != current.get(key):
            return None
        for want in missing:
            for k, obj in sorted(chosen.items()):
                good = self._good.get(k)
                if not isinstance(obj, DestinationRule) or not isinstance(good, DestinationRule):
                    continue
                if obj is not current.get(k) or obj == good:
                    continue
                if (mesh.qualify_host(good.host, good.namespace).fqdn == want.fqdn
                        and good.subset(want.subset) is not None
                        and obj.subset(want.subset) is None):
                    return k
        return None

    def _blame(self, culprit: ObjectKey, user: ObjectKey, chosen: Mapping[ObjectKey, Policy],
               current: Mapping[ObjectKey, Policy], check: TrafficCheck) -> Diagnostic:
        rule = current[culprit]
        assert isinstance(rule, DestinationRule)
        used = [d for d in check.errors[user] if d.code == "virtualservice.subset-unknown"]
        where = f" ({used[0].field})" if used else ""
        _, ns, name = user
        return Diagnostic(
            ref=rule.ref, field="spec.subsets", code="destinationrule.subset-in-use",
            message=f"this edit removes a subset that VirtualService {ns}/{name} still routes "
            f"to{where}; remove it from the VirtualService first." + _KEPT,
            severity=Severity.ERROR, line=rule.line_of("spec.subsets"),
        )


def _with(base: MeshSnapshot, chosen: Mapping[ObjectKey, Policy]) -> MeshSnapshot:
    ordered = [chosen[k] for k in sorted(chosen, key=lambda k: (k[1], k[2], k[0]))]
    return base.with_traffic(
        tuple(o for o in ordered if isinstance(o, VirtualService)),
        tuple(o for o in ordered if isinstance(o, DestinationRule)),
    )


def _note(d: Diagnostic, note: str) -> Diagnostic:
    return dataclasses.replace(d, message=d.message + note)
