"""Two replicas sharing the CA Secret through a root rotation (in-process `App`s against
the emulated API server): only the Lease holder rotates; the other replica reloads each
step from the Secret and serves the new bundle, then new-root certificates, to its proxies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from legation.app import App
from legation.cache import SECRET, ProxyError, Snapshot
from legation.demo.http import request
from legation.security.certs import fingerprint

from .harness import Loopback, eventually
from .kube_lab import ApiServer, control_plane, kubeconfig, shop

pytestmark = pytest.mark.e2e

SYSTEM = "legation-system"
NODE = "catalog-1.shop"


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def _held(app: App) -> tuple[list[str], str]:
    """What `app` currently serves to NODE (see `_state`)."""
    snap = app.cache.get(NODE)
    assert isinstance(snap, Snapshot)
    return _state(snap)


def _state(snap: Snapshot) -> tuple[list[str], str]:
    """(fingerprints of the ROOTCA roots, fingerprint of the root that signed `default`)."""
    secrets = snap.of_type(SECRET)
    bundle = secret_pb2.Secret.FromString(secrets["ROOTCA"].body)
    roots = x509.load_pem_x509_certificates(
        bundle.validation_context.trusted_ca.inline_string.encode()
    )
    chain = secret_pb2.Secret.FromString(secrets["default"].body)
    leaf = x509.load_pem_x509_certificates(
        chain.tls_certificate.certificate_chain.inline_string.encode()
    )[0]
    signer = ""
    for root in roots:
        with contextlib.suppress(Exception):
            leaf.verify_directly_issued_by(root)
            signer = fingerprint(root)
    return [fingerprint(r) for r in roots], signer


def _record_published(app: App) -> list[tuple[list[str], str]]:
    """Every state `app` publishes for NODE from now on that differs from the one before
    it, in order. The state held now counts as the one before: a rebuild that republishes
    it (the pipeline may run one for an unrelated reason) is no change."""
    seen: list[tuple[list[str], str]] = []
    publish = app.cache.set
    held = app.cache.get(NODE)
    last = [_state(held)] if isinstance(held, Snapshot) else []

    def recording(node_id: str, entry: Snapshot | ProxyError) -> None:
        publish(node_id, entry)
        if node_id == NODE and isinstance(entry, Snapshot):
            state = _state(entry)
            if not last or last[-1] != state:
                seen.append(state)
                last[:] = [state]

    app.cache.set = recording  # type: ignore[method-assign]
    return seen


async def _post(app: App) -> tuple[int, dict[str, Any]]:
    assert app.settings.ca_dir is not None
    token = (app.settings.ca_dir / "admin-token").read_text().strip()
    resp = await request("127.0.0.1", app.admin.port, "POST", "/ca/rotate-root",
                         headers={"authorization": f"Bearer {token}"})
    body: dict[str, Any] = resp.json()
    return resp.status, body


async def test_only_the_leader_rotates_and_the_other_replica_follows(
    apiserver: ApiServer, loopback: Loopback, tmp_path: Path
) -> None:
    client_ip, catalog_ip = loopback.many(2)
    shop(apiserver, client_ip=client_ip, catalog_ips=(catalog_ip,))
    config = kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    common: dict[str, Any] = {"namespace": SYSTEM, "ca_secret_poll_s": 0.5}

    async with control_plane(config, ca_dir=tmp_path / "ca-one", replica_id="one",
                             **common) as one:  # fmt: skip
        assert one.ca_duties is not None
        rot_one = one.ca_duties.rotation

        async def leading() -> bool:
            return rot_one.leading

        await eventually(leading, what="replica one leading")
        async with control_plane(config, ca_dir=tmp_path / "ca-two", replica_id="two",
                                 **common) as two:  # fmt: skip
            assert two.ca_duties is not None and not two.ca_duties.rotation.leading
            with two.cache.watch(NODE):  # a proxy of replica two

                async def served() -> bool:
                    return isinstance(two.cache.get(NODE), Snapshot)

                await eventually(served, what="replica two serving its proxy")
                (old,), signer = _held(two)
                assert signer == old

                status, body = await _post(two)
                assert status == 409 and body["reason"] == "not-leader"
                assert "(one)" in body["message"]

                published = _record_published(two)
                status, body = await _post(one)
                assert status == 202
                new = str(body["fingerprint"])

                async def new_leaf() -> bool:
                    return _held(two) == ([old, new], new)

                await eventually(new_leaf, what="replica two signing with the new root")
                # make-before-break on the follower too: the bundle first, then the leaf
                assert published == [([old, new], old), ([old, new], new)]

            debug_two = (await request("127.0.0.1", two.admin.port, "GET", "/debug/ca")).json()
            assert debug_two["leading"] is False and debug_two["leader"] == "one"
            assert {r["fingerprint"]: r["state"] for r in debug_two["roots"]} == {
                old: "retiring", new: "active"}  # fmt: skip
            assert two.ca_duties.rotation.record is None  # it never rotated anything
            assert two.ca_duties.share is not None and two.ca_duties.share.reloads >= 2
            record = rot_one.record
            assert record is not None and record.root == new
            # the old root outlives every leaf replica two may have signed before it reloaded
            assert record.retires_at is not None and record.phase_at is not None
            assert record.retires_at - record.phase_at >= timedelta(hours=24)



async def test_a_rotation_left_half_done_by_a_leader_that_stops_is_finished_by_the_next(
    apiserver: ApiServer, loopback: Loopback, tmp_path: Path
) -> None:
    client_ip, catalog_ip = loopback.many(2)
    shop(apiserver, client_ip=client_ip, catalog_ips=(catalog_ip,))
    config = kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    # poll every second: the leader waits 3 s after staging before it activates
    common: dict[str, Any] = {"namespace": SYSTEM, "ca_secret_poll_s": 1.0}

    async with contextlib.AsyncExitStack() as first:
        one = await first.enter_async_context(
            control_plane(config, ca_dir=tmp_path / "ca-one", replica_id="one", **common))
        assert one.ca_duties is not None
        rot_one = one.ca_duties.rotation

        async def one_leads() -> bool:
            return rot_one.leading

        await eventually(one_leads, what="replica one leading")
        async with control_plane(config, ca_dir=tmp_path / "ca-two", replica_id="two",
                                 **common) as two:  # fmt: skip
            assert two.ca_duties is not None
            rot_two = two.ca_duties.rotation
            status, body = await _post(one)
            assert status == 202
            new = str(body["fingerprint"])
            await first.aclose()  # replica one stops before the new root signs anything
            assert one.security is not None
            assert any(r.fingerprint == new and str(r.state) == "staged"
                       for r in one.security.ca.roots())  # fmt: skip

            async def two_finished() -> bool:
                assert two.security is not None
                return two.security.ca.signer_fingerprint() == new

            await eventually(two_finished, timeout=20, what="replica two completing it")
            assert rot_two.leading
            assert rot_two.record is not None and rot_two.record.trigger == "resumed"
            assert rot_two.record.root == new
