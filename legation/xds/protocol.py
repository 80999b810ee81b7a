"""What the SotW and delta stream protocols share.

A stream protocol (`sotw.SotwProtocol`, `delta.DeltaProtocol`) is a plain,
synchronous state machine: `on_request` digests one request from the client
(ACK, NACK, subscription change) and says whether the writer must run;
`responses(snapshot)` yields what the client lacks, in push order. The
driver in `stream.py` owns the gRPC call and the tasks. This module holds
the parts both protocols need: the type gate of a stream, nonces, the
ACK/NACK bookkeeping (StatusBoard, log, metrics) and the EDS re-send rule
for updated clusters.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
import structlog
from envoy.config.cluster.v3 import cluster_pb2

from legation.cache import (
    CLUSTER,
    DELTA_ONLY,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    VIRTUAL_HOST,
    Resource,
    Snapshot,
    short_name,
)
from legation.metrics import Metrics
from legation.xds.limits import MAX_DETAIL_CHARS, clip
from legation.xds.status import Nack, ProxyStatus
from legation.xds.subscription import NameTable, Subscription


class StreamRejected(Exception):
    """End the stream with this gRPC status (raised anywhere inside a stream)."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One response, built and nonce-stamped, waiting to be written."""

    type_url: str
    version: str
    nonce: str
    message: bytes  # an encoded DiscoveryResponse | DeltaDiscoveryResponse (cache/wire.py)
    snapshot: Snapshot


@dataclass(slots=True, kw_only=True)
class StreamEnv:
    """Who is on the other end of a stream, and where its story is recorded."""

    node_id: str
    kind: str  # "ads", "delta-ads", "cds", "delta-cds", ...
    types: tuple[str, ...]  # the types this stream may carry, in push order
    status: ProxyStatus
    metrics: Metrics
    log: Any  # structlog bound logger (node, stream, peer)
    names: NameTable | None = None  # shares equal subscriptions between streams
    # per type, the changed_at whose push latency was observed (not the snapshot:
    # a stream must not keep superseded snapshots alive)
    observed: dict[str, float] = field(default_factory=dict)

    @property
    def aggregated(self) -> bool:
        return len(self.types) > 1

    @property
    def incremental(self) -> bool:
        return self.kind.startswith("delta-")


class StreamProtocol(Protocol):
    def on_request(self, request: Any) -> bool:
        """Digest one request; True if the writer has something to (re)consider."""
        ...

    def responses(self, snapshot: Snapshot) -> Iterator[Outgoing]:
        """What the client lacks from `snapshot`, one response at a time, in push order."""
        ...

    def close(self) -> None: ...


@dataclass(slots=True)
class TypeStateBase:
    """Per-type stream state both variants keep: the subscription and the diff gate."""

    sub: Subscription
    answer: bool = True  # a request (first one, new names) awaits an answer
    diffed: str = ""  # snapshot version of the type at the last diff (see `fresh`)
    # The snapshot of the last diff: the next one looks only at the names that changed
    # since (`Snapshot.changed_since`) and at `resend`; None compares everything.
    last: Snapshot | None = None
    resend: set[str] = field(default_factory=set)  # names to look at again in the next diff

    def candidates(self, snapshot: Snapshot) -> set[str] | None:
        """Names the diff against `snapshot` must look at; None: every subscribed one."""
        last, self.last = self.last, snapshot
        names = snapshot.changed_since(last, self.sub.type_url) if last is not None else None
        if names is not None:
            names |= self.resend
        self.resend.clear()
        return names

    def reconsider(self, name: str) -> None:
        """Look at `name` again in the next diff (newly subscribed, re-warmed, NACKed);
        when that diff runs is the caller's business (`answer`, `diffed`). Before the
        first diff there is nothing to do: it looks at every name."""
        if self.last is not None:
            self.resend.add(name)

    def fresh(self, snapshot: Snapshot) -> bool:
        """Whether a diff can find anything: a new version or a pending answer.

        The diff depends only on the type's resources (named by its content
        version), the subscription and what the client holds; whatever changes
        the latter two outside a diff sets `answer` or clears `diffed`. So a push
        touching one type costs the other types of every stream a string comparison.
        """
        version = snapshot.version(self.sub.type_url)
        if not self.answer and version == self.diffed:
            return False
        self.diffed = version
        return True


# What may lead to a cluster: on ADS, held while clusters the client did not have warm.
HELD_WHILE_WARMING: frozenset[str] = frozenset({LISTENER, ROUTE, VIRTUAL_HOST})


@dataclass(slots=True)
class ProtocolBase:
    """Type gate, nonces, ACK/NACK recording and the warming hold shared by SotW and delta.

    Warming hold (ADS only): a CDS response that adds clusters the client did not
    hold is answered by Envoy only once those clusters have warmed, i.e. have their
    endpoints (Envoy's ClusterManagerImpl pauses CDS while clusters warm, so its ACK
    tells the server to go on with what routes to them). Until that ACK (or a NACK)
    listeners, routes and virtual hosts wait, and so do cluster removals (make before
    break): otherwise a route to a new subset cluster is in force while the cluster
    still waits for its ClusterLoadAssignment, and requests get "unknown cluster".
    """

    env: StreamEnv
    _nonces: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _subscribed: set[str] = field(default_factory=set)
    _ignored: set[str] = field(default_factory=set)
    _warming: int = 0  # nonce of the latest CDS response that added clusters; 0: none

    def holding(self, type_url: str) -> bool:
        """Whether `type_url` waits for new clusters to warm (see the class docstring)."""
        return self._warming != 0 and type_url in HELD_WHILE_WARMING

    @property
    def warming(self) -> bool:
        return self._warming != 0

    def clusters_added(self, nonce: str) -> None:
        """A CDS response with this nonce brought clusters the client did not hold."""
        if self.env.aggregated:
            self._warming = int(nonce, 16)

    def clusters_answered(self, nonce: str) -> bool:
        """A CDS ACK/NACK arrived; True if it ends the warming hold (the writer must run).
        Responses are answered in order, so an answer to a later one settles it too."""
        try:
            answered = int(nonce, 16) if nonce else 0
        except ValueError:
            return False  # not one of ours
        if self._warming and answered >= self._warming:
            self._warming = 0
            return True
        return False

    def gate(self, type_url: str) -> str | None:
        """The type a request is about, None to ignore it; rejects misplaced types.

        Per-type services may leave type_url empty; ADS must name it (xDS spec,
        "Aggregated Discovery Service").
        """
        env = self.env
        if not env.aggregated:
            if type_url in ("", env.types[0]):
                return env.types[0]
            raise StreamRejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"type {type_url!r} cannot be requested on a {env.kind} stream, "
                f"which only carries {env.types[0]}",
            )
        if not type_url:
            raise StreamRejected(
                grpc.StatusCode.INVALID_ARGUMENT, "a request on an ADS stream must set type_url"
            )
        if type_url not in PUSH_ORDER or (type_url in DELTA_ONLY and not env.incremental):
            if type_url not in self._ignored:
                self._ignored.add(type_url)
                env.log.info("xds.unsupported_type", type_url=type_url)
            return None
        return type_url

    def next_nonce(self) -> str:
        """A fresh nonce, unique on this stream (nonces never outlive a stream)."""
        return format(next(self._nonces), "x")

    def subscribed(self, type_url: str) -> None:
        """Count the stream's first request for a type."""
        if type_url not in self._subscribed:
            self._subscribed.add(type_url)
            self.env.metrics.xds_connected_proxies.labels(type=short_name(type_url)).inc()
            self.env.status.type(short_name(type_url))

    def record_ack(self, type_url: str, version: str) -> None:
        short = short_name(type_url)
        st = self.env.status.type(short)
        st.acked_version = version
        st.acked_at = time.time()
        if self.env.status.changes is not None:
            self.env.status.changes.on_ack(self.env.node_id, short, version)

    def record_nack(self, type_url: str, *, version: str, nonce: str, detail: str) -> None:
        """Kept, counted and logged clipped (limits.py); the same NACK of the same version
        again (a client repeating itself) is counted, not logged again."""
        short = short_name(type_url)
        st = self.env.status.type(short)
        detail = clip(detail, MAX_DETAIL_CHARS)
        again = (st.last_nack is not None and st.last_nack.version == version
                 and st.last_nack.message == detail)
        st.last_nack = Nack(version=version, nonce=nonce, message=detail, at=time.time())
        if not again:
            self.env.log.warning(
                "xds.nack", type_url=type_url, version=version, nonce=nonce, detail=detail
            )
        self.env.metrics.xds_nacks.labels(type=short).inc()
        if self.env.status.changes is not None:
            self.env.status.changes.on_nack(self.env.node_id, short, version, detail)

    def close(self) -> None:
        for type_url in self._subscribed:
            self.env.metrics.xds_connected_proxies.labels(type=short_name(type_url)).dec()
        self._subscribed.clear()


def pushed_types(env: StreamEnv, subscribed: Iterable[str]) -> list[str]:
    """The stream's subscribed types in make-before-break order (cache.PUSH_ORDER)."""
    wanted = set(subscribed)
    return [t for t in env.types if t in wanted]


def eds_names(clusters: Iterable[Resource]) -> set[str]:
    """The ClusterLoadAssignment names that EDS clusters among `clusters` read.

    Envoy re-warms a cluster whose definition changed and the new cluster
    waits for a ClusterLoadAssignment response even when the endpoints did
    not change (xDS spec, "Resource warming", Envoy note; envoyproxy/envoy
    #31535); without one it stalls for initial_fetch_timeout. So after such a
    CDS push the stream re-sends the CLAs of these clusters.
    """
    names: set[str] = set()
    for res in clusters:
        if res.type_url != CLUSTER:
            continue
        cluster = cluster_pb2.Cluster.FromString(res.body)
        if cluster.WhichOneof("cluster_discovery_type") == "type" and (
            cluster.type == cluster_pb2.Cluster.EDS
        ):
            names.add(cluster.eds_cluster_config.service_name or cluster.name)
    return names


def changed(old: Mapping[str, Resource], new: Mapping[str, Resource]) -> list[Resource]:
    """Resources of `new` that `old` lacks or holds at another version, by name."""
    return [
        r for n, r in sorted(new.items()) if (o := old.get(n)) is None or o.version != r.version
    ]


def same_content(a: Mapping[str, Resource], b: Mapping[str, Resource]) -> bool:
    return a.keys() == b.keys() and all(a[n].version == b[n].version for n in a)


def logger() -> Any:
    return structlog.get_logger("legation.xds")
