"""AuthorizationPolicy -> Envoy RBAC, split as Istio's pilot/pkg/security/authz:

- `matcher.py`: Envoy string, header, path, CIDR and metadata matchers with
  Istio's wildcard conventions;
- `generate.py`: one rule -> one RBAC `Policy` (principals and permissions),
  with Istio's treatment of values a filter cannot test;
- `builder.py`: the policies of a workload port -> one RBAC configuration
  per action, in Istio's order (AUDIT, DENY, ALLOW), plus diagnostics.

`legation.translators.rbac` picks the policies of a workload and wraps the
configurations into HTTP or network filters. Pure, like every translator.
"""
