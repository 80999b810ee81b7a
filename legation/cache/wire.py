"""DiscoveryResponses encoded from pre-serialized resources, without building messages.

A response to a thousand proxies carries the same resources to each; only the
nonce differs. Building a `DiscoveryResponse` per stream would copy every
`Any` into a new message and serialize it again; instead each `Resource`
keeps its encoded entry of the response's repeated field (`Resource.sotw_entry`,
`Resource.delta_entry`, built once), and a response is the concatenation of
those entries and a few scalar fields. Protobuf parsers accept fields in any
order (protobuf encoding guide, "Field Order"), so the bytes decode to the
same message as `DiscoveryResponse(...).SerializeToString()`
(tests/unit/cache/test_wire.py checks it field by field).

Field numbers: envoy/service/discovery/v3/discovery.proto (DiscoveryResponse
version_info=1 resources=2 type_url=4 nonce=5; DeltaDiscoveryResponse
system_version_info=1 resources=2 type_url=4 nonce=5 removed_resources=6;
Resource version=1 resource=2 name=3 aliases=4) and google/protobuf/any.proto
(type_url=1 value=2).
"""

from __future__ import annotations

from collections.abc import Iterable


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def text(number: int, value: str) -> bytes:
    """A string field; proto3 leaves an empty string out."""
    return field(number, value.encode()) if value else b""


def any_message(type_url: str, body: bytes) -> bytes:
    """google.protobuf.Any{type_url, value}, encoded."""
    return text(1, type_url) + (field(2, body) if body else b"")


def sotw_entry(type_url: str, body: bytes) -> bytes:
    """One element of DiscoveryResponse.resources (field 2, Any)."""
    return field(2, any_message(type_url, body))


def delta_entry(name: str, version: str, type_url: str, body: bytes) -> bytes:
    """One element of DeltaDiscoveryResponse.resources (field 2, Resource)."""
    resource = text(1, version) + field(2, any_message(type_url, body)) + text(3, name)
    return field(2, resource)


def alias_entry(name: str, version: str, type_url: str, body: bytes,
                aliases: Iterable[str]) -> bytes:
    """A DeltaDiscoveryResponse.resources element answering VHDS aliases: the resource
    with the aliases it was found by, or (empty `body`) a resource-less entry saying an
    alias resolves to nothing (Envoy's VhdsSubscription takes both)."""
    resource = text(1, version)
    if body:
        resource += field(2, any_message(type_url, body))
    resource += text(3, name) + b"".join(text(4, a) for a in aliases)
    return field(2, resource)


def sotw_response(version: str, type_url: str, nonce: str, entries: Iterable[bytes]) -> bytes:
    """A DiscoveryResponse from `sotw_entry`s."""
    return b"".join((text(1, version), *entries, text(4, type_url), text(5, nonce)))


def delta_response(
    version: str, type_url: str, nonce: str, entries: Iterable[bytes], removed: Iterable[str]
) -> bytes:
    """A DeltaDiscoveryResponse from `delta_entry`s and removed resource names."""
    gone = b"".join(text(6, name) for name in removed)
    return b"".join((text(1, version), *entries, text(4, type_url), text(5, nonce), gone))
