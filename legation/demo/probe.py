"""The demo's authorization probe: the shop's AuthorizationPolicy shown with real calls.

examples/shop/security.yaml lets only `order-sa` POST to payment. The probe
sends `POST /pay` to payment twice, each into a sidecar's outbound listener
as that workload's app would: once from the client workload (its own
identity, e.g. frontend-sa), once from the workload whose app calls payment
(order-v1, order-sa). Both hops are mutual TLS; payment's sidecar decides
from the caller's certificate. What came back is reported as a line each,
e.g. `frontend → POST payment.shop:9080/pay → 403 RBAC: access denied`.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

from legation.demo.http import HttpError, read_response, request
from legation.demo.plan import OUTBOUND_PORT, External, Ingress, Plan, SidecarSpec

GUARDED = "payment"  # the service examples/shop/security.yaml protects
PATH = "/pay"


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeCall:
    caller: str  # workload name
    address: str  # its sidecar's address (outbound listener on OUTBOUND_PORT)
    target: str  # host:port of the guarded service


def probe_calls(plan: Plan) -> list[ProbeCall]:
    """The client, then each workload whose app calls the guarded service."""
    callers = [
        (a.name, a.proxy[0], t)
        for a in plan.apps
        if a.proxy is not None
        for t in a.calls
        if t.split(".", 1)[0] == GUARDED
    ]
    if not callers:
        return []
    target = callers[0][2]
    client = ProbeCall(caller=plan.client.workload, address=plan.client.address, target=target)
    return [client, *(ProbeCall(caller=n, address=addr, target=t) for n, addr, t in callers)]


async def run_probe(call: ProbeCall, *, timeout: float = 5.0) -> str:
    """`<status> <what came back>`, or why nothing did."""
    try:
        resp = await request(
            call.address, OUTBOUND_PORT, "POST", f"http://{call.target}{PATH}",
            headers={"host": call.target}, timeout=timeout,
        )  # fmt: skip
    except (OSError, TimeoutError, HttpError) as e:
        return f"no answer ({type(e).__name__})"
    if resp.status == 200:
        return f"200 (served by {resp.header('x-served-by') or '?'})"
    return f"{resp.status} {resp.text().strip()[:60]}"


def title(call: ProbeCall) -> str:
    return f"{call.caller} → POST {call.target}{PATH}"


async def run_ingress(ingress: Ingress, *, timeout: float = 5.0) -> str:
    """An HTTPS GET through the ingress gateway, as a client outside the mesh: SNI and
    Host `ingress.host`, the certificate verified against `ingress.ca_pem`."""
    context = ssl.create_default_context(cadata=ingress.ca_pem)
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                ingress.address, ingress.port, ssl=context, server_hostname=ingress.host)
            try:
                subject = writer.get_extra_info("peercert") or {}
                writer.write(f"GET {ingress.path} HTTP/1.1\r\nhost: {ingress.host}\r\n"
                             "connection: close\r\n\r\n".encode())
                await writer.drain()
                resp = await read_response(reader)
            finally:
                writer.close()
    except ssl.SSLError as e:
        return f"TLS failed ({e.reason or e})"
    except (OSError, TimeoutError, HttpError) as e:
        return f"no answer ({type(e).__name__})"
    names = [v for k, v in (p for rdn in subject.get("subject", ()) for p in rdn)
             if k == "commonName"]
    who = resp.header("x-served-by") or "?"
    return (f"{resp.status} (served by {who}; certificate for "
            f"{names[0] if names else '?'} verified)")


def ingress_title(ingress: Ingress) -> str:
    return (f"outside → GET https://{ingress.host}:{ingress.port}{ingress.path} via "
            f"{ingress.gateway} ({ingress.address})")


async def run_external(external: External, client: SidecarSpec, *, timeout: float = 5.0
                       ) -> str:
    """GET http://<entry host>/ through the client's sidecar, as its app would through
    HTTP_PROXY: a service outside the mesh, known by its ServiceEntry."""
    authority = external.host if external.port == 80 else f"{external.host}:{external.port}"
    try:
        resp = await request(client.address, OUTBOUND_PORT, "GET", f"http://{authority}/",
                             headers={"host": authority}, timeout=timeout)
    except (OSError, TimeoutError, HttpError) as e:
        return f"no answer ({type(e).__name__})"
    if resp.status == 200:
        return f"200 (served by {resp.header('x-served-by') or '?'}, outside the mesh)"
    return f"{resp.status} {resp.text().strip()[:60]}"


def external_title(external: External, client: SidecarSpec) -> str:
    return f"{client.workload} → GET http://{external.host}:{external.port}/ (ServiceEntry)"
