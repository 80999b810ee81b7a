"""The demo's gRPC side: a service answering who served each call, and its two callers.

`GrpcApp` answers `METHOD` with its workload's name. The callers call
`METHOD` on one service port (`catalog.shop:7070` in the shop), so one
VirtualService steers both: a proxyless gRPC client (`python -m
legation.demo.grpcapps`, a child process, since gRPC reads its xDS bootstrap
once per process), which takes routes, endpoints and its mTLS certificate
provider straight from Legation, and `SidecarCaller`, plain gRPC sent to a
sidecar's outbound listener, which Envoy routes. Each keeps a `Tally` of who
answered.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.experimental
from grpc import aio

from legation.settings import environ

METHOD = "/shop.Catalog/Who"
RATE_PER_S = 10.0


class GrpcApp:
    """Answers `METHOD` with `name` (plaintext: its sidecar does the mTLS)."""

    def __init__(self, *, name: str, host: str, port: int) -> None:
        self.name, self.host, self.port = name, host, port
        self._server: aio.Server | None = None

    async def start(self) -> None:
        async def who(request: bytes, context: Any) -> bytes:
            return self.name.encode()

        service, method = METHOD.strip("/").split("/")
        server = aio.server()
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            service, {method: grpc.unary_unary_rpc_method_handler(who)}),))
        server.add_insecure_port(f"{self.host}:{self.port}")
        await server.start()
        self._server = server

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(0.5)


@dataclass(slots=True)
class Tally:
    """Who answered (a workload name) or how the call failed (a gRPC status name)."""

    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def add(self, outcome: str) -> None:
        self.counts[outcome] += 1


class SidecarCaller:
    """Calls `METHOD` of `target` (host:port) through a sidecar's outbound listener."""

    def __init__(self, *, proxy: tuple[str, int], target: str) -> None:
        self.proxy, self.target = proxy, target
        self.tally = Tally()

    async def run(self) -> None:
        host, port = self.proxy
        options = [("grpc.default_authority", self.target)]
        async with aio.insecure_channel(f"{host}:{port}", options=options) as channel:
            who = channel.unary_unary(METHOD)
            while True:
                started = time.monotonic()
                try:
                    self.tally.add((await who(b"", timeout=2.0)).decode())
                except grpc.RpcError as e:
                    self.tally.add(e.code().name if isinstance(e, aio.AioRpcError) else "ERROR")
                await asyncio.sleep(max(0.0, 1 / RATE_PER_S - (time.monotonic() - started)))


class ProxylessCaller:
    """The proxyless client as a child process (`main` below), its answers tallied."""

    def __init__(self, *, bootstrap: str, target: str) -> None:
        self.bootstrap, self.target = bootstrap, target
        self.tally = Tally()

    async def run(self) -> None:
        env = {**environ(), "GRPC_XDS_BOOTSTRAP": self.bootstrap}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "legation.demo.grpcapps", self.target, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True)
        try:
            assert proc.stdout is not None
            async for line in proc.stdout:
                with contextlib.suppress(ValueError, KeyError):
                    self.tally.add(json.loads(line)["outcome"])
        finally:
            if proc.returncode is None:
                proc.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


def main() -> None:
    """`python -m legation.demo.grpcapps HOST:PORT`, GRPC_XDS_BOOTSTRAP set: call `METHOD`
    on ``xds:///HOST:PORT`` with XdsCredentials (mTLS as Legation says) at `RATE_PER_S`,
    one JSON line per call: {"outcome": who answered, or the gRPC status}."""
    target = sys.argv[1]
    creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
    with grpc.secure_channel(f"xds:///{target}", creds) as channel:
        who = channel.unary_unary(METHOD)
        while True:
            started = time.monotonic()
            try:
                outcome = who(b"", timeout=2.0, wait_for_ready=True).decode()
            except grpc.RpcError as e:
                outcome = e.code().name if isinstance(e, grpc.Call) else "ERROR"
            try:
                print(json.dumps({"outcome": outcome}), flush=True)
            except BrokenPipeError:
                return
            time.sleep(max(0.0, 1 / RATE_PER_S - (time.monotonic() - started)))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
