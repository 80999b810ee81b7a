"""The fan-out floor: what grpc.aio alone costs to push one change to every stream.

A bare ADS server with no control plane behind it: it answers each stream's
first requests with fixed responses (so the benchmark's clients, the same
`adsclient` processes as the fan-out runs, become ready), then, per change,
writes one pre-encoded ClusterLoadAssignment response (the size of an
endpoint change) to every stream and waits until every stream has ACKed it.
Nothing is translated, diffed or looked up: the time and CPU it takes are
the floor any Python control plane on grpc.aio pays for the same fan-out,
measured in the same run as Legation's, so the two compare as a ratio. It runs in its
own process: `fanout.run_in_process(spec, floor.run, "floor")`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from grpc import aio

from benchmarks import adsclient, fanout, meshgen
from benchmarks.stats import cpu_seconds, machine_busy_seconds
from legation.cache import ENDPOINT, Resource, wire

_ADS = "envoy.service.discovery.v3.AggregatedDiscoveryService"


class _Streams:
    """Every open stream's writer and the nonce it last ACKed."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.acked: dict[int, str] = {}
        self.all_acked = asyncio.Event()
        self.want = ""
        self.count = 0  # streams that ACKed `want`

    def expect(self, nonce: str) -> None:
        self.want, self.count, self.all_acked = nonce, 0, asyncio.Event()

    def ack(self, key: int, nonce: str) -> None:
        before, self.acked[key] = self.acked.get(key), nonce
        if self.want and nonce == self.want and before != nonce:
            self.count += 1
            if self.count >= len(self.calls):
                self.all_acked.set()


def _responses(delta: bool, nonce: str, cla: Resource) -> dict[str, bytes]:
    """Per type, what a first request gets: empty CDS/LDS/RDS, one CLA for EDS."""
    out = {}
    for type_url in adsclient.TYPES:
        items = [cla] if type_url == ENDPOINT else []
        if delta:
            out[type_url] = wire.delta_response(
                "v0", type_url, nonce, (r.delta_entry for r in items), ())
        else:
            out[type_url] = wire.sotw_response(
                "v0", type_url, nonce, (r.sotw_entry for r in items))
    return out


def _handler(streams: _Streams, delta: bool, cla: Resource) -> grpc.RpcMethodHandler:
    first = _responses(delta, "0", cla)
    request = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest

    async def handle(_requests: Any, context: aio.ServicerContext) -> None:
        streams.calls.append(context)
        answered: set[str] = set()
        try:
            while (req := await context.read()) is not aio.EOF:
                if req.response_nonce:
                    streams.ack(id(context), req.response_nonce)
                if not answered:  # the first request: every type at once, as ADS allows
                    answered.update(first)
                    for body in first.values():
                        await context.write(body)
        finally:
            streams.calls.remove(context)

    return grpc.stream_stream_rpc_method_handler(
        handle, request_deserializer=request.FromString, response_serializer=lambda b: b)


async def run(spec: fanout.RunSpec) -> dict[str, Any]:
    cla = Resource.of(ENDPOINT, "floor", endpoint_pb2.ClusterLoadAssignment(
        cluster_name="outbound|9080||floor.ns-000.svc.cluster.local"))
    streams = _Streams()
    server = aio.server()
    handler = _handler(streams, spec.delta, cla)
    method = "DeltaAggregatedResources" if spec.delta else "StreamAggregatedResources"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_ADS,
                                                                           {method: handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    clients = fanout._Clients()
    try:
        nodes = fanout._choose(spec.mesh.node_ids(), spec.proxies)
        connect = await fanout._connect(spec, port, nodes, clients)
        pushes = []
        for i in range(spec.repeats):
            await asyncio.sleep(spec.settle_s)
            nonce = f"push-{i}"
            body = _responses(spec.delta, nonce, cla)[ENDPOINT]
            streams.expect(nonce)
            busy, cpu, t0 = machine_busy_seconds(), cpu_seconds(), time.monotonic()
            for call in list(streams.calls):
                await call.write(body)
            written = time.monotonic()
            async with asyncio.timeout(spec.change_timeout_s):
                await streams.all_acked.wait()
            cpu = cpu_seconds() - cpu
            pushes.append({"written_s": written - t0, "last_ack_s": time.monotonic() - t0,
                           "server_cpu_s": cpu,
                           "others_cpu_s": machine_busy_seconds() - busy - cpu})
        return {"spec": fanout._spec_dict(spec), "connect": connect, "pushes": pushes}
    finally:
        await clients.stop()
        await server.stop(0.5)


def summary(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median of the pushes of each run."""
    out = []
    for run in runs:
        if "error" in run:
            continue
        pushes = sorted(run["pushes"], key=lambda p: p["last_ack_s"])
        mid = pushes[len(pushes) // 2]
        out.append({"mode": run["spec"]["mode"], "proxies": run["spec"]["proxies"],
                    "last_ack_s": mid["last_ack_s"], "server_cpu_s": sorted(
                        p["server_cpu_s"] for p in pushes)[len(pushes) // 2]})
    return out


def mesh_for(proxies: int) -> meshgen.MeshSpec:
    """Node ids for `proxies` clients (the floor serves no mesh: only the names count)."""
    return meshgen.MeshSpec(services=max(1, proxies // 2), namespaces=1,
                            min_endpoints=2, max_endpoints=2)
