"""No private key on a plaintext listener: a snapshot view without key-bearing Secrets.

The plaintext xDS listener serves whoever connects (its streams need no
credential), over a connection anyone on the path can read. So by default
its streams get everything except Secrets that carry a private key (the
``default`` workload certificate); ``ROOTCA`` is public and still sent.
Such a proxy receives its listeners and clusters but cannot complete an
mTLS handshake: Envoy waits for the missing secret (`initial_fetch_timeout`),
then serves its plaintext paths only. `xds.secret_withheld` says so in the
log, once per node. Use the TLS listener with a credential
(`legation bootstrap --xds-tls`), or, for a loopback demo, start
`legation serve --insecure-plaintext-secrets`.

`WithoutPrivateKeys` is a `SnapshotCache` for `XdsServer`: it shares the
real cache's watches (so the pipeline sees the proxy connect) and filters
what streams read; each filtered snapshot is built once per published one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import structlog
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2

from legation.cache import SECRET, ProxyError, Resource, Snapshot, SnapshotCache, Watch

_log = structlog.get_logger("legation.xds")


def carries_private_key(resource: Resource) -> bool:
    if resource.type_url != SECRET:
        return False
    secret = secret_pb2.Secret.FromString(resource.body)
    return bool(secret.HasField("tls_certificate") or secret.HasField("session_ticket_keys"))


class WithoutPrivateKeys(SnapshotCache):
    """A view of `inner` whose snapshots hold no Secret with a private key."""

    def __init__(self, inner: SnapshotCache) -> None:
        super().__init__()  # the base's own state stays unused: everything goes to `inner`
        self._inner = inner
        self._views: dict[str, tuple[Snapshot, Snapshot]] = {}  # node -> (published, filtered)
        self._secret: dict[tuple[str, str], bool] = {}  # (name, version) -> carries a key

    def set(self, node_id: str, entry: Snapshot | ProxyError) -> None:
        self._inner.set(node_id, entry)

    def connected(self) -> list[str]:
        return self._inner.connected()

    def vhds(self, node_id: str) -> bool:
        return self._inner.vhds(node_id)

    def get(self, node_id: str) -> Snapshot | ProxyError | None:
        entry = self._inner.get(node_id)
        if not isinstance(entry, Snapshot):
            return entry
        view = self._views.get(node_id)
        if view is None or view[0] is not entry:
            view = (entry, self._filter(node_id, entry))
            self._views[node_id] = view
        return view[1]

    @contextmanager
    def watch(self, node_id: str, *, vhds: bool = False) -> Iterator[Watch]:
        try:
            with self._inner.watch(node_id, vhds=vhds) as w:
                yield w
        finally:
            if self._inner.get(node_id) is None:  # the node's last stream closed
                self._views.pop(node_id, None)

    def _filter(self, node_id: str, snapshot: Snapshot) -> Snapshot:
        withheld = [r.name for r in snapshot.of_type(SECRET).values() if self._keyed(r)]
        if not withheld:
            return snapshot
        if node_id not in self._views:
            _log.info(
                "xds.secret_withheld",
                node=node_id,
                secrets=sorted(withheld),
                reason="plaintext xDS listener; use the TLS listener with a credential, "
                "or --insecure-plaintext-secrets on a trusted network",
            )
        return snapshot.without(SECRET, withheld)

    def _keyed(self, r: Resource) -> bool:
        if r.type_url != SECRET:
            return False
        key = (r.name, r.version)
        found = self._secret.get(key)
        if found is None:
            if len(self._secret) > 4096:
                self._secret.clear()
            found = self._secret[key] = carries_private_key(r)
        return found
