"""A proxyless gRPC client for the e2e tests: gRPC's own xDS client, no Envoy.

Run with GRPC_XDS_BOOTSTRAP set: calls `/echo.Echo/Who` on `xds:///<target>` and prints
one JSON line per call: {"t": seconds since start, "who": the backend's name} or
{"t": ..., "code": the gRPC status name}.
    python xds_grpc_client.py TARGET CALLS INTERVAL_S [key=value metadata ...]
With XDS_CREDS=1 the channel uses XdsCredentials (gRFC A29: TLS as the control plane
says, from the bootstrap's certificate providers; plaintext fallback), else plaintext.
With FAIL_FAST=1 a call fails at once when no connection can be made (no wait_for_ready).
"""

from __future__ import annotations

import json
import os
import sys
import time

import grpc
import grpc.experimental


def main() -> None:
    target, calls, interval = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    metadata = tuple(tuple(kv.split("=", 1)) for kv in sys.argv[4:])
    if os.environ.get("XDS_CREDS") == "1":
        creds = grpc.xds_channel_credentials(grpc.experimental.insecure_channel_credentials())
        channel = grpc.secure_channel(f"xds:///{target}", creds)
    else:
        channel = grpc.insecure_channel(f"xds:///{target}")
    who = channel.unary_unary("/echo.Echo/Who")
    start = time.monotonic()
    for _ in range(calls):
        try:
            name = who(b"", timeout=10, metadata=metadata or None,
                       wait_for_ready=os.environ.get("FAIL_FAST") != "1")
            out = {"t": time.monotonic() - start, "who": name.decode()}
        except grpc.RpcError as e:
            out = {"t": time.monotonic() - start, "code": e.code().name,
                   "details": (e.details() or "")[:200]}
        print(json.dumps(out), flush=True)
        if interval:
            time.sleep(interval)


if __name__ == "__main__":
    main()
