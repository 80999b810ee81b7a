"""Snapshot: the complete set of resources one proxy must have, per type."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from legation.cache.resources import PUSH_ORDER, Resource, version_of


@dataclass(frozen=True, slots=True)
class Snapshot:
    resources: Mapping[str, Mapping[str, Resource]]  # type_url -> name -> Resource
    versions: Mapping[str, str]  # type_url -> version of the whole set
    changed_at: float = 0.0  # time.monotonic() when the change behind it was seen

    @classmethod
    def build(cls, resources: Iterable[Resource], *, changed_at: float = 0.0) -> Snapshot:
        by_type: dict[str, dict[str, Resource]] = {t: {} for t in PUSH_ORDER}
        for r in resources:
            by_type.setdefault(r.type_url, {})[r.name] = r
        return cls(by_type, {t: version_of(rs) for t, rs in by_type.items()}, changed_at)

    def of_type(self, type_url: str) -> Mapping[str, Resource]:
        return self.resources.get(type_url, {})

    def version(self, type_url: str) -> str:
        return self.versions.get(type_url, version_of({}))


@dataclass(frozen=True, slots=True)
class ProxyError:
    """Why a proxy gets no config: ends its streams with this gRPC status."""

    code: str  # a grpc.StatusCode name, e.g. "NOT_FOUND"
    message: str
