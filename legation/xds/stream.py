"""One xDS stream from first request to close: the driver around a protocol.

Owns the gRPC call. The handler task reads (`context.read()`), a writer task
writes (`context.write()`); grpc.aio forbids mixing those with the request
iterator, and both tasks live in one TaskGroup so neither outlives the
stream.

The outbound queue of a stream is a single slot, and coalesces: the writer
sleeps on the stream's `Watch.changed` event (set by the cache when a new
snapshot is published, and by the reader when a request needs an answer),
then diffs the newest snapshot against what the client holds. A snapshot
that was superseded before the writer got to it is never sent, a slow client
holds at most one pass of responses, and an idle stream costs two sleeping
tasks and no polling.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc import aio

from legation.cache import ProxyError, Snapshot, SnapshotCache, Watch, short_name
from legation.metrics import Metrics
from legation.xds.delta import DeltaProtocol
from legation.xds.limits import (
    LOGGED_ID_CHARS,
    MAX_STREAMS_PER_PEER,
    Refusal,
    check_node,
    check_request,
    clip,
    peer_host,
)
from legation.xds.protocol import Outgoing, StreamEnv, StreamProtocol, StreamRejected, logger
from legation.xds.sotw import SotwProtocol
from legation.xds.status import StatusBoard
from legation.xds.subscription import NameTable

# Called with the call context and the first request's envoy.config.core.v3.Node
# before anything is served; raise StreamRejected (or abort the context) to refuse.
Authenticator = Callable[[aio.ServicerContext, Any], Awaitable[None]]

_MAX_REMEMBERED_REJECTIONS = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSpec:
    """A kind of stream: its name, the types it carries, its protocol variant."""

    kind: str  # "ads", "delta-ads", "cds", "delta-cds", ...
    types: tuple[str, ...]  # one type, or all of PUSH_ORDER for ADS
    delta: bool  # incremental variant


class StreamDeps:
    """What every stream of one server shares."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: StatusBoard,
        metrics: Metrics,
        authenticate: Authenticator | None,
    ) -> None:
        self.cache = cache
        self.status = status
        self.metrics = metrics
        self.authenticate = authenticate
        self._logged: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self.names = NameTable()
        self.peers: Counter[str] = Counter()  # open streams per client IP (limits.py)

    def first_rejection(self, node_id: str, rejected: StreamRejected) -> bool:
        """True the first time a node is refused for a reason: log once, not per retry.
        The key is bounded whatever the client sent (limits.py)."""
        key = (clip(node_id, LOGGED_ID_CHARS), rejected.code.name, rejected.message[:512])
        if key in self._logged:
            self._logged.move_to_end(key)
            return False
        self._logged[key] = None
        if len(self._logged) > _MAX_REMEMBERED_REJECTIONS:
            self._logged.popitem(last=False)
        return True


async def run_stream(context: aio.ServicerContext, spec: StreamSpec, deps: StreamDeps) -> None:
    """Serve one stream; every way it can end becomes a proper gRPC status."""
    peer = context.peer()
    log = logger().bind(stream=spec.kind, peer=peer)
    node_id = ""
    host = peer_host(peer)
    deps.peers[host] += 1
    try:
        if deps.peers[host] > MAX_STREAMS_PER_PEER:
            raise StreamRejected(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{host} has {MAX_STREAMS_PER_PEER} xDS streams open; close some first")
        first = await context.read()
        if first is aio.EOF:
            return
        node_id = first.node.id
        _refuse(check_node(first.node) or check_request(first, delta=spec.delta))
        if not node_id:
            # xDS spec, "Basic Protocol Overview": the first request carries the node.
            raise StreamRejected(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first request of an xDS stream must set node.id",
            )
        log = log.bind(node=node_id)
        if deps.authenticate is not None:
            await deps.authenticate(context, first.node)
        await _serve(context, spec, deps, first, log)
    except StreamRejected as rejected:
        deps.metrics.xds_rejected_streams.labels(code=rejected.code.name).inc()
        if deps.first_rejection(node_id, rejected):
            log.warning("xds.stream_rejected", code=rejected.code.name, message=rejected.message,
                        node=clip(node_id, LOGGED_ID_CHARS))
        await context.abort(rejected.code, rejected.message)
    except asyncio.CancelledError:
        log.debug("xds.stream_cancelled")  # the client went away, or the server stops
        raise
    except aio.AbortError:
        raise  # the authenticator aborted the call itself
    except Exception as exc:
        if _client_gone(context):
            # the client went away while we wrote: its business, not an internal error
            log.debug("xds.stream_gone", error=repr(exc))
            return
        log.error("xds.stream_error", error=repr(exc), exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error in the xDS server")
    finally:
        deps.peers[host] -= 1
        if deps.peers[host] <= 0:
            del deps.peers[host]


async def _serve(
    context: aio.ServicerContext, spec: StreamSpec, deps: StreamDeps, first: Any, log: Any
) -> None:
    """The accepted stream of one node: status entry, cache watch, reader and writer."""
    node_id = first.node.id
    stream_id, status = deps.status.open(node_id, spec.kind, context.peer())
    env = StreamEnv(
        node_id=node_id,
        kind=spec.kind,
        types=spec.types,
        status=status,
        metrics=deps.metrics,
        log=log,
        names=deps.names,
    )
    protocol: StreamProtocol = DeltaProtocol(env) if spec.delta else SotwProtocol(env)
    deps.metrics.xds_streams.labels(stream=spec.kind).inc()
    log.debug("xds.stream_open")
    try:
        protocol.on_request(first)  # may reject a misplaced type before the proxy is built
        # VHDS needs the delta ADS stream that delivers it (translators/vhds.py).
        with deps.cache.watch(node_id, vhds=spec.delta and env.aggregated) as watch:
            await _run_tasks(context, env, protocol, watch, deps.cache)
        log.debug("xds.stream_closed")
    finally:
        protocol.close()
        deps.metrics.xds_streams.labels(stream=spec.kind).dec()
        deps.status.close(stream_id)


async def _run_tasks(
    context: aio.ServicerContext,
    env: StreamEnv,
    protocol: StreamProtocol,
    watch: Watch,
    cache: SnapshotCache,
) -> None:
    watch.changed.set()  # answer the first request as soon as there is a snapshot
    spec_delta = isinstance(protocol, DeltaProtocol)
    try:
        async with asyncio.TaskGroup() as tg:
            writer = tg.create_task(_write_loop(context, env, protocol, watch, cache))
            while (request := await context.read()) is not aio.EOF:
                _refuse(check_request(request, delta=spec_delta))
                if protocol.on_request(request):
                    watch.changed.set()
            writer.cancel()  # the client half-closed: the stream is over
    except BaseExceptionGroup as group:
        raise _pick(group) from None


def _client_gone(context: aio.ServicerContext) -> bool:
    try:
        return bool(context.cancelled() or context.done())
    except Exception:  # a context that cannot even say: it is gone too
        return True


def _refuse(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise StreamRejected(*refusal)


def _pick(group: BaseExceptionGroup[Any]) -> BaseException:
    """The exception that says best why a stream's tasks failed."""
    rejected = group.subgroup(StreamRejected)
    leaves = rejected.exceptions if rejected is not None else group.exceptions
    leaf = leaves[0]
    return _pick(leaf) if isinstance(leaf, BaseExceptionGroup) else leaf


async def _write_loop(
    context: aio.ServicerContext,
    env: StreamEnv,
    protocol: StreamProtocol,
    watch: Watch,
    cache: SnapshotCache,
) -> None:
    node_id = watch.node_id
    while True:
        await watch.changed.wait()
        watch.changed.clear()
        entry = cache.get(node_id)
        if entry is None:
            continue  # not built yet; the cache wakes us when it is
        if isinstance(entry, ProxyError):
            code = grpc.StatusCode.__members__.get(entry.code, grpc.StatusCode.UNKNOWN)
            raise StreamRejected(code, entry.message)
        await _push(context, env, protocol, entry)


async def _push(
    context: aio.ServicerContext, env: StreamEnv, protocol: StreamProtocol, snapshot: Snapshot
) -> None:
    """Write what the client lacks from `snapshot`, in push order.

    A coroutine of its own so that no response outlives its push: a loop
    variable in `_write_loop` kept each idle stream's last response (and the
    snapshot it came from) alive, ~50 KB per stream in benchmarks/fanout.py.
    """
    for out in protocol.responses(snapshot):
        await context.write(out.message)
        _record_sent(env, out)


def _record_sent(env: StreamEnv, out: Outgoing) -> None:
    short = short_name(out.type_url)
    st = env.status.type(short)
    st.sent_version, st.sent_nonce, st.sent_at = out.version, out.nonce, time.time()
    st.pushes += 1
    env.metrics.xds_pushes.labels(type=short).inc()
    _observe_latency(env, short, out.snapshot)


def _observe_latency(env: StreamEnv, short: str, snapshot: Snapshot) -> None:
    """Change-to-wire latency, once per snapshot and type on this stream."""
    if snapshot.changed_at <= 0:
        return
    if env.observed.get(short) == snapshot.changed_at:
        return
    env.observed[short] = snapshot.changed_at
    env.metrics.xds_push_latency.labels(type=short).observe(time.monotonic() - snapshot.changed_at)
