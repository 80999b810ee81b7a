"""An invalid VirtualService or DestinationRule is never applied (legation/mesh/lastgood.py).

Its last good version stays in force, or it is left out when it never had
one; a DestinationRule edit that would break an unchanged VirtualService is
the one taken back; every outcome is said in the diagnostic.
"""

from __future__ import annotations

from legation.model import VirtualService
from legation.sources.convert import convert_text
from legation.sources.files import keep_last_good

from .traffic_builders import CATALOG_DR, Mesh, dr, vs


def split(v1: int, v2: int, subset: str = "v2") -> str:
    return vs(f"""\
        hosts: [catalog]
        http:
        - route:
          - {{destination: {{host: catalog, subset: v1}}, weight: {v1}}}
          - {{destination: {{host: catalog, subset: {subset}}}, weight: {v2}}}
        """)


def weights(mesh: Mesh) -> list[tuple[str, int]]:
    (catalog,) = [v for v in mesh.snapshot().virtual_services if v.name == "catalog"]
    return [(d.destination.subset, d.weight) for d in catalog.http[0].route]


def test_a_cross_object_error_keeps_the_last_good_version() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    assert weights(mesh) == [("v1", 90), ("v2", 10)]
    mesh.load(vs=split(50, 50, subset="v3"))
    assert weights(mesh) == [("v1", 90), ("v2", 10)]
    (d,) = mesh.findings("virtualservice.subset-unknown")
    assert d.message.endswith("The last good version of this object stays in force until "
                              "this is fixed.")
    mesh.load(vs=split(50, 50))  # fixed: the new version applies, the finding goes
    assert weights(mesh) == [("v1", 50), ("v2", 50)]
    assert mesh.findings("virtualservice.subset-unknown") == []


def test_an_object_with_no_good_version_is_left_out() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10, subset="v3"))
    assert mesh.snapshot().virtual_services == ()
    (d,) = mesh.findings("virtualservice.subset-unknown")
    assert "not applied until this is fixed (it has no earlier valid version)" in d.message


def test_a_converter_error_keeps_the_last_good_version_too() -> None:
    first = convert_text(split(90, 10), file="vs.yaml")
    good, _ = keep_last_good({}, first)
    broken = convert_text(split(90, 20), file="vs.yaml")
    kept, diags = keep_last_good(good, broken)
    assert kept == good and [d.code for d in diags] == ["virtualservice.weights-sum"]


def test_a_destination_rule_edit_that_breaks_a_route_is_taken_back() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    mesh.snapshot()
    mesh.load(dr=dr("host: catalog\nsubsets:\n- {name: v1, labels: {version: v1}}"))
    snap = mesh.snapshot()
    assert [s.name for s in snap.destination_rules[0].subsets] == ["v1", "v2"]
    assert weights(mesh) == [("v1", 90), ("v2", 10)]
    (d,) = mesh.findings("destinationrule.subset-in-use")
    assert d.ref.file == "dr.yaml" and d.field == "spec.subsets"
    assert "VirtualService shop/catalog still routes to" in d.message
    assert mesh.findings("virtualservice.subset-unknown") == []


def test_a_route_that_stops_using_a_subset_lets_the_rule_drop_it() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    mesh.snapshot()
    mesh.load(vs=vs("hosts: [catalog]\nhttp:\n- route: [{destination: {host: catalog, "
                    "subset: v1}}]"))
    mesh.snapshot()
    mesh.load(dr=dr("host: catalog\nsubsets:\n- {name: v1, labels: {version: v1}}"))
    snap = mesh.snapshot()
    assert [s.name for s in snap.destination_rules[0].subsets] == ["v1"]
    assert [d.severity for d in snap.diagnostics if d.severity == "error"] == []


def test_removing_the_service_leaves_an_unchanged_route_out() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    assert len(mesh.snapshot().virtual_services) == 1
    mesh.load(base="")  # every Service and workload gone
    assert mesh.snapshot().virtual_services == ()
    assert mesh.findings("virtualservice.host-unknown")


def test_a_deleted_object_does_not_come_back() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    mesh.snapshot()
    mesh.remove("vs")
    assert mesh.snapshot().virtual_services == ()
    mesh.load(vs=split(90, 10, subset="v3"))  # re-added broken: no last good to fall back to
    assert mesh.snapshot().virtual_services == ()


def test_the_incumbent_keeps_a_contested_host() -> None:
    later = vs("hosts: [catalog]\nhttp:\n- route: [{destination: {host: catalog}}]", name="aaa")
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    mesh.snapshot()
    mesh.load(later=later)
    assert [v.name for v in mesh.snapshot().virtual_services] == ["catalog"]
    (d,) = mesh.findings("virtualservice.host-conflict")
    assert d.ref.name == "aaa"
    fresh = Mesh(dr=CATALOG_DR, vs=split(90, 10), later=later)  # no history: by namespace/name
    assert [v.name for v in fresh.snapshot().virtual_services] == ["aaa"]


def test_snapshots_are_stable_for_an_unchanged_store() -> None:
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10, subset="v3"))
    first = mesh.snapshot()
    assert mesh.snapshot() is first
    assert all(isinstance(v, VirtualService) for v in first.virtual_services)


def test_deleting_the_rule_of_a_routed_subset_keeps_the_route() -> None:
    """Canary safety (issue 10): the VirtualService stays, so its split never widens to
    every version; the missing subset's cluster answers 503, and a diagnostic says so.
    (Before: the route was dropped, 'no earlier valid version', traffic went everywhere.)"""
    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    mesh.snapshot()
    mesh.remove("dr")
    snap = mesh.snapshot()
    assert snap.destination_rules == ()
    assert weights(mesh) == [("v1", 90), ("v2", 10)]
    found = mesh.findings("virtualservice.subset-unknown")
    assert found and all(d.severity == "error" for d in found)
    assert all("stays in force" in d.message and "503" in d.message for d in found)
    mesh.load(dr=CATALOG_DR)  # the rule comes back: no finding left
    assert mesh.findings("virtualservice.subset-unknown") == []
    assert weights(mesh) == [("v1", 90), ("v2", 10)]


def test_reading_a_snapshot_moves_nothing() -> None:
    """Reads that wrote (issue 10): reading the store used to make what was read the
    last good version, so the outcome of an edit depended on who had read in between.
    Now only `accept` (the pipeline, once it served a mesh) moves it."""
    def run(read_between: bool) -> list[tuple[str, int]]:
        mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
        if read_between:
            for _ in range(3):
                mesh.store.snapshot()  # a debug endpoint, a test, analyze: reads only
        mesh.load(vs=split(50, 50, subset="v3"))
        snap = mesh.store.snapshot()
        return [(v.name, len(v.http)) for v in snap.virtual_services]

    assert run(read_between=True) == run(read_between=False) == []  # nothing was in force

    mesh = Mesh(dr=CATALOG_DR, vs=split(90, 10))
    mesh.store.accept(mesh.store.snapshot())  # served: now it is the last good version
    mesh.load(vs=split(50, 50, subset="v3"))
    assert weights(mesh) == [("v1", 90), ("v2", 10)]
