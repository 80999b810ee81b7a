"""An xDS-enabled gRPC server for the e2e tests (gRFC A36): no Envoy in front of it.

Run with GRPC_XDS_BOOTSTRAP set: serves `/echo.Echo/Who` (answers NAME) on HOST:PORT,
its listener configuration (RBAC included) from the control plane; runs until killed.
    python xds_grpc_server.py HOST PORT NAME
"""

from __future__ import annotations

import signal
import sys
import threading
from concurrent import futures

import grpc


def main() -> None:
    host, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), xds=True)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", {
        "Who": grpc.unary_unary_rpc_method_handler(
            lambda request, context: name.encode(),
            request_deserializer=None, response_serializer=None)}),))
    creds = grpc.xds_server_credentials(grpc.insecure_server_credentials())
    server.add_secure_port(f"{host}:{port}", creds)
    server.start()
    print("started", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    done.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
