"""A proxyless gRPC client for the e2e tests: gRPC's own xDS client, no Envoy.

Run with GRPC_XDS_BOOTSTRAP set: calls `/echo.Echo/Who` on `xds:///<target>` and prints
one JSON line per call: {"t": seconds since start, "who": the backend's name} or
{"t": ..., "code": the gRPC status name}.
    python xds_grpc_client.py TARGET CALLS INTERVAL_S [key=value metadata ...]
"""

from __future__ import annotations

import json
import sys
import time

import grpc


def main() -> None:
    target, calls, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    metadata = tuple(tuple(kv.split("=", 1)) for kv in sys.argv[4:])
    channel = grpc.insecure_channel(f"xds:///{target}")
    who = channel.unary_unary("/echo.Echo/Who")
    start = time.monotonic()
    for _ in range(calls):
        try:
            name = who(b"", timeout=10, metadata=metadata or None, wait_for_ready=True)
            out = {"t": time.monotonic() - start, "who": name.decode()}
        except grpc.RpcError as e:
            out = {"t": time.monotonic() - start, "code": e.code().name,
                   "details": (e.details() or "")[:200]}
        print(json.dumps(out), flush=True)
        if interval:
            time.sleep(interval)


if __name__ == "__main__":
    main()
