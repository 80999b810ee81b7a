"""Certificate rotation under steady mTLS traffic, with real Envoys: no request fails.

`legation serve --workload-cert-ttl 20s` re-issues each identity's
certificate every 8-10 s (half its lifetime, minus up to a tenth of jitter)
and pushes it over SDS; Envoy swaps it in without restarting anything. The
client sidecar uses state-of-the-world ADS, the server's delta ADS, both
over the authenticated TLS xDS listener. Rotations are counted from the
serial numbers each Envoy's `/certs` shows over time. About 50 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .harness import AppFleet, EnvoyFleet, Loopback, eventually
from .security_lab import SecureLab, SecureWorkload

TTL = "20s"
DURATION_S = 50.0  # > 5 rotation periods at the latest schedule (10 s)
MIN_ROTATIONS = 3


@pytest.fixture
async def lab(
    tmp_path: Path, loopback: Loopback, envoys: EnvoyFleet, apps: AppFleet
) -> AsyncIterator[SecureLab]:
    lab = SecureLab(
        root=tmp_path,
        loopback=loopback,
        envoys=envoys,
        apps=apps,
        serve_args=("--workload-cert-ttl", TTL),
    )
    try:
        yield lab
    finally:
        await envoys.stop_all()
        await lab.control_plane.stop()


async def test_certificates_rotate_under_traffic_without_a_failed_request(lab: SecureLab) -> None:
    lab.service("catalog")
    catalog = await lab.backend("catalog-v1", app="catalog", service_account="catalog-sa")
    frontend = lab.client("frontend", service_account="frontend-sa")
    lab.peer_authentication("STRICT")
    await lab.start()
    await lab.start_sidecar(catalog, delta=True)
    await lab.start_sidecar(frontend)
    await eventually(lambda: _status(lab, frontend), what="first mTLS request")

    serials: dict[str, list[str]] = {catalog.name: [], frontend.name: []}
    results: list[int | str] = []
    stop = time.monotonic() + DURATION_S
    async with asyncio.TaskGroup() as tg:
        tg.create_task(_traffic(lab, frontend, results, stop))
        tg.create_task(_watch_serials(lab, [catalog, frontend], serials, stop))

    failed = [r for r in results if r != 200]
    rotations = {name: len(seen) - 1 for name, seen in serials.items()}
    print(
        f"\nrotation: {len(results)} requests, {len(failed)} failed, rotations {rotations}, "
        f"control plane counted {await lab.metric('legation_certificate_rotations_total'):.0f}"
    )
    assert len(results) > 100
    assert failed == []
    assert all(n >= MIN_ROTATIONS for n in rotations.values()), rotations
    # The caller's identity is still the right one after all those rotations.
    resp = await lab.call(frontend, "catalog")
    assert f"URI={frontend.spiffe_id}" in resp.json()["headers"]["x-forwarded-client-cert"]
    assert await lab.metric("legation_certificate_rotations_total") >= 2 * MIN_ROTATIONS


async def _status(lab: SecureLab, client: SecureWorkload) -> bool:
    return (await lab.call(client, "catalog")).status == 200


async def _traffic(
    lab: SecureLab, client: SecureWorkload, results: list[int | str], stop: float
) -> None:
    """Sequential requests, each on a new downstream connection, until `stop`."""
    while time.monotonic() < stop:
        try:
            results.append((await lab.call(client, "catalog")).status)
        except Exception as e:  # a reset or timeout is a failed request too
            results.append(f"{type(e).__name__}: {e}")
        await asyncio.sleep(0.02)


async def _watch_serials(
    lab: SecureLab, workloads: list[SecureWorkload], seen: dict[str, list[str]], stop: float
) -> None:
    while time.monotonic() < stop:
        for w in workloads:
            for serial, uris in await lab.cert_serials(w):
                assert uris == [w.spiffe_id]
                if serial not in seen[w.name]:
                    seen[w.name].append(serial)
        await asyncio.sleep(0.5)
