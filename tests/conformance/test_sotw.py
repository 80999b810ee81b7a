"""State-of-the-world ADS against a real server: versions, nonces, ACK/NACK, EDS, order."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog

from legation.cache import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, version_of
from legation.metrics import Metrics
from legation.xds.status import ProxyStatus

from .xds_harness import Mesh, cla, cluster, eventually, listener, names_of, route

NODE = "productpage.shop"
ENVOY_NACK = (
    "Proto constraint validation failed (ClusterValidationError.ConnectTimeout: "
    'value must be greater than 0s): name: "a"'
)

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


async def subscribe_all(client: Any, proxy_status: StatusOf) -> dict[str, Any]:
    """CDS (wildcard), EDS a+b, LDS (wildcard), RDS r; every response ACKed and settled."""
    got: dict[str, Any] = {}
    for type_url, names in (
        (CLUSTER, ()),
        (ENDPOINT, ("a", "b")),
        (LISTENER, ()),
        (ROUTE, ("r",)),
    ):
        await client.request(type_url, names)
        got[type_url] = await client.recv()
        assert got[type_url].type_url == type_url
        await client.ack(got[type_url], names)
    st = proxy_status(client.node_id)
    assert st is not None
    await eventually(
        lambda: all(st.type(t).acked_version for t in ("cds", "eds", "lds", "rds")),
        "every ACK recorded",
    )
    return got


async def test_first_response_of_each_type(mesh: Mesh, sotw: Any, proxy_status: StatusOf) -> None:
    snap = mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        got = await subscribe_all(client, proxy_status)
    assert names_of(got[CLUSTER]) == ["a", "b"]
    assert names_of(got[ENDPOINT]) == ["a", "b"]
    assert names_of(got[LISTENER]) == ["http"]
    assert names_of(got[ROUTE]) == ["r"]
    for type_url, resp in got.items():
        assert resp.version_info == snap.version(type_url)
        assert resp.nonce
    assert len({r.nonce for r in got.values()}) == 4, "every response has a fresh nonce"


async def test_eds_only_sends_the_subscribed_names(mesh: Mesh, sotw: Any) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await client.request(ENDPOINT, ["b"])
        resp = await client.recv()
    assert names_of(resp) == ["b"]


async def test_ack_moves_the_acked_version(mesh: Mesh, sotw: Any, proxy_status: StatusOf) -> None:
    snap = mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await client.request(CLUSTER)
        resp = await client.recv()
        st = proxy_status(NODE)
        assert st is not None and st.stream == "ads"
        sent = (snap.version(CLUSTER), resp.nonce)
        # recorded once the server's write completes, which may trail our read
        await eventually(
            lambda: (st.type("cds").sent_version, st.type("cds").sent_nonce) == sent,
            "push recorded",
        )
        assert st.type("cds").acked_version == ""
        await client.ack(resp)
        await eventually(
            lambda: st.type("cds").acked_version == snap.version(CLUSTER), "ACK recorded"
        )
        assert st.type("cds").last_nack is None
        assert st.type("cds").pushes == 1
    await eventually(lambda: proxy_status(NODE) is None, "stream closed on the board")


async def test_nack_is_recorded_not_answered_and_the_next_change_is_pushed(
    mesh: Mesh, sotw: Any, proxy_status: StatusOf, metrics: Metrics
) -> None:
    v1 = mesh.publish(NODE, base())
    with structlog.testing.capture_logs() as logs:
        async with sotw(NODE) as client:
            await client.request(CLUSTER)
            first = await client.recv()
            await client.ack(first)
            st = proxy_status(NODE)
            assert st is not None
            # Let the ACK land first: once v2 is sent, an ACK of v1 would be stale.
            await eventually(lambda: st.type("cds").acked_version != "", "ACK of v1 recorded")
            v2 = mesh.publish(NODE, base(a_timeout=2))
            bad = await client.recv()
            assert bad.version_info == v2.version(CLUSTER) != v1.version(CLUSTER)

            await client.nack(bad, ENVOY_NACK, good_version=first.version_info)
            await client.expect_silence()  # no resend of the rejected config
            await eventually(lambda: st.type("cds").last_nack is not None, "NACK recorded")
            nack = st.type("cds").last_nack
            assert nack is not None
            assert (nack.version, nack.nonce, nack.message) == (
                v2.version(CLUSTER),
                bad.nonce,
                ENVOY_NACK,
            )
            assert st.type("cds").acked_version == v1.version(CLUSTER)
            assert (
                metrics.registry.get_sample_value("legation_xds_nacks_total", {"type": "cds"}) == 1
            )

            v3 = mesh.publish(NODE, base(a_timeout=3))
            fixed = await client.recv()
            assert fixed.version_info == v3.version(CLUSTER)
            assert names_of(fixed) == ["a", "b"]
    nacks = [e for e in logs if e["event"] == "xds.nack"]
    assert len(nacks) == 1
    assert nacks[0]["log_level"] == "warning"
    assert nacks[0]["node"] == NODE
    assert nacks[0]["type_url"] == CLUSTER
    assert nacks[0]["detail"] == ENVOY_NACK
    assert nacks[0]["nonce"] == bad.nonce


async def test_stale_nonce_is_ignored(mesh: Mesh, sotw: Any, proxy_status: StatusOf) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await client.request(ENDPOINT, ["a"])
        old = await client.recv()
        mesh.publish(NODE, base(a_port=9101))
        new = await client.recv()
        assert names_of(new) == ["a"] and new.nonce != old.nonce

        # Answers the superseded response: no answer, not even to its new names,
        # and a NACK carrying it is not recorded.
        await client.request(ENDPOINT, ["a", "b"], version=old.version_info, nonce=old.nonce)
        await client.request(
            ENDPOINT, ["a", "b"], version=old.version_info, nonce=old.nonce, error="stale"
        )
        await client.expect_silence()
        st = proxy_status(NODE)
        assert st is not None and st.type("eds").last_nack is None

        await client.request(ENDPOINT, ["a", "b"], version=new.version_info, nonce=new.nonce)
        answer = await client.recv()
        assert names_of(answer) == ["b"]


async def test_eds_subscribe_and_unsubscribe(mesh: Mesh, sotw: Any) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await client.request(ENDPOINT, ["a"])
        r1 = await client.recv()
        assert names_of(r1) == ["a"]

        await client.ack(r1, ["a", "b"])  # subscribe b: only b is new to the client
        r2 = await client.recv()
        assert names_of(r2) == ["b"]

        await client.ack(r2, ["b"])  # unsubscribe a: answered, nothing to carry
        r3 = await client.recv()
        assert names_of(r3) == []
        await client.ack(r3, ["b"])

        mesh.publish(NODE, base(a_port=9101))  # a changes, but nobody wants it
        await client.expect_silence()

        await client.ack(r3, ["a", "b"])  # a again: sent, since newly requested
        r4 = await client.recv()
        assert names_of(r4) == ["a"]


async def test_endpoint_only_change_pushes_only_the_changed_cla(
    mesh: Mesh, sotw: Any, proxy_status: StatusOf, metrics: Metrics
) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await subscribe_all(client, proxy_status)
        snap = mesh.publish(
            NODE,
            [*base()[:3], cla("b", 9002, 9003), *base()[4:]],
            changed_at=time.monotonic(),
        )
        resp = await client.recv()
        assert resp.type_url == ENDPOINT
        assert names_of(resp) == ["b"]
        assert resp.version_info == snap.version(ENDPOINT)
        await client.ack(resp, ["a", "b"])
        await client.expect_silence()  # no CDS, LDS, RDS, and not CLA a
    latency = metrics.registry.get_sample_value(
        "legation_xds_push_latency_seconds_count", {"type": "eds"}
    )
    assert latency == 1  # observed at write time, for the one snapshot with a changed_at


async def test_push_order_is_make_before_break(
    mesh: Mesh, sotw: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await subscribe_all(client, proxy_status)
        # c replaces b: a's endpoints move, the listener and route change.
        snap = mesh.publish(
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
        pushed += await client.recv_all(3)
        await client.expect_silence()
    assert [(r.type_url, names_of(r)) for r in pushed] == [
        (CLUSTER, ["a", "b", "c"]),  # new clusters first, b kept while still in use
        (ENDPOINT, ["a"]),  # c is not subscribed yet: Envoy asks after CDS
        (LISTENER, ["http"]),  # after the CDS ACK
        (ROUTE, ["r"]),
        (CLUSTER, ["a", "c"]),  # b removed last
    ]
    assert pushed[-1].version_info == snap.version(CLUSTER)
    assert pushed[0].version_info != pushed[-1].version_info


async def test_updated_cluster_gets_its_endpoints_again(
    mesh: Mesh, sotw: Any, proxy_status: StatusOf
) -> None:
    """Envoy re-warms an updated EDS cluster and waits for its CLA: re-send it."""
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await subscribe_all(client, proxy_status)
        mesh.publish(NODE, base(a_timeout=5))
        pushed = await client.recv_all(2)
        await client.expect_silence()
    assert [(r.type_url, names_of(r)) for r in pushed] == [
        (CLUSTER, ["a", "b"]),
        (ENDPOINT, ["a"]),
    ]


async def test_reconnect_at_the_current_version_is_not_resent(mesh: Mesh, sotw: Any) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await client.request(CLUSTER)
        first = await client.recv()
    async with sotw(NODE) as client:
        await client.request(CLUSTER, version=first.version_info)
        await client.expect_silence()
        await client.request(LISTENER, version="some-older-version")
        assert names_of(await client.recv()) == ["http"]


async def test_removed_cluster_alone_goes_out_once(
    mesh: Mesh, sotw: Any, proxy_status: StatusOf
) -> None:
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await subscribe_all(client, proxy_status)
        rest = [r for r in base() if r.name != "b"]
        snap = mesh.publish(NODE, rest)
        resp = await client.recv()
        await client.expect_silence()
    assert (resp.type_url, names_of(resp)) == (CLUSTER, ["a"])
    assert resp.version_info == snap.version(CLUSTER) == version_of(dict(snap.of_type(CLUSTER)))


async def test_wildcard_rules_follow_the_spec_example(mesh: Mesh, sotw: Any) -> None:
    """xDS spec, "How the client specifies what resources to return", SotW example."""
    mesh.publish(NODE, base())
    async with sotw(NODE) as client:
        await client.request(CLUSTER)  # never named anything: wildcard
        r1 = await client.recv()
        assert names_of(r1) == ["a", "b"]
        await client.ack(r1, ["*", "a"])  # wildcard plus a: still everything
        r2 = await client.recv()
        assert names_of(r2) == ["a", "b"]
        await client.ack(r2, ["a"])  # wildcard dropped
        r3 = await client.recv()
        assert names_of(r3) == ["a"]
        await client.ack(r3, [])  # not wildcard again: nothing at all
        r4 = await client.recv()
        assert names_of(r4) == []
        await client.ack(r4, [])
        mesh.publish(NODE, base(a_timeout=4))
        await client.expect_silence()
