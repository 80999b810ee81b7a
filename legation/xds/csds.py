"""CSDS: `envoy.service.status.v3.ClientStatusDiscoveryService` on the xDS ports.

What each connected proxy holds, resource by resource, as Envoy's own CSDS
reports it and istioctl/`legation proxy-status` read it: per proxy (matched
by `node_matchers` on its node id), per resource of its current snapshot, a
`GenericXdsConfig` with the resource's version, its contents (unless the
request excludes them; never for secrets: their private keys stay here),
`config_status` (SYNCED, STALE, NOT_SENT, ERROR) and `client_status`
(ACKED, REQUESTED, NACKED with the proxy's error message and the rejected
version). Both the unary `FetchClientStatus` and the streaming
`StreamClientStatus` (one answer per request) are served.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.admin.v3 import config_dump_shared_pb2 as shared
from envoy.config.core.v3 import base_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc
from envoy.type.matcher.v3 import string_pb2
from google.protobuf import any_pb2, timestamp_pb2
from grpc import aio

from legation.cache import PUSH_ORDER, SECRET, Snapshot, SnapshotCache, short_name
from legation.xds.status import StatusBoard, Sync, TypeStatus, sync_state

_CONFIG_STATUS = {
    Sync.SYNCED: csds_pb2.SYNCED,
    Sync.STALE: csds_pb2.STALE,
    Sync.NOT_SENT: csds_pb2.NOT_SENT,
    Sync.NACKED: csds_pb2.ERROR,
}
_CLIENT_STATUS = {
    Sync.SYNCED: shared.ACKED,
    Sync.STALE: shared.REQUESTED,
    Sync.NOT_SENT: shared.REQUESTED,
    Sync.NACKED: shared.NACKED,
}


class ClientStatusService(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, cache: SnapshotCache, status: StatusBoard) -> None:
        self._cache = cache
        self._status = status

    async def FetchClientStatus(
        self, request: csds_pb2.ClientStatusRequest, context: aio.ServicerContext
    ) -> csds_pb2.ClientStatusResponse:
        problem = _unsupported(request)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        return self.status(request)

    async def StreamClientStatus(
        self, request_iterator: AsyncIterator[csds_pb2.ClientStatusRequest],
        context: aio.ServicerContext,
    ) -> AsyncIterator[csds_pb2.ClientStatusResponse]:
        async for request in request_iterator:
            problem = _unsupported(request)
            if problem:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
            yield self.status(request)

    def status(self, request: csds_pb2.ClientStatusRequest) -> csds_pb2.ClientStatusResponse:
        """Every connected proxy the request's matchers select (all when there are none)."""
        out = csds_pb2.ClientStatusResponse()
        by_node: dict[str, dict[str, TypeStatus]] = {}
        for st in self._status.all():
            types = by_node.setdefault(st.node_id, {})
            for short, ts in st.types.items():
                types.setdefault(short, ts)  # one stream per type (ADS: one for all)
        for node_id in sorted(by_node):
            if request.node_matchers and not any(
                    _matches(m.node_id, node_id) for m in request.node_matchers):
                continue
            config = out.config.add(node=base_pb2.Node(id=node_id))
            snapshot = self._cache.get(node_id)
            if isinstance(snapshot, Snapshot):
                _resources(config, snapshot, by_node[node_id],
                           contents=not request.exclude_resource_contents)
        return out


def _resources(config: csds_pb2.ClientConfig, snapshot: Snapshot, types: dict[str, TypeStatus],
               *, contents: bool) -> None:
    for type_url in PUSH_ORDER:
        st = types.get(short_name(type_url))
        if st is None:
            continue  # never asked for
        state = sync_state(st, snapshot.version(type_url))
        for name, resource in sorted(snapshot.of_type(type_url).items()):
            item = config.generic_xds_configs.add(
                type_url=type_url, name=name, version_info=resource.version,
                config_status=_CONFIG_STATUS[state], client_status=_CLIENT_STATUS[state])
            if contents and type_url != SECRET:
                item.xds_config.CopyFrom(any_pb2.Any(type_url=type_url, value=resource.body))
            stamp = st.acked_at or st.sent_at
            if stamp:
                item.last_updated.CopyFrom(_timestamp(stamp))
            if state == Sync.NACKED and st.last_nack is not None:
                item.error_state.details = st.last_nack.message
                item.error_state.version_info = st.last_nack.version
                item.error_state.last_update_attempt.CopyFrom(_timestamp(st.last_nack.at))


def _timestamp(unix: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(unix * 1e9))
    return ts


def _unsupported(request: csds_pb2.ClientStatusRequest) -> str:
    for m in request.node_matchers:
        if m.node_metadatas:
            return "node_metadatas matchers are not supported (match node_id)"
        if m.node_id.WhichOneof("match_pattern") == "safe_regex":
            try:
                re.compile(m.node_id.safe_regex.regex)
            except re.error as e:
                return f"node_id regex {m.node_id.safe_regex.regex!r}: {e}"
    return ""


def _matches(matcher: string_pb2.StringMatcher, value: str) -> bool:
    """Envoy's StringMatcher on a node id (an unset matcher matches every node)."""
    kind = matcher.WhichOneof("match_pattern")
    if kind is None:
        return True
    subject, pattern = value, getattr(matcher, kind) if kind != "safe_regex" else ""
    if matcher.ignore_case and kind != "safe_regex":
        subject, pattern = subject.lower(), str(pattern).lower()
    if kind == "exact":
        return subject == pattern
    if kind == "prefix":
        return subject.startswith(pattern)
    if kind == "suffix":
        return subject.endswith(pattern)
    if kind == "contains":
        return pattern in subject
    if kind == "safe_regex":  # RE2 in Envoy; Python's re agrees on the RE2 subset
        return re.fullmatch(matcher.safe_regex.regex, value) is not None
    return False


def add_to_server(server: Any, cache: SnapshotCache, status: StatusBoard) -> str:
    """Register CSDS on `server`; its service name (for health and reflection)."""
    csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(
        ClientStatusService(cache, status), server)
    return str(csds_pb2.DESCRIPTOR.services_by_name["ClientStatusDiscoveryService"].full_name)

