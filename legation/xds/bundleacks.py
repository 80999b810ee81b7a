"""Which connected proxies hold a trust bundle that contains a given root.

Root rotation (legation/security/rotation.py) must not let a new root sign anything
before every proxy trusts it. A proxy trusts it once it has ACKed an SDS
response whose ``ROOTCA`` contains the root; the StatusBoard records, per
stream, the SDS version a proxy ACKed (`TypeStatus.acked_version`), which is
the content version of the whole set of Secrets it was sent
(`Snapshot.version(SECRET)`; the plaintext listener's view without private
keys has its own version, see legation/xds/keys.py).

`BundleAcks.pending(root_pem)` looks at each connected proxy's current
snapshot: when its ``ROOTCA`` contains the root, both versions of that
snapshot's Secrets are remembered as good; a stream whose ACKed SDS version is
not a good one is pending. Versions are remembered across calls, so a proxy
that ACKed a good version which a later snapshot (say, a certificate rotation)
already replaced still counts. Streams that never asked for Secrets, and
proxies whose snapshot has no ``ROOTCA`` (no identity, or a config error), are
not waited for. Runs on the event loop (the StatusBoard and the cache live there).
"""

from __future__ import annotations

from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from legation.cache import SECRET, Resource, Snapshot, SnapshotCache, short_name, version_of
from legation.security.rotation_state import AckState
from legation.translators import names
from legation.xds.keys import carries_private_key
from legation.xds.status import StatusBoard

_SDS = short_name(SECRET)


class BundleAcks:
    def __init__(self, status: StatusBoard, cache: SnapshotCache) -> None:
        self._status = status
        self._cache = cache
        self._root = ""  # the root the good versions are about
        self._good: set[str] = set()  # SDS versions whose ROOTCA contains it
        self._has: dict[str, bool] = {}  # ROOTCA resource version -> contains the root

    def pending(self, root_pem: str) -> AckState:
        """The proxies that have not ACKed a bundle with `root_pem` yet."""
        if root_pem != self._root:
            self._root, self._good, self._has = root_pem, set(), {}
        holders = self._learn()
        waiting: set[str] = set()
        streams = 0
        for proxy in self._status.all():
            st = proxy.types.get(_SDS)
            if st is None or proxy.node_id not in holders:
                continue
            streams += 1
            if st.acked_version not in self._good:
                waiting.add(proxy.node_id)
        return AckState(pending=tuple(sorted(waiting)), streams=streams)

    def _learn(self) -> set[str]:
        """Remember the good versions of the current snapshots; the nodes with a ROOTCA."""
        holders: set[str] = set()
        for node in self._cache.connected():
            entry = self._cache.get(node)
            if not isinstance(entry, Snapshot):
                continue
            secrets = entry.of_type(SECRET)
            bundle = secrets.get(names.ROOT_SECRET)
            if bundle is None:
                continue
            holders.add(node)
            if self._contains(bundle):
                self._good.add(entry.version(SECRET))
                keyless = {n: r for n, r in secrets.items() if not carries_private_key(r)}
                self._good.add(version_of(keyless))
        return holders

    def _contains(self, bundle: Resource) -> bool:
        found = self._has.get(bundle.version)
        if found is None:
            if len(self._has) > 1024:
                self._has.clear()
            secret = secret_pb2.Secret.FromString(bundle.body)
            found = self._root in secret.validation_context.trusted_ca.inline_string
            self._has[bundle.version] = found
        return found
