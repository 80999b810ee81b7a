"""`security.istio.io` RequestAuthentication -> `RequestAuthentication`, with every check.

Istio's schema (istio/api security/v1beta1/request_authentication.proto) and
validation (istio/istio pkg/config/validation, ValidateRequestAuthentication):
`selector` and `targetRef(s)` exclude each other; every `jwtRules[]` entry
needs a non-empty `issuer`; `jwksUri` is an http(s) URL with a host; a header
named in `fromHeaders`, `outputPayloadToHeader` or `outputClaimToHeaders` is
an HTTP header name. Checked here beyond Istio, because Envoy would refuse or
misread it: an inline `jwks` is a JSON object with a non-empty `keys` list,
and `jwks` and `jwksUri` exclude each other.

A rule with neither `jwks` nor `jwksUri` makes istiod find the keys by OpenID
discovery at the issuer; stock Envoy cannot, and Legation does not reach out
to issuers, so such a rule gets a warning and no keys: its tokens are
rejected (401), never accepted unverified.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from legation.model.security import JwtHeader, JwtRule, RequestAuthentication
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx
from legation.sources.convert.httpparts import TOKEN
from legation.sources.convert.meta import Meta
from legation.sources.convert.peerauthentication import workload_selector
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("selector", "targetRef", "targetRefs", "jwtRules")
RULE_FIELDS = (
    "issuer", "audiences", "jwksUri", "jwks", "fromHeaders", "fromParams", "fromCookies",
    "outputPayloadToHeader", "outputClaimToHeaders", "forwardOriginalToken", "timeout",
)
DEFAULT_JWKS_TIMEOUT_MS = 5000  # Istio's default for a jwksUri fetch
HEADER_EXPECTED = "an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"


def convert_request_authentication(
    ctx: Ctx, meta: Meta, data: Mapping[str, Any]
) -> RequestAuthentication | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a RequestAuthentication spec")
    selector = workload_selector(ctx, spec)
    targets = _target_refs(ctx, spec, bool(selector))
    rules = tuple(
        r for path, raw in ctx.mapping_items(spec, "jwtRules", "spec", problem="jwt-rule")
        if (r := _rule(ctx, raw, path)) is not None
    )
    return RequestAuthentication(
        ref=ctx.ref,
        name=meta.name,
        namespace=meta.namespace,
        selector=selector,
        rules=rules,
        targets_other_proxies=targets,
        lines=tuple(sorted((p, n) for p, n in ctx.lines.items() if p.startswith("spec"))),
    )


def _target_refs(ctx: Ctx, spec: Mapping[str, Any], has_selector: bool) -> bool:
    given = [k for k in ("targetRef", "targetRefs") if spec.get(k) is not None]
    if not given:
        return False
    if has_selector:
        ctx.error(f"spec.{given[0]}", "target-ref-invalid",
                  f"{given[0]} and selector exclude each other; keep one of them.")
    ctx.warn(f"spec.{given[0]}", "target-ref-unsupported",
             f"{given[0]} attaches the policy to waypoints or Gateway API gateways, which "
             "Legation does not configure this way; it is not applied to any proxy (use a "
             "selector).")
    return True


def _rule(ctx: Ctx, rule: Mapping[str, Any], path: str) -> JwtRule | None:
    istio.check_fields(ctx, rule, path, RULE_FIELDS, what="a JWT rule")
    issuer = istio.string(ctx, rule, "issuer", path, required=True,
                          expected="the issuer of the tokens (the iss claim), e.g. "
                          "https://accounts.example.com")
    if issuer and any(c.isspace() or ord(c) < 0x20 for c in issuer):
        ctx.invalid(child_path(path, "issuer"), "issuer", issuer,
                    "the iss claim of the tokens, without spaces or control characters")
        issuer = ""
    jwks = _jwks(ctx, rule, path)
    jwks_uri = _jwks_uri(ctx, rule, path)
    if jwks and jwks_uri:
        ctx.error(child_path(path, "jwks"), "jwks-conflict",
                  "jwks and jwksUri exclude each other: give the keys inline or where to "
                  "fetch them, not both.")
    if not jwks and not jwks_uri and "jwks" not in rule and "jwksUri" not in rule and issuer:
        ctx.warn(path, "jwks-missing",
                 f"neither jwksUri nor jwks is set: Istio would look the keys up by OpenID "
                 f"discovery at {issuer}, which stock Envoy cannot do; tokens of this issuer "
                 "are rejected (401) until jwksUri or jwks is given.")
    timeout = istio.duration_ms(ctx, rule, "timeout", path)
    headers = []
    for hpath, item in ctx.mapping_items(rule, "fromHeaders", path, problem="from-header"):
        istio.check_fields(ctx, item, hpath, ("name", "prefix"), what="a token header")
        name = istio.string(ctx, item, "name", hpath, required=True, expected=HEADER_EXPECTED)
        if name and _header(ctx, name, child_path(hpath, "name")):
            headers.append(JwtHeader(name=name,
                                     prefix=istio.string(ctx, item, "prefix", hpath)))
    payload_header = istio.string(ctx, rule, "outputPayloadToHeader", path,
                                  expected=HEADER_EXPECTED)
    if payload_header and not _header(ctx, payload_header,
                                      child_path(path, "outputPayloadToHeader")):
        payload_header = ""
    claims = []
    for cpath, item in ctx.mapping_items(rule, "outputClaimToHeaders", path,
                                         problem="claim-to-header"):
        istio.check_fields(ctx, item, cpath, ("header", "claim"), what="a claim to header")
        header = istio.string(ctx, item, "header", cpath, required=True,
                              expected=HEADER_EXPECTED)
        claim = istio.string(ctx, item, "claim", cpath, required=True,
                             expected="a claim name, e.g. sub")
        if header and claim and _header(ctx, header, child_path(cpath, "header")):
            claims.append((header, claim))
    if not issuer:
        return None
    return JwtRule(
        issuer=issuer,
        audiences=istio.strings(ctx, rule, "audiences", path),
        jwks=jwks,
        jwks_uri=jwks_uri,
        timeout_s=(timeout if timeout is not None else DEFAULT_JWKS_TIMEOUT_MS) / 1000,
        from_headers=tuple(headers),
        from_params=_names(ctx, rule, "fromParams", path),
        from_cookies=_names(ctx, rule, "fromCookies", path),
        output_payload_to_header=payload_header,
        output_claim_to_headers=tuple(claims),
        forward_original_token=bool(istio.boolean(ctx, rule, "forwardOriginalToken", path)),
        field=path,
    )


def _jwks(ctx: Ctx, rule: Mapping[str, Any], path: str) -> str:
    """The inline JWKS, re-serialised compactly; "" when absent or invalid (reported)."""
    text = istio.string(ctx, rule, "jwks", path, expected="a JSON Web Key Set (JSON text)")
    if not text:
        return ""
    p = child_path(path, "jwks")
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        ctx.error(p, "jwks-invalid", f"not JSON ({exc}); expected a JSON Web Key Set "
                  '{"keys": [...]} as RFC 7517 section 5.')
        return ""
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, list) or not keys:
        ctx.error(p, "jwks-invalid", 'expected a JSON object with a non-empty "keys" list '
                  "(RFC 7517 section 5).")
        return ""
    for i, key in enumerate(keys):
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            ctx.error(p, "jwks-invalid", f"keys[{i}] has no kty; expected a JSON Web Key "
                      '(RFC 7517 section 4), e.g. {"kty": "RSA", "n": ..., "e": ...}.')
            return ""
    return json.dumps(parsed, separators=(",", ":"), sort_keys=True)


def _jwks_uri(ctx: Ctx, rule: Mapping[str, Any], path: str) -> str:
    uri = istio.string(ctx, rule, "jwksUri", path, expected="an http or https URL")
    if not uri:
        return ""
    expected = "an http or https URL with a host, e.g. https://example.com/.well-known/jwks.json"
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        ctx.invalid(child_path(path, "jwksUri"), "jwks-uri", uri, expected)
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        ctx.invalid(child_path(path, "jwksUri"), "jwks-uri", uri, expected)
        return ""
    return uri


def _header(ctx: Ctx, name: str, path: str) -> bool:
    if TOKEN.match(name):
        return True
    ctx.invalid(path, "header-name", name, HEADER_EXPECTED)
    return False


def _names(ctx: Ctx, rule: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    out = []
    what = "query parameter" if key == "fromParams" else "cookie"
    for i, name in enumerate(istio.strings(ctx, rule, key, path)):
        if name and not any(c.isspace() or ord(c) < 0x20 for c in name):
            out.append(name)
        else:
            ctx.invalid(child_path(child_path(path, key), i), "name", name,
                        f"a non-empty {what} name without spaces or control characters")
    return tuple(out)
