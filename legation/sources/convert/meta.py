"""Object metadata shared by every kind: name, namespace, labels, annotations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from legation.model import Severity
from legation.sources.convert.fields import (
    Ctx,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
)

DEFAULT_NAMESPACE = "default"
LEGATION_ANNOTATION_PREFIX = "sidecar.legation.io/"


class NameRule(StrEnum):
    """Which Kubernetes name format an object's metadata.name must follow."""

    DNS1123_SUBDOMAIN = "subdomain"  # most kinds
    DNS1123_LABEL = "label"  # Namespace
    DNS1035_LABEL = "dns1035"  # Service (its name becomes a DNS label)

    def check(self, name: str) -> bool:
        if self is NameRule.DNS1123_LABEL:
            return is_dns1123_label(name)
        if self is NameRule.DNS1035_LABEL:
            return is_dns1035_label(name)
        return is_dns1123_subdomain(name)

    @property
    def expected(self) -> str:
        if self is NameRule.DNS1123_LABEL:
            return ("a DNS-1123 label: at most 63 lowercase letters, digits and '-', "
                    "starting and ending with a letter or digit")
        if self is NameRule.DNS1035_LABEL:
            return ("a DNS-1035 label: at most 63 lowercase letters, digits and '-', "
                    "starting with a letter and ending with a letter or digit")
        return ("a DNS-1123 subdomain: lowercase letters, digits, '-' and '.', "
                "at most 253 characters, each dot-separated part starting and ending "
                "with a letter or digit")


@dataclass(frozen=True, slots=True, kw_only=True)
class Meta:
    name: str
    namespace: str  # "" for cluster-scoped kinds
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


def raw_name_namespace(data: Mapping[str, Any], *, namespaced: bool) -> tuple[str, str]:
    """Best-effort (name, namespace) for naming the object in diagnostics, before validation."""
    metadata = data.get("metadata")
    if not isinstance(metadata, Mapping):
        return "", DEFAULT_NAMESPACE if namespaced else ""
    name = metadata.get("name")
    ns = metadata.get("namespace")
    namespace = (ns if isinstance(ns, str) and ns else DEFAULT_NAMESPACE) if namespaced else ""
    return (name if isinstance(name, str) else ""), namespace


def parse_meta(ctx: Ctx, data: Mapping[str, Any], *, namespaced: bool, rule: NameRule) -> Meta:
    metadata = ctx.mapping(
        data, "metadata", "", problem="metadata", required=True,
        expected="a mapping with at least a name",
    )
    name = ctx.string(metadata, "name", "metadata", problem="name", required=True,
                      expected=rule.expected)
    if name and not rule.check(name):
        ctx.invalid("metadata.name", "name", name, rule.expected)
    namespace = ""
    if namespaced:
        namespace = ctx.string(
            metadata, "namespace", "metadata", problem="namespace", default=DEFAULT_NAMESPACE,
            expected=NameRule.DNS1123_LABEL.expected,
        ) or DEFAULT_NAMESPACE
        if not is_dns1123_label(namespace):
            ctx.invalid("metadata.namespace", "namespace", namespace,
                        NameRule.DNS1123_LABEL.expected)
    labels = ctx.string_map(metadata, "labels", "metadata", problem="labels")
    return Meta(
        name=name, namespace=namespace, labels=labels, annotations=_annotations(ctx, metadata)
    )


def _annotations(ctx: Ctx, metadata: Mapping[str, Any]) -> dict[str, str]:
    """A bad value of Legation's own annotations is an error; of anyone else's, a warning
    (the annotation is ignored, the object still served)."""
    raw = metadata.get("annotations")
    if not isinstance(raw, Mapping):
        return ctx.string_map(metadata, "annotations", "metadata", problem="annotations")
    ours = {k: v for k, v in raw.items() if str(k).startswith(LEGATION_ANNOTATION_PREFIX)}
    theirs = {k: v for k, v in raw.items() if k not in ours}
    out = ctx.string_map({"annotations": ours}, "annotations", "metadata", problem="annotations")
    out.update(
        ctx.string_map(
            {"annotations": theirs}, "annotations", "metadata", problem="annotations",
            severity=Severity.WARNING,
        )
    )
    return out
