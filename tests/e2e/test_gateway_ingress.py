"""Ingress through an Istio Gateway, with real Envoys: bookinfo's own gateway file.

Istio's `bookinfo-gateway.yaml`, unchanged, binds a VirtualService to a
Gateway selecting `istio: ingressgateway`. A workload with that label is a
gateway proxy: its Envoy listens on its own address at the server port
(8080) and routes bookinfo's paths to productpage; anything else gets
Envoy's 404. The VirtualService names only the gateway, so sidecars do not
use it. A Gateway edit (another port) moves the listener live.

HTTPS: a server with `tls.mode: SIMPLE` and `credentialName` terminates TLS
with the certificate of a `kubernetes.io/tls` Secret, served over SDS; a
client verifying the gateway against the Secret's CA is served, one trusting
another CA is refused, and a new certificate written to the Secret is
presented without a restart.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .harness import MeshLab, eventually, request

SAMPLE = Path(__file__).parent / "data" / "istio-samples" / "bookinfo-gateway.yaml"

pytestmark = pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])


async def test_bookinfo_gateway_serves_productpage(mesh: MeshLab) -> None:
    mesh.namespace = "default"  # the sample's objects have no namespace
    mesh.service("productpage")
    await mesh.backend("productpage-v1", app="productpage")
    gateway = mesh.client("ingressgateway", labels={"istio": "ingressgateway"})
    client = mesh.client("web")
    mesh.write("bookinfo-gateway.yaml", SAMPLE.read_text())
    await mesh.start()

    async def get(path: str, port: int = 8080) -> tuple[int, str | None]:
        resp = await request(gateway.address, port, "GET", path,
                             headers={"host": "bookinfo.example.com"}, timeout=5)
        return resp.status, resp.header("x-served-by")

    assert await get("/productpage") == (200, "productpage-v1")
    assert await get("/static/css/style.css") == (200, "productpage-v1")
    assert await get("/api/v1/products/1") == (200, "productpage-v1")
    status, _ = await get("/admin")  # no route of the VirtualService matches
    assert status == 404

    dump = await gateway.sidecar.config_dump()
    listeners = [x["active_state"]["listener"] for s in dump["configs"]
                 if s["@type"].endswith("ListenersConfigDump")
                 for x in s.get("dynamic_listeners", [])]
    assert [x["address"]["socket_address"] for x in listeners] == [
        {"address": gateway.address, "port_value": 8080}]  # no sidecar listeners

    # The sidecar of another workload does not take the gateway's VirtualService: its
    # default route to productpage stays, every path served.
    resp = await request(client.address, 15001, "GET", "/admin",
                         headers={"host": "productpage.default:9080"}, timeout=5)
    assert resp.status == 200

    # A live edit: the server moves to port 8081.
    mesh.write("bookinfo-gateway.yaml", SAMPLE.read_text().replace("number: 8080",
                                                                    "number: 8081"))

    async def moved() -> bool:
        try:
            return await get("/productpage", 8081) == (200, "productpage-v1")
        except OSError:
            return False

    await eventually(moved, what="the gateway listening on 8081")


def _pem_pair(common_name: str, *, signer: tuple[Any, Any] | None = None,
              ca: bool = False) -> tuple[Any, Any, str, str]:
    """(certificate, key, cert PEM, key PEM): a CA, or a server leaf for `common_name`
    signed by `signer` (cert, key)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    issuer, signing = (signer[0].subject, signer[1]) if signer else (name, key)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    cert = builder.sign(signing, hashes.SHA256())
    return (cert, key, cert.public_bytes(serialization.Encoding.PEM).decode(),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()).decode())


def _tls_secret(name: str, cert_pem: str, key_pem: str, ca_pem: str = "") -> str:
    """A kubernetes.io/tls Secret (base64 data); with `ca_pem`, Istio's generic layout
    (stringData with ca.crt), as MUTUAL servers use."""
    if ca_pem:
        body: dict[str, Any] = {"type": "Opaque", "stringData": {
            "tls.crt": cert_pem, "tls.key": key_pem, "ca.crt": ca_pem}}
    else:
        body = {"type": "kubernetes.io/tls", "data": {
            "tls.crt": base64.b64encode(cert_pem.encode()).decode(),
            "tls.key": base64.b64encode(key_pem.encode()).decode()}}
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Secret",
                           "metadata": {"name": name, "namespace": "default"}, **body})


HTTPS_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-tls, namespace: default}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: https, protocol: HTTPS}
    hosts: [bookinfo.example.com]
    tls: {mode: SIMPLE, credentialName: bookinfo-cert}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bookinfo-tls, namespace: default}
spec:
  hosts: [bookinfo.example.com]
  gateways: [bookinfo-tls]
  http:
  - route:
    - destination: {host: productpage, port: {number: 9080}}
"""


async def _https_get(address: str, port: int, ca_pem: str,
                     client_pem: Path | None = None) -> tuple[int, int]:
    """(HTTP status, serial of the certificate the gateway presented), verified against
    `ca_pem` for bookinfo.example.com (SNI and name check); `client_pem`: the client's
    certificate and key. Status 0: the connection ended without an answer (serial 0: the
    handshake did not finish)."""
    context = ssl.create_default_context(cadata=ca_pem)
    if client_pem is not None:
        context.load_cert_chain(client_pem)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        address, port, ssl=context, server_hostname="bookinfo.example.com"), 5)
    try:
        try:
            der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        except ValueError:  # the server ended the handshake (a refused client certificate)
            return 0, 0
        writer.write(b"GET /productpage HTTP/1.1\r\nhost: bookinfo.example.com\r\n"
                     b"connection: close\r\n\r\n")
        await writer.drain()
        head = await asyncio.wait_for(reader.readline(), 5)
        status = int(head.split()[1]) if head else 0
        return status, x509.load_der_x509_certificate(der).serial_number
    finally:
        writer.close()


async def _https_lab(mesh: MeshLab, mode: str = "SIMPLE") -> tuple[Any, Any, Any, str]:
    """productpage behind a gateway with an HTTPS server (`mode`) on 8443 whose credential
    is signed by a fresh CA: (gateway workload, CA certificate, CA key, CA PEM). The
    Secret is written by the test (`_tls_secret`)."""
    mesh.namespace = "default"
    mesh.service("productpage")
    await mesh.backend("productpage-v1", app="productpage")
    gateway = mesh.client("ingressgateway", labels={"istio": "ingressgateway"})
    ca, ca_key, ca_pem, _ = _pem_pair("Bookinfo Test CA", ca=True)
    mesh.write("gateway.yaml", HTTPS_GATEWAY.replace("mode: SIMPLE", f"mode: {mode}"))
    return gateway, ca, ca_key, ca_pem


async def test_https_gateway_with_a_secret_backed_certificate_rotates(mesh: MeshLab) -> None:
    gateway, ca, ca_key, ca_pem = await _https_lab(mesh)
    first, _, cert_pem, key_pem = _pem_pair("bookinfo.example.com", signer=(ca, ca_key))
    mesh.write("secret.yaml", _tls_secret("bookinfo-cert", cert_pem, key_pem))
    await mesh.start()

    async def served_with(serial: int) -> bool:
        try:
            return await _https_get(gateway.address, 8443, ca_pem) == (200, serial)
        except (OSError, TimeoutError, ssl.SSLError):
            return False

    await eventually(lambda: served_with(first.serial_number), what="HTTPS served, verified")
    with pytest.raises(ssl.SSLError):  # a client trusting another CA refuses the gateway
        _, _, other_ca, _ = _pem_pair("Other CA", ca=True)
        await _https_get(gateway.address, 8443, other_ca)

    # Rotation: a new certificate in the Secret, no restart, no Gateway change.
    second, _, cert_pem, key_pem = _pem_pair("bookinfo.example.com", signer=(ca, ca_key))
    mesh.write("secret.yaml", _tls_secret("bookinfo-cert", cert_pem, key_pem))
    await eventually(lambda: served_with(second.serial_number), what="the rotated certificate")


async def test_mutual_tls_gateway_requires_a_client_certificate(mesh: MeshLab,
                                                                tmp_path: Path) -> None:
    gateway, ca, ca_key, ca_pem = await _https_lab(mesh, "MUTUAL")
    _, _, cert_pem, key_pem = _pem_pair("bookinfo.example.com", signer=(ca, ca_key))
    mesh.write("secret.yaml", _tls_secret("bookinfo-cert", cert_pem, key_pem, ca_pem))
    await mesh.start()
    _, _, client_cert, client_key = _pem_pair("client.example.com", signer=(ca, ca_key))
    client = tmp_path / "client.pem"
    client.write_text(client_cert + client_key)

    async def served() -> bool:
        try:
            return (await _https_get(gateway.address, 8443, ca_pem, client))[0] == 200
        except (OSError, TimeoutError, ssl.SSLError):
            return False

    await eventually(served, what="HTTPS served to a client with a certificate")
    # Without a client certificate the gateway ends the handshake: TLS 1.3 reports it on
    # the first write or read (an alert, a reset, a broken pipe), never an HTTP answer.
    try:
        status, _ = await _https_get(gateway.address, 8443, ca_pem)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        status = -1
    assert status in (-1, 0), status
