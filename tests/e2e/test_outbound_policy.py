"""Issue 11, outboundTrafficPolicy end to end: hosts the mesh does not know.

`legation serve --mesh-config FILE` runs as a real process; a client's real
Envoy sidecar (explicit mode) is its HTTP proxy; the "internet" is a demo app
on 127.0.0.1 that no Service or ServiceEntry names. Evidence, as the issue asks:

- ALLOW_ANY (no MeshConfig: Istio's default): an absolute-URI request and a
  CONNECT tunnel reach the unknown host through Envoy's dynamic forward proxy;
- the MeshConfig file edited to REGISTRY_ONLY, without a restart: both get a
  502 whose body names the host and the setting;
- a ServiceEntry for the host lets it through again under REGISTRY_ONLY;
- an invalid MeshConfig keeps the last good one in force, with the error on
  the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from legation.demo.http import HttpResponse, encode_head, read_head, read_response

from .harness import OUTBOUND_PORT, ControlPlane, MeshLab, MeshWorkload, eventually, request

pytestmark = pytest.mark.parametrize("delta", [False], ids=["sotw"])

ENTRY = """\
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: outside, namespace: shop}
spec:
  hosts: [localhost]
  ports: [{number: PORT, name: http, protocol: HTTP}]
"""


async def absolute(client: MeshWorkload, authority: str) -> HttpResponse:
    """GET http://<authority>/ with the sidecar as the HTTP proxy (what HTTP_PROXY does)."""
    return await request(client.address, OUTBOUND_PORT, "GET", f"http://{authority}/",
                         headers={"host": authority}, timeout=5.0)


async def tunnel(client: MeshWorkload, authority: str) -> tuple[int, HttpResponse | None]:
    """CONNECT <authority> through the sidecar, then (when 200) a GET inside the tunnel."""
    reader, writer = await asyncio.open_connection(client.address, OUTBOUND_PORT)
    try:
        async with asyncio.timeout(5.0):
            writer.write(encode_head(f"CONNECT {authority} HTTP/1.1", [("host", authority)]))
            await writer.drain()
            head = await read_head(reader)
            assert head is not None, "the proxy closed the connection"
            status = int(head[0].split()[1])
            if status != 200:
                return status, None
            writer.write(encode_head("GET / HTTP/1.1", [("host", authority),
                                                        ("connection", "close")]))
            await writer.drain()
            return status, await read_response(reader)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_allow_any_then_registry_only_then_an_entry(mesh: MeshLab) -> None:
    outside = await mesh.apps.start("outside")
    authority = f"localhost:{outside.address[1]}"
    config = mesh.config_dir.parent / "mesh-config.yaml"
    cp = mesh.control_plane
    mesh.control_plane = ControlPlane(config_dirs=[mesh.config_dir], workdir=cp.workdir,
                                      xds=cp.xds, admin=cp.admin,
                                      extra_args=["--mesh-config", str(config)])
    client = mesh.client("frontend")
    await mesh.start()
    await eventually(lambda: mesh.converged([client.node_id]), what="the client ACKed")

    # ALLOW_ANY: Istio's default, with no MeshConfig at all.
    resp = await absolute(client, authority)
    assert (resp.status, resp.header("x-served-by")) == (200, "outside")
    status, inner = await tunnel(client, authority)
    assert status == 200 and inner is not None and inner.header("x-served-by") == "outside"

    # REGISTRY_ONLY, applied without a restart.
    pid = mesh.control_plane.pid
    config.write_text("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n")
    blocked = await eventually(lambda: _refused(client, authority), what="REGISTRY_ONLY")
    assert blocked.body.decode() == (
        f"{authority} is not in the mesh's registry: outboundTrafficPolicy is REGISTRY_ONLY "
        "(add a ServiceEntry for it, or set the mode to ALLOW_ANY)\n")
    assert (await tunnel(client, authority))[0] == 502
    assert mesh.control_plane.pid == pid

    # An invalid MeshConfig: the last good one stays, the error says where.
    config.write_text("outboundTrafficPolicy:\n  mode: ALLOW_SOME\n")
    diag = await eventually(lambda: _diagnostic(mesh, "meshconfig.outbound-policy-invalid"),
                            what="the finding")
    assert diag["file"] == str(config) and diag["field"] == "outboundTrafficPolicy.mode"
    assert diag["line"] == 2 and "last good MeshConfig stays in force" in diag["message"]
    assert (await absolute(client, authority)).status == 502

    # A ServiceEntry registers the host: through again, REGISTRY_ONLY or not.
    mesh.write("se-outside.yaml", ENTRY.replace("PORT", str(outside.address[1])))
    resp = await eventually(lambda: _through(client, authority), what="the entry")
    assert resp.header("x-served-by") == "outside"


async def _refused(client: MeshWorkload, authority: str) -> HttpResponse | None:
    resp = await absolute(client, authority)
    return resp if resp.status == 502 else None


async def _through(client: MeshWorkload, authority: str) -> HttpResponse | None:
    resp = await absolute(client, authority)
    return resp if resp.status == 200 else None


async def _diagnostic(mesh: MeshLab, code: str) -> dict[str, Any] | None:
    found = [d for d in await mesh.control_plane.diagnostics() if d["code"] == code]
    return found[0] if found else None
