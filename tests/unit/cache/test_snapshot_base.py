"""SnapshotBase: a snapshot built on a shared base equals one built from scratch.

The version of a type is `version_of` its whole set, however the resources
were split between the base and the proxy's own (xDS clients and replicas
rely on versions being content hashes of what is served).
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from legation.cache import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    Resource,
    Snapshot,
    SnapshotBase,
    version_of,
)
from legation.cache.snapshot import MERGED_KEPT

OTHER = "type.googleapis.com/example.Other"  # a type outside PUSH_ORDER
TYPES = (CLUSTER, ENDPOINT, LISTENER, OTHER)


def res(type_url: str, name: str, content: str) -> Resource:
    body = content.encode()
    return Resource(type_url, name, f"v-{content}", body)


# Few names and contents, so that bases and extras often share names (replacement)
# and sort next to each other (splicing at every position).
resources = st.builds(
    res,
    st.sampled_from(TYPES),
    st.sampled_from(["", "a", "b", "b\0", "ba", "inbound|9080||", "outbound|1||x", "é", "z"]),
    st.sampled_from(["1", "2", "3"]),
)


def as_items(snap: Snapshot) -> dict[str, list[tuple[str, Resource]]]:
    """Every type's resources in iteration order (order is part of what is served)."""
    return {t: list(rs.items()) for t, rs in snap.resources.items()}


@settings(max_examples=300, deadline=None)
@given(st.lists(resources, max_size=12), st.lists(resources, max_size=6))
def test_built_on_a_base_equals_built_from_scratch(
    shared: list[Resource], own: list[Resource]
) -> None:
    base = SnapshotBase.of(shared)
    incremental = Snapshot.build(own, base=base)
    scratch = Snapshot.build([*shared, *own])
    assert as_items(incremental) == as_items(scratch)
    assert incremental.versions == scratch.versions
    for t, rs in scratch.resources.items():
        assert incremental.version(t) == version_of(dict(rs))
    again = Snapshot.build(own, base=base)  # the same objects again: remembered merge
    assert as_items(again) == as_items(scratch) and again.versions == scratch.versions


@settings(max_examples=200, deadline=None)
@given(st.lists(resources, max_size=14), st.data())
def test_version_does_not_depend_on_the_split(
    everything: list[Resource], data: st.DataObject
) -> None:
    cut = data.draw(st.integers(min_value=0, max_value=len(everything)))
    split = Snapshot.build(everything[cut:], base=SnapshotBase.of(everything[:cut]))
    whole = Snapshot.build(everything)
    assert split.versions == whole.versions


def test_types_without_own_resources_share_the_base_mapping() -> None:
    shared = [res(CLUSTER, "outbound|1||x", "1"), res(ENDPOINT, "outbound|1||x", "1")]
    base = SnapshotBase.of(shared)
    a = Snapshot.build([res(LISTENER, "l1", "1")], base=base)
    b = Snapshot.build([res(LISTENER, "l2", "1")], base=base)
    assert a.of_type(CLUSTER) is b.of_type(CLUSTER)
    assert a.of_type(ENDPOINT) is b.of_type(ENDPOINT)
    assert list(a.resources) == list(PUSH_ORDER)


def test_same_own_objects_share_the_merged_mapping_and_equal_content_gives_equal_version(
) -> None:
    base = SnapshotBase.of([res(CLUSTER, "outbound|1||x", "1")])
    inbound = res(CLUSTER, "inbound|9080||", "1")
    a = Snapshot.build([inbound], base=base)
    b = Snapshot.build([inbound], base=base)
    c = Snapshot.build([res(CLUSTER, "inbound|9080||", "1")], base=base)  # equal, not same
    assert a.of_type(CLUSTER) is b.of_type(CLUSTER)
    assert a.of_type(CLUSTER) is not c.of_type(CLUSTER)
    assert a.version(CLUSTER) == c.version(CLUSTER)
    d = Snapshot.build([res(CLUSTER, "inbound|9080||", "2")], base=base)
    assert d.version(CLUSTER) != a.version(CLUSTER)


def test_merges_past_the_bound_are_still_correct() -> None:
    base = SnapshotBase.of([res(CLUSTER, "outbound|1||x", "1")])
    for i in range(MERGED_KEPT + 3):
        own = res(CLUSTER, f"inbound|{i}||", "1")
        snap = Snapshot.build([own], base=base)
        assert snap.version(CLUSTER) == version_of(
            {"outbound|1||x": base.types[CLUSTER].resources["outbound|1||x"], own.name: own}
        )
