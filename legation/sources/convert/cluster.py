"""Cluster-scoped kinds: `v1 Namespace` and `v1 Node` (its locality from topology labels)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model import Locality, Namespace, Node, labels_of
from legation.sources.convert.fields import Ctx
from legation.sources.convert.meta import Meta

# Well-known labels (kubernetes.io/docs/reference/labels-annotations-taints/);
# the failure-domain.beta ones are deprecated but still set on old clusters.
# Subzone is Istio's own label (istio.io docs: locality load balancing).
_REGION = ("topology.kubernetes.io/region", "failure-domain.beta.kubernetes.io/region")
_ZONE = ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone")
_SUBZONE = ("topology.istio.io/subzone",)


def convert_namespace(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Namespace | None:
    return Namespace(ref=ctx.ref, name=meta.name, labels=labels_of(meta.labels))


def convert_node(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Node | None:
    return Node(ref=ctx.ref, name=meta.name, locality=locality_of(meta.labels))


def locality_of(labels: Mapping[str, str]) -> Locality:
    def first(keys: tuple[str, ...]) -> str:
        return next((labels[k] for k in keys if labels.get(k)), "")

    return Locality(region=first(_REGION), zone=first(_ZONE), subzone=first(_SUBZONE))
