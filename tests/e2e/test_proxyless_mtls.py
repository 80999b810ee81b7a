"""Proxyless gRPC with the mesh's mTLS (issue 16, item 3; gRFC A29, A36, A41).

`legation grpc-agent` keeps each proxyless workload's SPIFFE certificate, key
and roots in a directory and writes its gRPC bootstrap naming them. Real
grpcio clients with XdsCredentials then speak mTLS to a sidecar-fronted
server (a real Envoy, PeerAuthentication STRICT) and to an xDS-enabled gRPC
server without any Envoy; AuthorizationPolicy on principals lets the right
caller in and denies another proxyless caller, which proves the identity of
the client certificate was checked. A plaintext client is refused. Workload
certificates live 20 s here: the agent rewrites the files with the renewed
certificate, and calls go on with it.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509

from .harness import AppFleet, EnvoyFleet, Loopback, eventually, free_port, service_yaml
from .security_lab import NAMESPACE, SecureLab
from .test_proxyless_grpc import CLIENT, SERVER, _echo_server, _who

PORT = 7070
CERT_TTL = "20s"  # renewed after 8-10 s


@pytest.fixture
async def lab(
    tmp_path: Path, loopback: Loopback, envoys: EnvoyFleet, apps: AppFleet
) -> AsyncIterator[SecureLab]:
    lab = SecureLab(root=tmp_path, loopback=loopback, envoys=envoys, apps=apps,
                    serve_args=("--workload-cert-ttl", CERT_TTL))
    try:
        yield lab
    finally:
        await envoys.stop_all()
        await lab.control_plane.stop()

POLICIES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: mesh-mtls, namespace: shop}
spec: {host: "*.shop.svc.cluster.local", trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-web, namespace: shop}
spec:
  action: ALLOW
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]
"""


async def _agent(lab: SecureLab, workload: str, tmp_path: Path
                 ) -> tuple[asyncio.subprocess.Process, Path, Path]:
    """`legation grpc-agent` for `workload`: (process, its cert dir, its bootstrap)."""
    certs, boot = tmp_path / f"{workload}-certs", tmp_path / f"{workload}.json"
    (host, tls_port), (_, port) = lab.tls_xds, lab.control_plane.xds
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "legation", "grpc-agent", "--config-dir", str(lab.config_dir),
        "--ca-dir", str(lab.ca_dir), "--workload", workload, "--namespace", NAMESPACE,
        "--cert-dir", str(certs), "--sds-address", f"{host}:{tls_port}",
        "--xds-address", f"{host}:{port}", "-o", str(boot),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)

    async def written() -> bool:
        return boot.exists()

    await eventually(written, what=f"grpc-agent writing {workload}'s bootstrap", timeout=30)
    return proc, certs, boot


async def _calls(boot: Path, target: str, n: int, *, xds_creds: bool) -> Counter[str]:
    """`n` calls; without XdsCredentials, failing fast (a refused connection is UNAVAILABLE
    at once instead of waiting for a connection that never comes)."""
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(boot), "XDS_CREDS": "1" if xds_creds else "",
           "FAIL_FAST": "" if xds_creds else "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(CLIENT), target, str(n), "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()[-3000:]
    return _who([json.loads(line) for line in out.decode().splitlines()])


async def test_proxyless_clients_and_servers_speak_the_meshs_mtls(
    lab: SecureLab, tmp_path: Path,
) -> None:
    app_port = free_port()
    plain = await _echo_server("127.0.0.1", "catalog-v1", app_port)
    procs: list[asyncio.subprocess.Process] = []
    try:
        lab.write("services.yaml", service_yaml("catalog", NAMESPACE, port=PORT, port_name="grpc")
                  + "---\n" + service_yaml("ledger", NAMESPACE, port=PORT, port_name="grpc"))
        catalog = lab.workload("catalog-v1", app="catalog", service_account="catalog",
                               app_ports={PORT: app_port})
        ledger = lab.workload("ledger-v1", app="ledger", service_account="ledger")
        lab.workload("web", app="web", service_account="web")
        lab.workload("intruder", app="intruder", service_account="intruder")
        lab.peer_authentication("STRICT")
        lab.write("policies.yaml", POLICIES)
        await lab.start()
        await lab.start_sidecar(catalog)

        agents = {w: await _agent(lab, w, tmp_path) for w in ("web", "intruder", "ledger-v1")}
        procs.extend(a[0] for a in agents.values())
        _, web_certs, web_boot = agents["web"]
        # the files: the workload's SPIFFE certificate, its key private to the agent's user
        leaf = _leaf(web_certs)
        uris = leaf.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(
            x509.UniformResourceIdentifier)
        assert uris == [f"spiffe://cluster.local/ns/{NAMESPACE}/sa/web"]
        assert stat.S_IMODE((web_certs / "key.pem").stat().st_mode) == 0o600
        assert "certificate_providers" in web_boot.read_text()

        # an xDS-enabled gRPC server (no Envoy) for ledger, its certificates from its agent
        env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(agents["ledger-v1"][2])}
        server = await asyncio.create_subprocess_exec(
            sys.executable, str(SERVER), ledger.address, str(PORT), "ledger-v1", env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        procs.append(server)
        assert server.stdout is not None
        assert (await asyncio.wait_for(server.stdout.readline(), 30)).strip() == b"started"

        intruder_boot = agents["intruder"][2]
        for service, name in (("catalog", "catalog-v1"), ("ledger", "ledger-v1")):
            target = f"{service}:{PORT}"
            # mTLS with web's certificate: the principal is allowed
            assert await _calls(web_boot, target, 5, xds_creds=True) == Counter({name: 5})
            # mTLS with intruder's certificate: a genuine peer, denied by the policy
            denied = await _calls(intruder_boot, target, 3, xds_creds=True)
            assert denied == Counter({"PERMISSION_DENIED": 3}), (service, denied)
            # no certificate at all: STRICT refuses the connection
            plaintext = await _calls(web_boot, target, 3, xds_creds=False)
            assert plaintext == Counter({"UNAVAILABLE": 3}), (service, plaintext)

        # renewal: the agent rewrites the files, and the renewed certificate works
        async def renewed() -> bool:
            return _leaf(web_certs).serial_number != leaf.serial_number

        await eventually(renewed, what="web's certificate renewed in its files", timeout=30)
        assert _leaf(web_certs).not_valid_after_utc > leaf.not_valid_after_utc
        for service, name in (("catalog", "catalog-v1"), ("ledger", "ledger-v1")):
            calls = await _calls(web_boot, f"{service}:{PORT}", 3, xds_creds=True)
            assert calls == Counter({name: 3}), (service, calls)
    finally:
        for p in procs:
            if p.returncode is None:
                p.terminate()
                await asyncio.wait_for(p.wait(), 10)
        await plain.stop(None)


def _leaf(certs: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((certs / "cert-chain.pem").read_bytes())


def test_bootstrap_cert_dir_is_for_grpc_only(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "legation", "bootstrap", "--workload", "w", "--namespace", "n",
         "--admin-address", "127.0.0.1:1", "--cert-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "--cert-dir is for gRPC bootstraps" in done.stderr
