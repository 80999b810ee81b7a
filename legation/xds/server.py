"""XdsServer: the grpc.aio server that Envoy proxies and gRPC clients dial.

Serves, from one port, the Aggregated Discovery Service and the per-type
services (CDS, EDS, LDS, RDS, SDS), each in its state-of-the-world
(`Stream*`) and incremental (`Delta*`) variant, CSDS (csds.py: what each
proxy holds), plus the standard gRPC health service and server reflection.
The per-type services carry only their own type. The unary `Fetch*` RPCs
answer UNIMPLEMENTED: a proxy's snapshot exists only while the proxy holds a
stream (the cache builds it on the first watch), so a one-shot fetch would
have nothing to read.

Streams read per-proxy snapshots from the `SnapshotCache` (see stream.py);
this module only wires services, options and lifecycle.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from envoy.service.cluster.v3 import cds_pb2  # noqa: F401  (registers the service for reflection)
from envoy.service.discovery.v3 import ads_pb2, discovery_pb2  # noqa: F401  (same)
from envoy.service.endpoint.v3 import eds_pb2  # noqa: F401
from envoy.service.listener.v3 import lds_pb2  # noqa: F401
from envoy.service.route.v3 import rds_pb2  # noqa: F401
from envoy.service.secret.v3 import sds_pb2  # noqa: F401
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from legation.cache import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, SECRET, SnapshotCache
from legation.metrics import Metrics
from legation.xds.csds import add_to_server as add_csds
from legation.xds.limits import MAX_RECEIVE_BYTES
from legation.xds.status import StatusBoard
from legation.xds.stream import Authenticator, StreamDeps, StreamSpec, run_stream

ADS_SERVICE = "envoy.service.discovery.v3.AggregatedDiscoveryService"


@dataclass(frozen=True, slots=True)
class _Service:
    name: str
    type_url: str | None  # None: every type (ADS)
    sotw: str  # SotW streaming method
    delta: str  # incremental streaming method
    fetch: str | None  # unary method, answered UNIMPLEMENTED
    kind: str  # stream kind for status and metrics


def _per_type(package: str, service: str, type_url: str, noun: str, kind: str) -> _Service:
    return _Service(
        f"envoy.service.{package}.v3.{service}",
        type_url,
        f"Stream{noun}",
        f"Delta{noun}",
        f"Fetch{noun}",
        kind,
    )


_SERVICES: tuple[_Service, ...] = (
    _Service(
        ADS_SERVICE, None, "StreamAggregatedResources", "DeltaAggregatedResources", None, "ads"
    ),
    _per_type("cluster", "ClusterDiscoveryService", CLUSTER, "Clusters", "cds"),
    _per_type("endpoint", "EndpointDiscoveryService", ENDPOINT, "Endpoints", "eds"),
    _per_type("listener", "ListenerDiscoveryService", LISTENER, "Listeners", "lds"),
    _per_type("route", "RouteDiscoveryService", ROUTE, "Routes", "rds"),
    _per_type("secret", "SecretDiscoveryService", SECRET, "Secrets", "sds"),
)

_KEEPALIVE_TIMEOUT_MS = 10_000
_MIN_CLIENT_PING_INTERVAL_MS = 5_000  # clients may ping this often without a GOAWAY
_MAX_CONNECTION_AGE_GRACE_MS = 10_000  # then streams on an aged connection are closed
_MAX_SEND_BYTES = 256 * 1024 * 1024  # a big mesh's CDS/RDS can exceed gRPC's 4 MiB default
_MAX_RECEIVE_BYTES = MAX_RECEIVE_BYTES  # limits.py: nothing a client sends is larger
_MAX_PENDING_CALLS = 20_000


class XdsServer:
    """ADS and per-type xDS services, health and reflection, on one port."""

    def __init__(
        self,
        cache: SnapshotCache,
        status: StatusBoard,
        metrics: Metrics,
        *,
        address: str,
        keepalive_time_s: float = 30,
        max_connection_age_s: float | None = None,
        server_credentials: grpc.ServerCredentials | None = None,
        authenticate: Authenticator | None = None,
    ) -> None:
        self._deps = StreamDeps(cache, status, metrics, authenticate)
        self._address = address
        self._keepalive_time_s = keepalive_time_s
        self._max_connection_age_s = max_connection_age_s
        self._credentials = server_credentials
        self._server: aio.Server | None = None
        self._health: Any = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port (the address may ask for port 0); 0 before start()."""
        return self._port

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("XdsServer already started")
        server = aio.server(options=self._options())
        for service in _SERVICES:
            handlers = self._handlers(service)
            generic = grpc.method_handlers_generic_handler(service.name, handlers)
            server.add_generic_rpc_handlers((generic,))
            server.add_registered_method_handlers(service.name, handlers)  # faster dispatch
        csds = add_csds(server, self._deps.cache, self._deps.status)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        for name in (*(s.name for s in _SERVICES), csds):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        names = (*(s.name for s in _SERVICES), csds, health.SERVICE_NAME,
                 reflection.SERVICE_NAME)
        reflection.enable_server_reflection(names, server)
        try:
            try:
                _check_bindable(self._address)  # before gRPC logs its own raw error line
                if self._credentials is None:
                    self._port = server.add_insecure_port(self._address)
                else:
                    self._port = server.add_secure_port(self._address, self._credentials)
            except RuntimeError:  # grpc's only word for a failed bind
                raise OSError(
                    f"cannot listen for xDS on {self._address}: the address is in use "
                    "or not an address of this host"
                ) from None
            await server.start()
        except BaseException:
            await server.stop(None)
            raise
        self._server = server

    async def stop(self, grace: float | None = 1.0) -> None:
        """Report NOT_SERVING, then close; open streams are cancelled after `grace`."""
        server, self._server = self._server, None
        if server is None:
            return
        await self._health.enter_graceful_shutdown()
        await server.stop(grace)

    def _options(self) -> list[tuple[str, int]]:
        options = [
            ("grpc.keepalive_time_ms", int(self._keepalive_time_s * 1000)),
            ("grpc.keepalive_timeout_ms", _KEEPALIVE_TIMEOUT_MS),
            ("grpc.http2.min_ping_interval_without_data_ms", _MIN_CLIENT_PING_INTERVAL_MS),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_send_message_length", _MAX_SEND_BYTES),
            ("grpc.max_receive_message_length", _MAX_RECEIVE_BYTES),
            ("grpc.so_reuseport", 0),  # a second server on a busy port fails loudly
            # A fleet reconnecting at once (after a restart) opens thousands of
            # streams faster than the event loop accepts them; gRPC refuses new
            # calls beyond these queue lengths (defaults 1000 and 3000).
            ("grpc.server.max_pending_requests", _MAX_PENDING_CALLS),
            ("grpc.server.max_pending_requests_hard_limit", 2 * _MAX_PENDING_CALLS),
        ]
        if self._max_connection_age_s is not None:
            options.append(("grpc.max_connection_age_ms", int(self._max_connection_age_s * 1000)))
            options.append(("grpc.max_connection_age_grace_ms", _MAX_CONNECTION_AGE_GRACE_MS))
        return options

    def _handlers(self, service: _Service) -> dict[str, grpc.RpcMethodHandler]:
        types = (service.type_url,) if service.type_url else PUSH_ORDER
        sotw = StreamSpec(kind=service.kind, types=types, delta=False)
        delta = StreamSpec(kind=f"delta-{service.kind}", types=types, delta=True)
        handlers = {
            service.sotw: self._stream_handler(sotw),
            service.delta: self._stream_handler(delta),
        }
        if service.fetch is not None:
            handlers[service.fetch] = _unimplemented_fetch(service)
        return handlers

    def _stream_handler(self, spec: StreamSpec) -> grpc.RpcMethodHandler:
        deps = self._deps

        async def handle(_requests: Any, context: aio.ServicerContext) -> None:
            await run_stream(context, spec, deps)

        pb = discovery_pb2
        request = pb.DeltaDiscoveryRequest if spec.delta else pb.DiscoveryRequest
        response = pb.DeltaDiscoveryResponse if spec.delta else pb.DiscoveryResponse
        return grpc.stream_stream_rpc_method_handler(
            handle,
            request_deserializer=request.FromString,
            response_serializer=_passthrough(response),
        )


def _check_bindable(address: str) -> None:
    """Raise RuntimeError when `address` (host:port, port 0 allowed) cannot be bound."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(host or None, int(port), type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except (OSError, ValueError):
        raise RuntimeError(address) from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            probe.bind(sockaddr)
        except OSError:
            raise RuntimeError(address) from None


def _passthrough(message_type: Any) -> Callable[[Any], bytes]:
    """Responses arrive encoded (cache/wire.py); a message is still serialized."""

    def serialize(message: Any) -> bytes:
        if isinstance(message, bytes):
            return message
        data: bytes = message_type.SerializeToString(message)
        return data

    return serialize


def _unimplemented_fetch(service: _Service) -> grpc.RpcMethodHandler:
    message = (
        f"{service.fetch} is not supported: open a {service.sotw} or {service.delta} "
        "stream, or use ADS"
    )

    async def handle(_request: Any, context: aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

    fn: Callable[[Any, aio.ServicerContext], Awaitable[None]] = handle
    return grpc.unary_unary_rpc_method_handler(
        fn,
        request_deserializer=discovery_pb2.DiscoveryRequest.FromString,
        response_serializer=discovery_pb2.DiscoveryResponse.SerializeToString,
    )
