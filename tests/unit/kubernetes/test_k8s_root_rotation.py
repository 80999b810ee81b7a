"""Replicas sharing the CA Secret through a root rotation, against the emulated API server:
the leader publishes each step (resourceVersion precondition), followers reload it,
a conflict or an unpublished step never survives locally."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from k8s import ApiServer

from legation.kube.casecret import SharedCA
from legation.kube.secretstore import CASecretStore, SecretConflict
from legation.model import SpiffeId
from legation.security import CAError, CertificateAuthority, RootState

NS = "legation-system"
TD = "cluster.local"


class Replica:
    """One replica's CA, loaded from its own copy of the Secret, and its SharedCA."""

    def __init__(self, api: Any, ca_dir: Path) -> None:
        store = CASecretStore(api, namespace=NS, sleep=lambda s: None, attempts=2)
        done = store.materialize(ca_dir)
        self.ca = CertificateAuthority.load_or_create(ca_dir, trust_domain=TD)
        self.reloaded: list[bool] = []
        self.share = SharedCA(store, self.ca, resource_version=done.resource_version,
                              istio_resource_version=done.istio_resource_version,
                              on_reloaded=self.reloaded.append, poll_s=0.05)  # fmt: skip

    def root(self, state: RootState) -> str:
        return next(r.fingerprint for r in self.ca.roots() if r.state is state)


def _roots_json(apiserver: ApiServer) -> dict[str, Any]:
    secret = apiserver.get("v1", "Secret", "legation-ca", NS)
    assert secret is not None
    doc: dict[str, Any] = json.loads(base64.b64decode(secret["data"]["roots.json"]))
    return doc


async def test_each_step_is_published_and_picked_up_by_the_other_replica(
    apiserver: ApiServer, api: Any, tmp_path: Path
) -> None:
    leader, follower = Replica(api, tmp_path / "a"), Replica(api, tmp_path / "b")
    old = leader.root(RootState.ACTIVE)
    assert follower.root(RootState.ACTIVE) == old
    leaf = follower.ca.issue(SpiffeId(trust_domain=TD, namespace="shop", service_account="a"),
                             ttl=timedelta(hours=1))  # fmt: skip

    await leader.share.change(leader.ca.stage_new_root)
    staged = leader.root(RootState.STAGED)
    assert [r["state"] for r in _roots_json(apiserver)["roots"]] == ["active", "staged"]
    await follower.share.sync()
    assert follower.ca.trust_bundle() == leader.ca.trust_bundle()
    assert follower.root(RootState.STAGED) == staged
    assert follower.reloaded == [False]  # the bundle changed, not the signer

    await follower.share.sync()  # nothing moved: no reload
    assert follower.reloaded == [False]

    # the leader does not know the follower's leaf: it keeps the old root trusted long enough
    await leader.share.change(lambda: leader.ca.activate_staged_root(
        trusted_until_at_least=leaf.not_after + timedelta(seconds=30)))  # fmt: skip
    await follower.share.sync()
    assert follower.root(RootState.ACTIVE) == staged
    assert follower.reloaded == [False, True]  # now it signs with the new root
    assert follower.ca.signer_fingerprint() == staged
    assert not (tmp_path / "b" / "root-key.pem").exists()  # the old key left with the step
    assert [r["state"] for r in _roots_json(apiserver)["roots"]] == ["retired", "active"]
    retired = next(r for r in follower.ca.roots() if r.state is RootState.RETIRED)
    assert retired.fingerprint == old
    assert retired.signed_until == leaf.not_after + timedelta(seconds=30)


async def test_a_step_taken_on_a_stale_secret_is_rejected_and_undone(
    apiserver: ApiServer, api: Any, tmp_path: Path
) -> None:
    one, two = Replica(api, tmp_path / "a"), Replica(api, tmp_path / "b")
    bundle = two.ca.trust_bundle()

    def stage_while_someone_else_writes() -> None:
        two.ca.stage_new_root()
        secret = apiserver.get("v1", "Secret", "legation-ca", NS)
        assert secret is not None
        secret["metadata"].setdefault("annotations", {})["edited-by"] = "an operator"
        apiserver.update(secret)  # moves the resourceVersion two read

    with pytest.raises(SecretConflict):
        await two.share.change(stage_while_someone_else_writes)
    assert two.ca.trust_bundle() == bundle  # the Secret won: the staged root is gone
    assert not any(r.state is RootState.STAGED for r in two.ca.roots())
    await one.share.change(one.ca.stage_new_root)  # the next step starts from the Secret
    await two.share.sync()
    assert two.ca.trust_bundle() == one.ca.trust_bundle()


async def test_a_step_that_could_not_be_published_is_undone_before_the_next(
    apiserver: ApiServer, api: Any, tmp_path: Path
) -> None:
    replica = Replica(api, tmp_path / "a")
    bundle = replica.ca.trust_bundle()
    apiserver.stop()
    with pytest.raises(CAError, match="cannot be reached"):  # no step without reading first
        await replica.share.change(replica.ca.stage_new_root)
    assert replica.ca.trust_bundle() == bundle
    apiserver.start()

    def stage_then_lose_the_api_server() -> None:
        replica.ca.stage_new_root()
        apiserver.stop()

    with pytest.raises(CAError, match="cannot be reached"):
        await replica.share.change(stage_then_lose_the_api_server)
    assert len(replica.ca.trust_bundle().roots_pem) == 2  # local only, not published
    apiserver.start()
    await replica.share.sync()
    assert replica.ca.trust_bundle() == bundle
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert {n for n in files if n.startswith("root-")} == {"root-cert.pem", "root-key.pem"}
