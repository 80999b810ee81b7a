"""The harness itself, against a real Envoy and no control plane."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import textwrap
from pathlib import Path

import pytest

from .harness import (
    AppFleet,
    EnvoyError,
    EnvoyFleet,
    Loopback,
    eventually,
    free_port,
    request,
    sidecar_bootstrap,
    static_http_bootstrap,
)

pytestmark = pytest.mark.e2e


async def test_static_envoy_routes_to_demo_app(
    envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback
) -> None:
    app = await apps.start("catalog-v2")
    addr = loopback.next()
    envoy = await envoys.start(
        "static",
        static_http_bootstrap(listen=(addr, 8080), upstream=app.address, admin_host=addr),
    )

    resp = await request(addr, 8080, "GET", "/items?x=1", headers={"end-user": "jason"})

    assert resp.status == 200
    assert resp.header("x-served-by") == "catalog-v2"
    assert resp.header("server") == "envoy"
    body = resp.json()
    assert (body["workload"], body["version"], body["path"]) == ("catalog-v2", "v2", "/items")
    assert body["query"] == {"x": "1"}
    assert body["headers"]["end-user"] == "jason"
    assert "x-request-id" in body["headers"]  # added by Envoy's connection manager
    clusters = await envoy.clusters()
    [app_cluster] = [c for c in clusters["cluster_statuses"] if c["name"] == "app"]
    [host] = app_cluster["host_statuses"]
    assert host["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": app.port}
    stats = await envoy.stats(r"^cluster\.app\.upstream_rq_total$")
    assert stats == {"cluster.app.upstream_rq_total": 1}
    assert app.requests_served == 1


async def test_fault_knobs_pass_through_envoy(
    envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback
) -> None:
    app = await apps.start("payment-v1")
    addr = loopback.next()
    await envoys.start(
        "static", static_http_bootstrap(listen=(addr, 8080), upstream=app.address, admin_host=addr)
    )

    statuses = [
        (await request(addr, 8080, "GET", "/pay", headers={"x-demo-fail-first": "1"})).status
        for _ in range(2)
    ]
    forced = await request(addr, 8080, "GET", "/pay?status=418")

    assert statuses == [503, 200]
    assert forced.status == 418


async def test_app_calls_through_an_http_proxy(
    envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback
) -> None:
    """/shop fan-out uses the sidecar as an HTTP proxy: absolute-form URI, Host = service."""
    catalog = await apps.start("catalog-v1")
    addr = loopback.next()
    await envoys.start(
        "proxy",
        static_http_bootstrap(listen=(addr, 15001), upstream=catalog.address, admin_host=addr),
    )
    frontend = await apps.start("frontend", proxy=(addr, 15001), calls=["catalog.shop:9080"])

    resp = await request(*frontend.address, "GET", "/shop", headers={"x-request-id": "r-1"})

    assert resp.status == 200
    [call] = resp.json()["calls"]
    assert (call["target"], call["status"], call["served_by"]) == (
        "catalog.shop:9080",
        200,
        "catalog-v1",
    )
    assert call["body"]["headers"]["host"] == "catalog.shop:9080"
    assert call["body"]["headers"]["x-request-id"] == "r-1"
    assert call["body"]["path"] == "/shop"


async def test_fan_out_reports_unreachable_service(apps: AppFleet) -> None:
    dead = free_port()
    frontend = await apps.start("frontend", calls=[f"127.0.0.1:{dead}"])

    resp = await request(*frontend.address, "GET", "/shop")

    assert resp.status == 502
    [call] = resp.json()["calls"]
    assert call["status"] is None
    assert "ConnectionRefusedError" in call["error"]


async def test_xds_bootstrap_starts_and_waits_for_control_plane(
    envoys: EnvoyFleet, loopback: Loopback
) -> None:
    """A generated bootstrap runs in a real Envoy; with no xDS server it stays initializing."""
    addr = loopback.next()
    xds_port = free_port(addr)  # nothing listens there
    envoy = await envoys.start(
        "sidecar",
        sidecar_bootstrap(
            workload="order-v1", namespace="shop", admin_host=addr, xds=(addr, xds_port)
        ),
        wait="admin",
    )

    assert not await envoy.ready()
    info = await envoy.admin_json("/server_info")
    assert info["node"]["id"] == "order-v1.shop"
    dump = await envoy.config_dump(resource="static_clusters")
    [xds] = [c["cluster"] for c in dump["configs"] if c["cluster"]["name"] == "xds-grpc"]
    sock = xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
    assert sock["socket_address"] == {"address": addr, "port_value": xds_port}
    assert envoy.admin_address[0] == addr
    full = await envoy.config_dump()
    [boot] = [c for c in full["configs"] if c["@type"].endswith("BootstrapConfigDump")]
    [grpc] = boot["bootstrap"]["dynamic_resources"]["ads_config"]["grpc_services"]
    assert grpc["envoy_grpc"]["retry_policy"]["retry_back_off"]["base_interval"] == "0.250s"

    async def retried() -> bool:
        stats = await envoy.stats(r"^cluster\.xds-grpc\.upstream_cx_connect_fail$")
        return bool(stats.get("cluster.xds-grpc.upstream_cx_connect_fail", 0) >= 2)

    await eventually(retried, what="Envoy retrying the unreachable xDS server")


async def test_stop_reaps_the_process_and_start_again(
    envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback
) -> None:
    app = await apps.start("a")
    addr = loopback.next()
    envoy = await envoys.start(
        "static", static_http_bootstrap(listen=(addr, 8080), upstream=app.address, admin_host=addr)
    )
    pid = envoy.pid
    assert pid is not None

    code = await envoy.stop(grace=5.0)

    assert code is not None
    assert not envoy.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert await envoy.stop() == code  # idempotent
    await envoy.start()  # a fresh process for the same Envoy
    assert envoy.pid != pid
    assert await envoy.ready()


async def test_stop_kills_an_envoy_that_ignores_sigterm(
    envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback
) -> None:
    app = await apps.start("a")
    addr = loopback.next()
    envoy = await envoys.start(
        "static", static_http_bootstrap(listen=(addr, 8080), upstream=app.address, admin_host=addr)
    )
    assert envoy.pid is not None
    os.kill(envoy.pid, signal.SIGSTOP)  # a stopped process cannot act on SIGTERM

    code = await envoy.stop(grace=0.2)

    assert code == -signal.SIGKILL


async def test_bad_config_fails_start_with_the_log(envoys: EnvoyFleet, loopback: Loopback) -> None:
    addr = loopback.next()
    bootstrap = static_http_bootstrap(
        listen=(addr, 8080), upstream=("127.0.0.1", 1), admin_host=addr
    )
    bootstrap["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"

    with pytest.raises(EnvoyError, match="exited with") as err:
        await envoys.start("broken", bootstrap)

    assert "NOT_A_TYPE" in str(err.value)  # the log tail explains why
    assert not envoys.envoys[0].running


@pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("setpriv") is None, reason="needs setpriv --pdeathsig"
)
async def test_envoy_dies_with_the_process_that_started_it(
    tmp_path: Path, loopback: Loopback
) -> None:
    addr = loopback.next()
    boot = static_http_bootstrap(listen=(addr, 8080), upstream=("127.0.0.1", 1), admin_host=addr)
    script = textwrap.dedent(
        f"""
        import asyncio, pathlib, sys
        from legation.demo.envoy import Envoy
        boot = {boot!r}
        async def main():
            envoy = Envoy(name="orphan", bootstrap=boot, workdir=pathlib.Path({str(tmp_path)!r}))
            await envoy.start()
            print(envoy.pid, flush=True)
            await asyncio.sleep(60)
        asyncio.run(main())
        """
    )
    parent = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, stdout=asyncio.subprocess.PIPE
    )
    try:
        line = await asyncio.wait_for(parent.stdout.readline(), 30)  # type: ignore[union-attr]
        envoy_pid = int(line)
    finally:
        parent.send_signal(signal.SIGKILL)
        await parent.wait()

    async def gone() -> bool:
        try:
            stat = Path(f"/proc/{envoy_pid}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat.rpartition(")")[2].split()[0] == "Z"  # dead, waiting for init to reap it

    await eventually(gone, timeout=10.0, what=f"envoy {envoy_pid} exiting after its parent")


def test_loopback_allocators_in_one_block_never_share_addresses() -> None:
    a, b = Loopback(pid=4242), Loopback(pid=4242)
    try:
        first, second = a.many(3), b.many(3)
        assert len(set(first) | set(second)) == 6
        assert all(x.startswith(f"127.{100 + 4242 % 128}.") for x in first + second)
    finally:
        a.close()
        b.close()
