"""Gateway servers below HTTP, with a real Envoy gateway: TLS passthrough and TCP.

A Gateway with a TLS server in PASSTHROUGH mode for `secure.example.com` and a
TCP server; VirtualServices bound to it with a `tls` route (by SNI) and a
`tcp` route. Behind them, services with no sidecar: a TLS HTTP server holding
the only copy of its key, and a TCP echo server. Evidence: the client's TLS
session ends at the upstream (the certificate it verifies is the upstream's,
which the gateway cannot present), a TLS client naming another host is not
routed, and bytes sent to the TCP server come back.
"""

from __future__ import annotations

import asyncio
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from .harness import MeshLab, eventually
from .test_gateway_ingress import _pem_pair

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

MANIFESTS = """\
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: shop}
spec: {selector: {app: secure}, ports: [{name: tls, port: 443, targetPort: TLS_PORT}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: shop}
spec: {selector: {app: echo}, ports: [{name: tcp, port: 5432, targetPort: ECHO_PORT}]}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: secure-1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: secure}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: echo-1, namespace: shop}
spec: {address: 127.0.0.1, labels: {app: echo}}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: l4, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: [secure.example.com]
    tls: {mode: PASSTHROUGH}
  - port: {number: 9000, name: tcp, protocol: TCP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: shop}
spec:
  hosts: [secure.example.com]
  gateways: [l4]
  tls:
  - match: [{sniHosts: [secure.example.com]}]
    route: [{destination: {host: secure, port: {number: 443}}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: shop}
spec:
  hosts: ["*"]
  gateways: [l4]
  tcp:
  - route: [{destination: {host: echo, port: {number: 5432}}}]
"""


async def _tls_server(cert_pem: str, key_pem: str) -> tuple[asyncio.Server, int]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    with tempfile.TemporaryDirectory() as d:
        chain = Path(d) / "chain.pem"
        chain.write_text(cert_pem + key_pem)
        context.load_cert_chain(chain)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nx-served-by: secure\r\ncontent-length: 2\r\n"
                     b"connection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    return server, server.sockets[0].getsockname()[1]


async def _echo_server() -> tuple[asyncio.Server, int]:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def _through(address: str, ca_pem: str, sni: str) -> tuple[int, bytes]:
    """(serial of the certificate verified for `sni`, the response) via the gateway."""
    context = ssl.create_default_context(cadata=ca_pem)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        address, 8443, ssl=context, server_hostname=sni), 5)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        writer.write(f"GET / HTTP/1.1\r\nhost: {sni}\r\n\r\n".encode())
        await writer.drain()
        body = await asyncio.wait_for(reader.read(), 5)
        return x509.load_der_x509_certificate(der).serial_number, body
    finally:
        writer.close()


async def test_tls_passthrough_by_sni_and_tcp(mesh: MeshLab) -> None:
    ca, ca_key, ca_pem, _ = _pem_pair("L4 Test CA", ca=True)
    leaf, _, cert_pem, key_pem = _pem_pair("secure.example.com", signer=(ca, ca_key))
    tls_server, tls_port = await _tls_server(cert_pem, key_pem)
    echo_server, echo_port = await _echo_server()
    try:
        mesh.write("l4.yaml", MANIFESTS.replace("TLS_PORT", str(tls_port))
                   .replace("ECHO_PORT", str(echo_port)))
        gateway = mesh.client("ingressgateway", labels={"istio": "ingressgateway"})
        await mesh.start()

        serial, body = await eventually(
            lambda: _through(gateway.address, ca_pem, "secure.example.com"),
            what="TLS through the gateway")
        assert serial == leaf.serial_number  # the upstream's own certificate: not terminated
        assert body.startswith(b"HTTP/1.1 200 OK") and b"x-served-by: secure" in body
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):  # no route for it
            await _through(gateway.address, ca_pem, "other.example.com")

        reader, writer = await asyncio.open_connection(gateway.address, 9000)
        writer.write(b"ping over tcp")
        await writer.drain()
        assert await asyncio.wait_for(reader.readexactly(13), 5) == b"ping over tcp"
        writer.close()
    finally:
        tls_server.close()
        echo_server.close()
