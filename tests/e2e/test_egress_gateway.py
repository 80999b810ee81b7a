"""Issue 11, egress gateway end to end: Istio's "Egress Gateways" task, with ISTIO_MUTUAL.

`legation serve --ca-dir` runs as a real process; a client sidecar and an
egress gateway are real Envoys holding mesh certificates; the "external"
service is a demo app on 127.0.0.1 known by a ServiceEntry. As the task does:
a Gateway (selector `istio: egressgateway`) with an HTTPS server in
ISTIO_MUTUAL mode for the external host, a DestinationRule giving the
gateway's service a subset and mesh mTLS with that host as SNI, and a
VirtualService bound to `mesh` and the gateway that sends the sidecars'
requests to the gateway and the gateway's out to the host. Evidence: the
request succeeds, it crossed the gateway (the gateway's counters), the hop
sidecar -> gateway was mutual TLS with the mesh's certificates (the gateway
refuses plaintext and a client without a mesh certificate).
"""

from __future__ import annotations

import asyncio
import ssl

import pytest

from legation.demo.http import HttpError, request

from .harness import eventually
from .security_lab import NAMESPACE, OUTBOUND_PORT, SecureLab

GATEWAY_SVC = f"istio-egressgateway.{NAMESPACE}.svc.cluster.local"

MANIFESTS = f"""\
apiVersion: v1
kind: Service
metadata: {{name: istio-egressgateway, namespace: {NAMESPACE}}}
spec:
  selector: {{istio: egressgateway}}
  ports:
  - {{name: http, port: 80}}
  - {{name: https, port: 443}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: egress-gateway, namespace: {NAMESPACE}}}
spec:
  address: GATEWAY_ADDRESS
  serviceAccount: egress-sa
  labels: {{istio: egressgateway, security.istio.io/tlsMode: istio}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: rates, namespace: {NAMESPACE}}}
spec:
  hosts: [rates.example.com]
  resolution: DNS
  ports: [{{number: 80, name: http-port, protocol: HTTP}}]
  endpoints: [{{address: localhost, ports: {{http-port: APP_PORT}}}}]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: istio-egressgateway, namespace: {NAMESPACE}}}
spec:
  selector: {{istio: egressgateway}}
  servers:
  - port: {{number: 443, name: https, protocol: HTTPS}}
    hosts: [rates.example.com]
    tls: {{mode: ISTIO_MUTUAL}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: egressgateway-for-rates, namespace: {NAMESPACE}}}
spec:
  host: {GATEWAY_SVC}
  subsets:
  - name: rates
    trafficPolicy:
      loadBalancer: {{simple: ROUND_ROBIN}}
      portLevelSettings:
      - port: {{number: 443}}
        tls: {{mode: ISTIO_MUTUAL, sni: rates.example.com}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: direct-rates-through-egress-gateway, namespace: {NAMESPACE}}}
spec:
  hosts: [rates.example.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{{gateways: [mesh], port: 80}}]
    route:
    - destination: {{host: {GATEWAY_SVC}, subset: rates, port: {{number: 443}}}}
  - match: [{{gateways: [istio-egressgateway], port: 443}}]
    route:
    - destination: {{host: rates.example.com, port: {{number: 80}}}}
"""


async def test_the_egress_gateway_task_with_istio_mutual(lab: SecureLab) -> None:
    rates = await lab.apps.start("rates")
    client = lab.client("sleep", service_account="sleep")
    gateway = lab.client("egress-gateway", service_account="egress-sa")
    # the gateway's WorkloadEntry as the task's deployment labels it (replaces lab's)
    (lab.config_dir / "workload-egress-gateway.yaml").unlink()
    lab.write("egress.yaml", MANIFESTS.replace("GATEWAY_ADDRESS", gateway.address)
              .replace("APP_PORT", str(rates.address[1])))
    await lab.start_all()

    async def through() -> bool:
        resp = await request(client.address, OUTBOUND_PORT, "GET", "http://rates.example.com/",
                             headers={"host": "rates.example.com"}, timeout=5.0)
        return resp.status == 200 and resp.header("x-served-by") == "rates"

    await eventually(through, what="rates.example.com through the egress gateway")

    # It crossed the gateway: the gateway sent it to the external host's cluster, and
    # the client sent it to the gateway's subset, not to the host.
    gw_stats = await gateway.sidecar.stats("cluster.outbound|80||rates.example.com.upstream_rq")
    assert gw_stats.get("cluster.outbound|80||rates.example.com.upstream_rq_200", 0) >= 1
    to_gateway = f"cluster.outbound|443|rates|{GATEWAY_SVC}.upstream_rq_200"
    assert (await client.sidecar.stats(to_gateway)).get(to_gateway, 0) >= 1
    direct = "cluster.outbound|80||rates.example.com.upstream_rq_total"
    assert (await client.sidecar.stats(direct)).get(direct, 0) == 0

    # The hop to the gateway is the mesh's mTLS: the gateway presents its SPIFFE identity
    # and refuses a TLS client without a mesh certificate, and plaintext.
    context = ssl.create_default_context()
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
        await request_tls(gateway.address, 443, context)
    with pytest.raises((OSError, HttpError, asyncio.IncompleteReadError)):
        await request(gateway.address, 443, "GET", "/", headers={"host": "rates.example.com"},
                      timeout=3.0)
    certs = await gateway.sidecar.certs()
    uris = {s.get("uri") for c in certs["certificates"] for cert in c.get("cert_chain", [])
            for s in cert.get("subject_alt_names", [])}
    assert gateway.spiffe_id in uris


async def request_tls(host: str, port: int, context: ssl.SSLContext) -> int:
    """An HTTPS GET with `context` (no client certificate); the status line's code."""
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection(host, port, ssl=context, server_hostname="rates.example.com"),
        timeout=3.0)
    try:
        writer.write(b"GET / HTTP/1.1\r\nhost: rates.example.com\r\nconnection: close\r\n\r\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout=3.0)
        if not line:
            raise ConnectionError("closed by the gateway")
        return int(line.split()[1])
    finally:
        writer.close()
