"""Envoy v3 messages written by users (EnvoyFilter patches): parsed, typed, checked.

A patch value is Envoy's proto3 JSON (YAML in a manifest) with `@type` on every
`Any`. `parse` turns it into the message of the patched kind, so a misspelt
field, a wrong type or an unknown `@type` is an error with its reason when the
manifest is read, not a NACK later. The `@type`s are resolved by importing the
generated modules of their proto package (the xds-protos wheel holds every
Envoy API package). `TypedStruct` (udpa.type.v1 / xds.type.v3, which Istio's
examples use: its `type_url` and a `value` struct) becomes the typed message it
describes, so its content is checked too and merges like any other.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from functools import cache
from typing import Any

from google.protobuf import json_format, message, symbol_database

TYPED_STRUCTS = frozenset({"type.googleapis.com/udpa.type.v1.TypedStruct",
                           "type.googleapis.com/xds.type.v3.TypedStruct"})
_PREFIX = "type.googleapis.com/"


class ProtoError(ValueError):
    """A value that is not the message it should be; the message says why."""


@cache
def _import_package(package: str) -> bool:
    """Import every generated module of a proto package (`envoy.x.v3`); whether any."""
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    found = False
    for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
        if info.name.endswith("_pb2"):
            importlib.import_module(f"{package}.{info.name}")
            found = True
    return found


def message_class(type_url: str) -> type[message.Message] | None:
    """The generated class of `type.googleapis.com/<full name>`, or None if unknown."""
    name = type_url.removeprefix(_PREFIX)
    if type_url == name or not name:
        return None
    db = symbol_database.Default()
    try:
        return db.GetSymbol(name)  # type: ignore[no-any-return]
    except KeyError:
        pass
    package = name.rpartition(".")[0]
    if not _import_package(package):
        return None
    try:
        return db.GetSymbol(name)  # type: ignore[no-any-return]
    except KeyError:
        return None


def untyped(data: Any) -> Any:
    """`data` with each TypedStruct replaced by the `@type` it names; every `@type`
    resolved (ProtoError names the first unknown one)."""
    if isinstance(data, list):
        return [untyped(x) for x in data]
    if not isinstance(data, Mapping):
        return data
    out = {k: untyped(v) for k, v in data.items()}
    type_url = out.get("@type")
    if isinstance(type_url, str) and type_url in TYPED_STRUCTS:
        inner = out.get("type_url", out.get("typeUrl", ""))
        value = out.get("value") or {}
        if not isinstance(inner, str) or not isinstance(value, Mapping):
            raise ProtoError(f"a TypedStruct needs a type_url string and a value mapping, "
                             f"got {sorted(out)}")
        out = {"@type": inner, **value}
        type_url = inner
    if isinstance(type_url, str) and message_class(type_url) is None:
        raise ProtoError(f"unknown @type {type_url!r}: expected "
                         "type.googleapis.com/<an Envoy v3 API message>")
    return out


def parse(data: Any, cls: type[message.Message]) -> message.Message:
    """`data` (proto3 JSON as dicts) as a `cls`; ProtoError says what is wrong."""
    if not isinstance(data, Mapping):
        raise ProtoError(f"expected a mapping (a {cls.DESCRIPTOR.name}), got "
                         f"{type(data).__name__}")
    try:
        return json_format.ParseDict(untyped(data), cls())
    except json_format.ParseError as e:
        raise ProtoError(str(e)) from None
