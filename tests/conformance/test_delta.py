"""Incremental (delta) ADS against a real server: holdings, reconnect, ACK/NACK, order."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from legation.cache import CLUSTER, ENDPOINT, LISTENER, ROUTE, VIRTUAL_HOST, Resource
from legation.metrics import Metrics
from legation.xds.status import ProxyStatus

from .xds_harness import (
    Mesh,
    cla,
    cluster,
    eventually,
    listener,
    names_of,
    route,
    virtual_host,
)

NODE = "reviews-v1.shop"
StatusOf = Callable[[str], ProxyStatus | None]


def base(*, a_port: int = 9001, a_timeout: int = 1) -> list[Resource]:
    return [
        cluster("a", timeout_s=a_timeout),
        cluster("b"),
        cla("a", a_port),
        cla("b", 9002),
        listener("http", 15001),
        route("r", "a"),
    ]


def versions(resp: Any) -> dict[str, str]:
    return {r.name: r.version for r in resp.resources}


async def subscribe_all(client: Any, proxy_status: StatusOf) -> dict[str, Any]:
    """CDS, LDS (legacy wildcard), EDS a+b, RDS r; every response ACKed and settled."""
    got: dict[str, Any] = {}
    for type_url, names in ((CLUSTER, ()), (ENDPOINT, ("a", "b")), (LISTENER, ()), (ROUTE, ("r",))):
        await client.request(type_url, subscribe=names)
        got[type_url] = await client.recv()
        assert got[type_url].type_url == type_url
        await client.ack(got[type_url])
    st = proxy_status(client.node_id)
    assert st is not None
    await eventually(
        lambda: all(st.type(t).acked_version for t in ("cds", "eds", "lds", "rds")),
        "every ACK recorded",
    )
    return got


async def test_first_response_of_each_type(mesh: Mesh, delta: Any, proxy_status: StatusOf) -> None:
    snap = mesh.publish(NODE, base())
    async with delta(NODE) as client:
        got = await subscribe_all(client, proxy_status)
        st = proxy_status(NODE)
        assert st is not None and st.stream == "delta-ads"
    assert names_of(got[CLUSTER]) == ["a", "b"]
    assert names_of(got[ENDPOINT]) == ["a", "b"]
    assert names_of(got[LISTENER]) == ["http"]
    assert names_of(got[ROUTE]) == ["r"]
    for type_url, resp in got.items():
        assert resp.system_version_info == snap.version(type_url)
        assert versions(resp) == {n: r.version for n, r in snap.of_type(type_url).items()}
        assert list(resp.removed_resources) == []
    assert len({r.nonce for r in got.values()}) == 4


async def test_ack_moves_the_acked_version(mesh: Mesh, delta: Any, proxy_status: StatusOf) -> None:
    snap = mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await client.request(CLUSTER)
        resp = await client.recv()
        st = proxy_status(NODE)
        assert st is not None
        sent = (snap.version(CLUSTER), resp.nonce)
        # recorded once the server's write completes, which may trail our read
        await eventually(
            lambda: (st.type("cds").sent_version, st.type("cds").sent_nonce) == sent,
            "push recorded",
        )
        await client.ack(resp)
        await eventually(
            lambda: st.type("cds").acked_version == snap.version(CLUSTER), "ACK recorded"
        )


async def test_nack_is_recorded_not_answered_and_the_next_change_is_pushed(
    mesh: Mesh, delta: Any, proxy_status: StatusOf, metrics: Metrics
) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await subscribe_all(client, proxy_status)
        v2 = mesh.publish(NODE, base(a_port=9101))
        bad = await client.recv()
        assert (bad.type_url, names_of(bad)) == (ENDPOINT, ["a"])

        detail = "malformed IP address: 127.0.0.1.1. Consider setting resolver_name"
        await client.nack(bad, detail)
        await client.expect_silence()
        st = proxy_status(NODE)
        assert st is not None
        await eventually(lambda: st.type("eds").last_nack is not None, "NACK recorded")
        nack = st.type("eds").last_nack
        assert nack is not None
        assert (nack.version, nack.nonce, nack.message) == (
            v2.version(ENDPOINT),
            bad.nonce,
            detail,
        )
        assert metrics.registry.get_sample_value("legation_xds_nacks_total", {"type": "eds"}) == 1

        mesh.publish(NODE, [*base(a_port=9101)[:3], cla("b", 9202), *base()[4:]])
        fixed = await client.recv()
        # Not a resend of the rejected config, but the next change: it carries the
        # rejected `a` again, since the client kept its older `a` (as a SotW client
        # does; see delta.py and tests/e2e/test_core_proxies.py for a real Envoy).
        assert (fixed.type_url, names_of(fixed)) == (ENDPOINT, ["a", "b"])


async def test_reconnect_with_initial_resource_versions(mesh: Mesh, delta: Any) -> None:
    snap = mesh.publish(NODE, base())
    held = {
        "a": snap.of_type(CLUSTER)["a"].version,  # current: not re-sent
        "b": "an-older-version",  # changed while away: sent
        "gone": "whatever",  # no longer exists: removed
    }
    async with delta(NODE) as client:
        await client.request(CLUSTER, initial=held)
        resp, removal = await client.recv_all(2)  # on ADS, cluster removals go last
        assert (names_of(resp), list(resp.removed_resources)) == (["b"], [])
        assert (names_of(removal), list(removal.removed_resources)) == ([], ["gone"])
        await client.ack(removal)

        await client.request(ENDPOINT, subscribe=["a", "b"], initial={"a": cla("a", 9001).version})
        eds = await client.recv()
        assert names_of(eds) == ["b"]
        assert list(eds.removed_resources) == []


async def test_reconnect_holding_everything_gets_an_empty_answer(mesh: Mesh, delta: Any) -> None:
    snap = mesh.publish(NODE, base())
    held = {n: r.version for n, r in snap.of_type(LISTENER).items()}
    async with delta(NODE) as client:
        await client.request(LISTENER, initial=held)
        resp = await client.recv()
        assert (names_of(resp), list(resp.removed_resources)) == ([], [])
        assert resp.system_version_info == snap.version(LISTENER)
        await client.ack(resp)
        await client.expect_silence()


async def test_eds_subscribe_and_unsubscribe(mesh: Mesh, delta: Any) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await client.request(ENDPOINT, subscribe=["a"])
        r1 = await client.recv()
        assert names_of(r1) == ["a"]
        await client.ack(r1)

        await client.request(ENDPOINT, subscribe=["b"])
        r2 = await client.recv()
        assert names_of(r2) == ["b"]  # a is held already
        await client.ack(r2)

        await client.request(ENDPOINT, unsubscribe=["a"])
        await client.expect_silence()  # the client drops a itself
        mesh.publish(NODE, base(a_port=9101))
        await client.expect_silence()  # a changed, but nobody wants it

        mesh.publish(NODE, [*base(a_port=9101)[:3], cla("b", 9202), *base()[4:]])
        r3 = await client.recv()
        assert names_of(r3) == ["b"]
        await client.ack(r3)

        await client.request(ENDPOINT, subscribe=["a"])  # back: sent again
        r4 = await client.recv()
        assert names_of(r4) == ["a"]


async def test_wildcard_removal_is_sent_as_removed_resources(
    mesh: Mesh, delta: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await client.request(LISTENER)
        await client.ack(await client.recv())
        mesh.publish(NODE, [r for r in base() if r.type_url != LISTENER] + [listener("tcp", 15003)])
        resp = await client.recv()
    assert names_of(resp) == ["tcp"]
    assert list(resp.removed_resources) == ["http"]


async def test_endpoint_only_change_pushes_only_the_changed_cla(
    mesh: Mesh, delta: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await subscribe_all(client, proxy_status)
        snap = mesh.publish(NODE, [*base()[:3], cla("b", 9002, 9003), *base()[4:]])
        resp = await client.recv()
        assert (resp.type_url, names_of(resp)) == (ENDPOINT, ["b"])
        assert versions(resp) == {"b": snap.of_type(ENDPOINT)["b"].version}
        await client.ack(resp)
        await client.expect_silence()


async def test_push_order_is_make_before_break(
    mesh: Mesh, delta: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await subscribe_all(client, proxy_status)
        mesh.publish(
            NODE,
            [
                cluster("a"),
                cluster("c"),
                cla("a", 9101),
                cla("c", 9003),
                listener("http", 15002),
                route("r", "c"),
            ],
        )
        pushed = await client.recv_all(2)
        # Cluster c is new: until the client ACKs it (Envoy does once it has warmed,
        # i.e. got its endpoints), nothing that may lead to it goes out.
        await client.expect_silence()
        await client.ack(pushed[0])
        pushed += await client.recv_all(4)
        await client.expect_silence()
    got = [(r.type_url, names_of(r), list(r.removed_resources)) for r in pushed]
    assert got == [
        (CLUSTER, ["c"], []),  # additions first, removals held back
        (ENDPOINT, ["a"], []),  # c is not subscribed yet: Envoy asks after CDS
        (LISTENER, ["http"], []),  # after the CDS ACK
        (ROUTE, ["r"], []),
        (ENDPOINT, [], ["b"]),  # then what nothing leads to any more
        (CLUSTER, [], ["b"]),
    ]


async def test_updated_cluster_gets_its_endpoints_again(
    mesh: Mesh, delta: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await subscribe_all(client, proxy_status)
        mesh.publish(NODE, base(a_timeout=5))
        pushed = await client.recv_all(2)
        await client.expect_silence()
    assert [(r.type_url, names_of(r)) for r in pushed] == [(CLUSTER, ["a"]), (ENDPOINT, ["a"])]


async def test_wildcard_rules_follow_the_spec_example(mesh: Mesh, delta: Any) -> None:
    """xDS spec, "How the client specifies what resources to return", incremental example."""
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await client.request(CLUSTER)  # no names on the first request: wildcard
        r1 = await client.recv()
        assert names_of(r1) == ["a", "b"]
        await client.ack(r1)
        await client.request(CLUSTER, subscribe=["a"])  # newly named: sent again
        r2 = await client.recv()
        assert names_of(r2) == ["a"]
        await client.ack(r2)
        await client.request(CLUSTER, unsubscribe=["*"])  # a only; the client drops b
        await client.request(CLUSTER, unsubscribe=["a"])  # nothing, not wildcard again
        await client.expect_silence()
        mesh.publish(NODE, base(a_timeout=4))
        await client.expect_silence()
        await client.request(CLUSTER, subscribe=["b"])
        r3 = await client.recv()
        assert (names_of(r3), list(r3.removed_resources)) == (["b"], [])


def with_virtual_hosts(*hosts: Resource) -> list[Resource]:
    return [*base(), *hosts]


async def test_virtual_hosts_go_to_a_legacy_wildcard_and_by_configuration_name(
    mesh: Mesh, delta: Any
) -> None:
    """VHDS: Envoy's first VirtualHost request names nothing and wants the virtual hosts
    of its route configurations; a configuration's name covers every ``<name>/<host>``."""
    hosts = [virtual_host("r/a.shop:80", "a", "a"), virtual_host("r/b.shop:80", "b", "b"),
             virtual_host("s/c.shop:80", "c", "a")]
    mesh.publish(NODE, with_virtual_hosts(*hosts))
    async with delta(NODE) as client:
        await client.request(VIRTUAL_HOST)
        resp = await client.recv()
        assert names_of(resp) == ["r/a.shop:80", "r/b.shop:80", "s/c.shop:80"]
        await client.ack(resp)
        # b's virtual host changes, c's goes: just those
        mesh.publish(NODE, with_virtual_hosts(hosts[0], virtual_host("r/b.shop:80", "b", "a")))
        resp = await client.recv()
        assert names_of(resp) == ["r/b.shop:80"] and list(resp.removed_resources) == [
            "s/c.shop:80"]
        await client.ack(resp)
        await client.expect_silence()
    async with delta("other.shop") as client:
        mesh.publish("other.shop", with_virtual_hosts(*hosts))
        await client.request(VIRTUAL_HOST, subscribe=["r"])
        resp = await client.recv()
        assert names_of(resp) == ["r/a.shop:80", "r/b.shop:80"]  # namespace r only
        await client.ack(resp)
        await client.request(VIRTUAL_HOST, unsubscribe=["r"], subscribe=["s"])
        resp = await client.recv()
        assert names_of(resp) == ["s/c.shop:80"]


async def test_sotw_ignores_virtual_host_requests(mesh: Mesh, sotw: Any) -> None:
    """VHDS is delta only (Envoy refuses it over SotW): a SotW ADS stream does not serve it."""
    mesh.publish(NODE, with_virtual_hosts(virtual_host("r/a.shop:80", "a", "a")))
    async with sotw(NODE) as client:
        await client.request(VIRTUAL_HOST, ["r"])
        await client.expect_silence()
        await client.request(CLUSTER, [])
        assert (await client.recv()).type_url == CLUSTER


async def test_a_nack_of_new_clusters_releases_what_waited_for_them(
    mesh: Mesh, delta: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with delta(NODE) as client:
        await subscribe_all(client, proxy_status)
        mesh.publish(NODE, [*base()[:4], cluster("c"), listener("http", 15002), route("r", "c")])
        resp = await client.recv()
        assert (resp.type_url, names_of(resp)) == (CLUSTER, ["c"])
        await client.expect_silence()  # the listener and route wait for c to warm
        await client.nack(resp, "c: no such thing")
        rest = await client.recv_all(2)
        assert [r.type_url for r in rest] == [LISTENER, ROUTE]


async def test_on_demand_clusters_and_virtual_hosts_go_by_name_and_alias(
    mesh: Mesh, delta: Any
) -> None:
    """An on-demand snapshot: the wildcard gets the proxy's own resources; outbound
    clusters go when named (on-demand CDS), virtual hosts when an alias finds them,
    with the alias listed, and an alias nothing answers gets a resource-less entry."""
    shared = [cluster("a"), cluster("b"), virtual_host("http_proxy/a", "a.shop:80", "a")]
    own = [cluster("inbound|9080||"), route("http_proxy", "a")]
    mesh.publish(NODE, own, shared=shared, by_name=frozenset({CLUSTER, VIRTUAL_HOST}))
    async with delta(NODE) as client:
        await client.request(CLUSTER)
        resp = await client.recv()
        assert names_of(resp) == ["inbound|9080||"]
        await client.ack(resp)
        await client.request(VIRTUAL_HOST)
        resp = await client.recv()
        assert names_of(resp) == []
        await client.ack(resp)

        await client.request(VIRTUAL_HOST, subscribe=["http_proxy/a.shop:80"])
        resp = await client.recv()
        [found] = resp.resources
        assert (found.name, list(found.aliases)) == ("http_proxy/a", ["http_proxy/a.shop:80"])
        assert found.HasField("resource")
        await client.ack(resp)
        await client.request(VIRTUAL_HOST, subscribe=["http_proxy/zzz:80"])
        resp = await client.recv()
        [missing] = resp.resources
        assert (missing.name, list(missing.aliases)) == ("http_proxy/zzz:80",
                                                        ["http_proxy/zzz:80"])
        assert not missing.HasField("resource")
        await client.ack(resp)

        await client.request(CLUSTER, subscribe=["a"])
        resp = await client.recv()
        assert names_of(resp) == ["a"]
        await client.ack(resp)
        await client.expect_silence()
