"""Envoy matchers for AuthorizationPolicy values (Istio's wildcard conventions).

Istio's rules (istio/istio pilot/pkg/security/authz/matcher/string.go and
header.go): a value is exact, or has one `*` at its start (a suffix match)
or end (a prefix match); `*` alone means "present, non-empty" (`.+`, or a
header `present_match`). A prefix such as ``spiffe://`` is put in front of
exact and prefix matches; a suffix match with a prefix becomes the regex
``<prefix>.*<suffix>``. Hosts match case-insensitively. Regexes are RE2,
with every literal part escaped.
"""

from __future__ import annotations

import ipaddress
import re

from envoy.config.core.v3 import address_pb2
from envoy.config.route.v3 import route_components_pb2
from envoy.type.matcher.v3 import metadata_pb2, path_pb2, regex_pb2, string_pb2, value_pb2
from google.protobuf import wrappers_pb2

# RE2 metacharacters; RE2 accepts a backslash before any punctuation.
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$-])")
# Where the jwt_authn filter writes a validated token's payload, under its issuer.
JWT_METADATA_FILTER = "envoy.filters.http.jwt_authn"


def escape(text: str) -> str:
    return _RE2_SPECIAL.sub(r"\\\1", text)


def regex(pattern: str) -> string_pb2.StringMatcher:
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern))


def string(value: str, prefix: str = "", *, ignore_case: bool = False) -> string_pb2.StringMatcher:
    """Istio's `StringMatcherWithPrefix` (module docstring)."""
    if value == "*":
        return regex(".+")
    if value.startswith("*"):
        if prefix:
            return regex(escape(prefix) + ".*" + escape(value[1:]))
        return string_pb2.StringMatcher(suffix=value[1:], ignore_case=ignore_case)
    if value.endswith("*"):
        return string_pb2.StringMatcher(prefix=prefix + value[:-1], ignore_case=ignore_case)
    return string_pb2.StringMatcher(exact=prefix + value, ignore_case=ignore_case)


def header(
    name: str, value: str, *, ignore_case: bool = False
) -> route_components_pb2.HeaderMatcher:
    """A request header; `*` tests presence only."""
    if value == "*":
        return route_components_pb2.HeaderMatcher(name=name, present_match=True)
    return route_components_pb2.HeaderMatcher(
        name=name, string_match=string(value, ignore_case=ignore_case)
    )


def path(value: str) -> path_pb2.PathMatcher:
    """The request path without its query string (Envoy `url_path`)."""
    return path_pb2.PathMatcher(path=string(value))


def cidr(value: str) -> address_pb2.CidrRange:
    """An address (a /32 or /128) or a CIDR block; the value was validated on conversion."""
    network = ipaddress.ip_network(value, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )


def namespace_regex(namespace: str) -> string_pb2.StringMatcher:
    """A peer principal in `namespace` (`*` a wildcard), as Istio: ``.*/ns/<ns>/.*``."""
    literal = ".*".join(escape(part) for part in namespace.split("*"))
    return regex(f".*/ns/{literal}/.*")


def metadata(filter_name: str, keys: list[str], value: str) -> metadata_pb2.MetadataMatcher:
    """Dynamic metadata `filter_name` at `keys` matches `value` (a string matcher)."""
    return metadata_pb2.MetadataMatcher(
        filter=filter_name,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in keys],
        value=value_pb2.ValueMatcher(string_match=string(value)),
    )


def claim(issuer: str, keys: list[str], value: str) -> list[metadata_pb2.MetadataMatcher]:
    """A claim of a token of `issuer` equals `value` (Istio's wildcards), or is a list
    holding it (audiences, groups): Envoy tests the two shapes apart."""
    path = [issuer, *keys]
    return [
        metadata(JWT_METADATA_FILTER, path, value),
        metadata_pb2.MetadataMatcher(
            filter=JWT_METADATA_FILTER,
            path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in path],
            value=value_pb2.ValueMatcher(list_match=value_pb2.ListMatcher(
                one_of=value_pb2.ValueMatcher(string_match=string(value))))),
    ]


def claim_string(issuer: str, key: str, m: string_pb2.StringMatcher
                 ) -> metadata_pb2.MetadataMatcher:
    return metadata_pb2.MetadataMatcher(
        filter=JWT_METADATA_FILTER,
        path=[metadata_pb2.MetadataMatcher.PathSegment(key=k) for k in (issuer, key)],
        value=value_pb2.ValueMatcher(string_match=m))


def claim_present(issuer: str, key: str) -> metadata_pb2.MetadataMatcher:
    return claim_string(issuer, key, regex(".+"))
