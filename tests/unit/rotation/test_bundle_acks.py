"""BundleAcks: which connected proxies have ACKed an SDS version whose ROOTCA holds a root."""

from __future__ import annotations

import contextlib
import random
from datetime import UTC, datetime
from pathlib import Path

from legation.cache import SECRET, Snapshot, SnapshotCache
from legation.security import CertificateAuthority, CertificateIssuer
from legation.security.workload_secrets import WorkloadSecrets
from legation.xds.bundleacks import BundleAcks
from legation.xds.keys import WithoutPrivateKeys
from legation.xds.status import StatusBoard

from .helpers import TD, workload

NOW = datetime(2030, 1, 1, tzinfo=UTC)


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.ca = CertificateAuthority.load_or_create(tmp_path, trust_domain=TD, clock=lambda: NOW)
        issuer = CertificateIssuer(self.ca, clock=lambda: NOW, rng=random.Random(1))
        self.secrets = WorkloadSecrets(issuer, self.ca)
        self.cache = SnapshotCache()
        self.status = StatusBoard()
        self.acks = BundleAcks(self.status, self.cache)
        self.stack = contextlib.ExitStack()

    def connect(self, name: str) -> None:
        self.stack.enter_context(self.cache.watch(f"{name}.shop"))
        self.publish(name)

    def publish(self, name: str) -> Snapshot:
        snap = Snapshot.build(self.secrets.resources_for(f"{name}.shop", workload(name, "sa")))
        self.cache.set(f"{name}.shop", snap)
        return snap

    def stream(self, name: str, acked: str) -> None:
        _, st = self.status.open(f"{name}.shop", "ads")
        st.type("sds").acked_version = acked

    def new_root(self) -> str:
        self.ca.stage_new_root()
        return self.ca.trust_bundle().roots_pem[-1]


def test_only_versions_whose_rootca_holds_the_root_count(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.connect("a")
    before = s.cache.get("a.shop")
    assert isinstance(before, Snapshot)
    s.stream("a", before.version(SECRET))
    root = s.new_root()
    assert s.acks.pending(root).pending == ("a.shop",)  # the snapshot is still the old one
    after = s.publish("a")
    assert s.acks.pending(root).pending == ("a.shop",)  # sent, not ACKed
    s.status.all()[0].types["sds"].acked_version = after.version(SECRET)
    state = s.acks.pending(root)
    assert state.pending == () and state.streams == 1


def test_a_good_version_still_counts_after_a_later_push(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.connect("a")
    root = s.new_root()
    good = s.publish("a").version(SECRET)
    s.acks.pending(root)  # seen once
    s.ca.activate_staged_root()  # a new leaf later: another SDS version, not yet ACKed
    s.secrets.release("a.shop")
    s.publish("a")
    s.stream("a", good)
    assert s.acks.pending(root).pending == ()


def test_the_plaintext_view_without_keys_is_recognised(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.connect("a")
    root = s.new_root()
    s.publish("a")
    view = WithoutPrivateKeys(s.cache).get("a.shop")
    assert isinstance(view, Snapshot)
    s.stream("a", view.version(SECRET))
    assert s.acks.pending(root).pending == ()


def test_streams_without_secrets_or_without_a_rootca_are_not_waited_for(tmp_path: Path) -> None:
    s = Setup(tmp_path)
    s.connect("a")
    root = s.new_root()
    s.status.open("a.shop", "cds")[1].type("cds")  # a per-type stream: no SDS at all
    with s.cache.watch("ghost.shop"):  # connected, but its snapshot has no ROOTCA
        s.cache.set("ghost.shop", Snapshot.build([]))
        s.stream("ghost", "")
        state = s.acks.pending(root)
    assert state.pending == () and state.streams == 0
