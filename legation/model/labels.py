"""Labels and equality selectors, as Kubernetes has them."""

from __future__ import annotations

from collections.abc import Mapping

Labels = tuple[tuple[str, str], ...]  # sorted (key, value) pairs


def labels_of(mapping: Mapping[str, str] | None) -> Labels:
    return tuple(sorted((mapping or {}).items()))


def selector_matches(selector: Labels, labels: Labels) -> bool:
    """A non-empty equality selector matches when every pair is present."""
    if not selector:
        return False
    have = dict(labels)
    return all(have.get(k) == v for k, v in selector)
