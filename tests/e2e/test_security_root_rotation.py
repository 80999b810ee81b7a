"""A full root CA rotation under steady mTLS traffic, with real Envoys: no request fails.

`legation ca rotate-root` (the operator's trigger, POST /ca/rotate-root on the
admin API) stages a new root; both sidecars get a trust bundle (ROOTCA) with
the old and the new root and ACK it; only then does the new root sign: every
workload certificate is re-issued from it; the old root leaves the bundle when
the last certificate it signed expires. Observed from the outside: Envoy's
`/certs` (the CA certificates of its validation contexts), the `default` chain
in its config dump (which root signed it), the control plane's `/debug/ca`.

Workload certificates live 10 s, so the old root retires within the test.
The sidecars use the plaintext xDS listener (with `--insecure-plaintext-secrets`,
loopback only): the TLS xDS listener's own server certificate lives 30 days
and is a leaf of the old root too, which would rightly keep the old root in
the bundle for those 30 days (`legation bootstrap` hands that bundle to Envoys
to verify the xDS server). About 25 s.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from .harness import AppFleet, EnvoyFleet, Loopback, eventually
from .security_lab import SecureLab, SecureWorkload

TTL = "10s"


@pytest.fixture
async def lab(
    tmp_path: Path, loopback: Loopback, envoys: EnvoyFleet, apps: AppFleet
) -> AsyncIterator[SecureLab]:
    lab = SecureLab(
        root=tmp_path, loopback=loopback, envoys=envoys, apps=apps,
        serve_args=("--workload-cert-ttl", TTL, "--root-rotation-grace", "20s",
                    "--xds-tls-address", "off", "--insecure-plaintext-secrets"),
    )  # fmt: skip
    try:
        yield lab
    finally:
        await envoys.stop_all()
        await lab.control_plane.stop()


async def test_root_rotation_under_traffic_without_a_failed_request(lab: SecureLab) -> None:
    lab.service("catalog")
    catalog = await lab.backend("catalog-v1", app="catalog", service_account="catalog-sa")
    frontend = lab.client("frontend", service_account="frontend-sa")
    lab.peer_authentication("STRICT")
    await lab.start()
    await lab.start_sidecar(catalog, bootstrap=lab.bootstrap(catalog, tls=False, delta=True))
    await lab.start_sidecar(frontend, bootstrap=lab.bootstrap(frontend, tls=False))
    await eventually(lambda: _ok(lab, frontend), what="first mTLS request")
    sidecars = [catalog, frontend]
    (old,) = await _ca_serials(lab, frontend)
    assert all(signer == old for signer in await _signers(sidecars))

    results: list[int | str] = []
    stop = asyncio.Event()
    started = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        traffic = tg.create_task(_traffic(lab, frontend, results, stop))
        await asyncio.sleep(1.0)  # steady traffic before the rotation
        new_fp = await _rotate_root_cli(lab)
        new = await _serial_of(lab, new_fp)
        marks = {"triggered": time.monotonic() - started}

        async def overlap() -> bool:  # both Envoys validate peers against both roots
            return await _all_ca_serials(lab, sidecars) == [[old, new]] * 2

        await eventually(overlap, timeout=10, interval=0.1, what="two roots in /certs")
        marks["overlap_seen"] = time.monotonic() - started

        async def chained_to_new() -> bool:
            return await _signers(sidecars) == [new, new]

        await eventually(chained_to_new, timeout=10, interval=0.1, what="new-root leaves")
        marks["new_leaves_seen"] = time.monotonic() - started
        assert await _all_ca_serials(lab, sidecars) == [[old, new]] * 2

        async def retired() -> bool:  # the old root's last leaf expired: pruned, pushed
            return await _all_ca_serials(lab, sidecars) == [[new]] * 2

        await eventually(retired, timeout=20, interval=0.2, what="the old root retired")
        marks["retired_seen"] = time.monotonic() - started
        await asyncio.sleep(2.0)  # and traffic keeps flowing on the new root alone
        stop.set()
        await traffic

    debug = await lab.control_plane.admin_json("/debug/ca")
    rotation = debug["rotation"]
    failed = [r for r in results if r != 200]
    print(f"\nroot rotation: {len(results)} requests, {len(failed)} failed; phases "
          f"{rotation['phase_seconds']} (s); seen at {_rounded(marks)} (s since traffic start)")
    assert failed == []
    assert len(results) > 100
    assert rotation["root"] == new_fp and rotation["trigger"] == "operator"
    assert rotation["grace_expired"] is False and rotation["proxies"] == 2
    assert debug["phase"] == "idle"
    assert [(r["serial"], r["state"], r["in_bundle"]) for r in debug["roots"]
            if r["in_bundle"]] == [(new, "active", True)]  # fmt: skip
    metrics = await lab.control_plane.metrics()
    assert metrics['legation_root_rotations_total{trigger="operator"}'] == 1
    resp = await lab.call(frontend, "catalog")  # identities unchanged by the new root
    assert f"URI={frontend.spiffe_id}" in resp.json()["headers"]["x-forwarded-client-cert"]


async def _ok(lab: SecureLab, client: SecureWorkload) -> bool:
    return (await lab.call(client, "catalog")).status == 200


async def _traffic(
    lab: SecureLab, client: SecureWorkload, results: list[int | str], stop: asyncio.Event
) -> None:
    """Sequential requests, each on a new downstream connection, until `stop`."""
    while not stop.is_set():
        try:
            results.append((await lab.call(client, "catalog")).status)
        except Exception as e:  # a reset or timeout is a failed request too
            results.append(f"{type(e).__name__}: {e}")
        await asyncio.sleep(0.02)


async def _rotate_root_cli(lab: SecureLab) -> str:
    """`legation ca rotate-root --admin-address H:P --ca-dir DIR`, as an operator runs it
    (the CA's directory holds the admin token the action needs)."""
    host, port = lab.control_plane.admin
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "legation", "ca", "rotate-root", "--admin-address", f"{host}:{port}",
        "--ca-dir", str(lab.ca_dir),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    found = re.search(r"new root ([0-9a-f]{64})", out.decode())
    assert found is not None, out.decode()
    return found.group(1)


async def _serial_of(lab: SecureLab, fp: str) -> str:
    debug = await lab.control_plane.admin_json("/debug/ca")
    serial: str = next(r["serial"] for r in debug["roots"] if r["fingerprint"] == fp)
    return serial


async def _ca_serials(lab: SecureLab, w: SecureWorkload) -> list[str]:
    """Serials (hex) of the CA certificates in `w`'s Envoy validation contexts, in order."""
    data = await w.sidecar.certs()
    seen: list[str] = []
    for entry in data.get("certificates", []):
        for ca in entry.get("ca_cert", []):
            serial = format(int(ca["serial_number"], 16), "x")
            if serial not in seen:
                seen.append(serial)
    return seen


async def _all_ca_serials(lab: SecureLab, workloads: list[SecureWorkload]) -> list[list[str]]:
    return [await _ca_serials(lab, w) for w in workloads]


async def _signers(workloads: list[SecureWorkload]) -> list[str]:
    """For each sidecar, the serial of the root in its ROOTCA that signed its `default`."""
    out = []
    for w in workloads:
        secrets = await _active_secrets(w)
        chain = secrets["default"]["tls_certificate"]["certificate_chain"]["inline_string"]
        bundle = secrets["ROOTCA"]["validation_context"]["trusted_ca"]["inline_string"]
        leaf = x509.load_pem_x509_certificates(chain.encode())[0]
        signer = "none"
        for root in x509.load_pem_x509_certificates(bundle.encode()):
            with contextlib.suppress(Exception):
                leaf.verify_directly_issued_by(root)
                signer = format(root.serial_number, "x")
        out.append(signer)
    return out


async def _active_secrets(w: SecureWorkload) -> dict[str, Any]:
    dump = await w.sidecar.config_dump(resource="dynamic_active_secrets")
    return {c["name"]: c["secret"] for c in dump.get("configs", [])}


def _rounded(marks: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in marks.items()}

