"""AuthorizationPolicy values, checked by what they test; `when` keys, parsed.

Istio (istio/istio pkg/config/security/security.go, ValidateAttribute, and
pilot/pkg/security/authz/model/generator.go) accepts:

- IP attributes (ipBlocks, remoteIpBlocks, source.ip, remote.ip,
  destination.ip): an address or a CIDR block;
- ports (operation.ports, destination.port): a port number, as a string;
- serviceAccounts: `<sa>` or `<namespace>/<sa>`, no wildcard;
- string attributes: an exact value, or one `*` at the start (suffix
  match) or at the end (prefix match), or `*` alone (present).

A path with a `{...}` template (Istio's `{*}`/`{**}`) is not supported: it is
reported here and treated like a value Envoy cannot be given (the rule is
skipped in an ALLOW policy, the value dropped in a DENY policy; see
`legation.translators.authz`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from legation.model.security import Attribute
from legation.sources.convert.fields import Ctx, describe, is_dns1123_label, is_dns1123_subdomain
from legation.sources.convert.httpparts import TOKEN

_WHEN_KEYS = {
    a.value: a
    for a in (
        Attribute.SOURCE_IP,
        Attribute.REMOTE_IP,
        Attribute.SOURCE_NAMESPACE,
        Attribute.SOURCE_PRINCIPAL,
        Attribute.REQUEST_PRINCIPAL,
        Attribute.REQUEST_AUDIENCES,
        Attribute.REQUEST_PRESENTER,
        Attribute.DESTINATION_IP,
        Attribute.DESTINATION_PORT,
        Attribute.CONNECTION_SNI,
    )
}
_BRACKETED = (Attribute.REQUEST_HEADERS, Attribute.REQUEST_CLAIMS)
_IPS = (Attribute.SOURCE_IP, Attribute.REMOTE_IP, Attribute.DESTINATION_IP)
_ENVOY_PREFIX = Attribute.ENVOY_FILTER.value + "."


def parse_when_key(key: str) -> tuple[Attribute, str] | str:
    """(attribute, name in brackets or "") for a `when` key; a reason when it is not one."""
    if key in _WHEN_KEYS:
        return _WHEN_KEYS[key], ""
    for attribute in _BRACKETED:
        prefix = attribute.value + "["
        if key.startswith(prefix):
            name = key[len(prefix) :]
            if not name.endswith("]") or len(name) < 2 or "[" in name[:1]:
                return f"{key!r} needs a name in brackets, e.g. {attribute.value}[x-user]"
            if attribute is Attribute.REQUEST_HEADERS and not TOKEN.match(name[:-1]):
                return (f"{key!r} names no HTTP header: expected a header name (letters, "
                        "digits and !#$%&'*+-.^_`|~), without spaces or line breaks")
            return attribute, name[:-1]
    if key.startswith(_ENVOY_PREFIX) and len(key) > len(_ENVOY_PREFIX):
        return Attribute.ENVOY_FILTER, key[len(_ENVOY_PREFIX) :]
    known = ", ".join(
        sorted([*_WHEN_KEYS, "request.headers[<name>]", "request.auth.claims[<name>]"])
    )
    return f"{key!r} is not an attribute a condition can test; expected one of {known}"


def is_template(value: str) -> bool:
    """An Istio path template (`/a/{*}/b`, `/a/{**}`), which Legation does not support."""
    return "{" in value or "}" in value


def values(
    ctx: Ctx, obj: Mapping[str, Any], key: str, path: str, attribute: Attribute
) -> tuple[str, ...]:
    """The list of strings at `key`, each checked for `attribute`; bad items are reported
    (at their own index) and left out."""
    code = f"{_CODES.get(attribute, 'value')}-invalid"
    out = []
    for item_path, value in ctx.items(obj, key, path, problem=code.removesuffix("-invalid")):
        if not isinstance(value, str):
            hint = " (quote it)" if isinstance(value, int | float) else ""
            ctx.error(item_path, code, f"found {describe(value)}; expected a string{hint}.")
            continue
        problem = _problem(attribute, value)
        if problem is not None:
            ctx.error(item_path, code, f"found {value!r}; expected {problem}.")
            continue
        if attribute is Attribute.PATH and is_template(value):
            ctx.warn(
                item_path,
                "path-template-unsupported",
                f"{value!r} is a path template, which Legation does not support: in an "
                "ALLOW policy its rule is skipped, in DENY and AUDIT the value is dropped.",
            )
        out.append(value)
    return tuple(out)


_CODES = {
    Attribute.SOURCE_IP: "ip-block",
    Attribute.REMOTE_IP: "ip-block",
    Attribute.DESTINATION_IP: "ip-block",
    Attribute.DESTINATION_PORT: "port",
    Attribute.SOURCE_SERVICE_ACCOUNT: "service-account",
}


def _problem(attribute: Attribute, value: str) -> str | None:
    """What `value` should have been, or None when it is fine."""
    if attribute in _IPS:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return "an IP address or a CIDR block such as 10.1.0.0/16"
        return None
    if attribute is Attribute.DESTINATION_PORT:
        if value.isascii() and value.isdigit() and 1 <= int(value) <= 65535:
            return None
        return "a port number from 1 to 65535 (as a string)"
    if attribute is Attribute.SOURCE_SERVICE_ACCOUNT:
        ns, _, sa = value.rpartition("/")
        if is_dns1123_subdomain(sa) and (not ns or is_dns1123_label(ns)):
            return None
        return "a service account name or <namespace>/<service account>, without wildcards"
    if not value:
        return "a non-empty string"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return ("a value without control characters (a YAML `|` block ends with a newline: "
                "use a plain or quoted scalar)")
    if attribute is Attribute.PATH and is_template(value):
        return None
    if (value != "*" and "*" in value[1:-1]) or value.count("*") > 1:
        return "an exact value, or one '*' at the start or at the end only"
    return None
