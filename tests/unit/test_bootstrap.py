"""build_bootstrap/render_bootstrap: every variant is accepted by the real Envoy binary."""

from __future__ import annotations

import datetime
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from legation.bootstrap import XDS_CLUSTER, build_bootstrap, render_bootstrap
from legation.demo.envoy import envoy_binary


@pytest.fixture(scope="module")
def ca_pem() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "legation test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _bootstrap(**overrides: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "node_id": "order-v1.shop",
        "node_cluster": "order.shop",
        "xds_host": "127.0.0.1",
        "xds_port": 15010,
        "admin_host": "127.0.10.1",
        "admin_port": 15000,
    }
    return build_bootstrap(**(args | overrides))


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(path), "--log-level", "error"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _xds_cluster(bootstrap: dict[str, Any]) -> dict[str, Any]:
    [cluster] = [c for c in bootstrap["static_resources"]["clusters"]
                 if c["name"] == XDS_CLUSTER]
    return dict(cluster)


def test_metrics_on_15090_and_tags_from_cluster_names_and_the_node() -> None:
    boot = _bootstrap(workload="order-v1", namespace="shop")
    [listener] = boot["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.10.1",
                                                     "port_value": 15090}
    [stats] = [c for c in boot["static_resources"]["clusters"] if c["name"] != XDS_CLUSTER]
    endpoint = stats["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"]["port_value"] == 15000  # the admin API
    tags = {t["tag_name"]: t for t in boot["stats_config"]["stats_tags"]}
    assert tags["source_workload"]["fixed_value"] == "order-v1"
    assert tags["source_namespace"]["fixed_value"] == "shop"
    assert {"destination_service", "destination_port", "destination_subset",
            "envoy.cluster_name", "envoy.response_code"} <= set(tags)
    assert "listeners" not in _bootstrap(admin_port=0)["static_resources"]  # no fixed admin


VARIANTS: dict[str, dict[str, Any]] = {
    "ip-sotw": {},
    "ip-delta": {"delta": True},
    "hostname": {"xds_host": "legation.legation-system.svc"},
    "ipv6": {"xds_host": "::1", "admin_host": "::1"},
    "admin-port-0": {"admin_port": 0},
    "token": {"xds_token": "eyJhbGciOiJFUzI1NiJ9.e30.sig"},
    "tls-ip": {"xds_port": 15012, "tls": True},
    "tls-hostname-token-delta": {
        "xds_host": "legation",
        "xds_port": 15012,
        "tls": True,
        "xds_token": "t0ken",
        "delta": True,
    },
}


@pytest.mark.parametrize("fmt", ["yaml", "json"])
@pytest.mark.parametrize("variant", sorted(VARIANTS), ids=str)
def test_envoy_accepts_bootstrap(variant: str, fmt: str, ca_pem: str, tmp_path: Path) -> None:
    args = dict(VARIANTS[variant])
    if args.pop("tls", False):
        args["xds_tls_ca_pem"] = ca_pem
    path = tmp_path / f"bootstrap.{fmt}"
    path.write_text(render_bootstrap(_bootstrap(**args), fmt="json" if fmt == "json" else "yaml"))

    result = _validate(path)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK" in result.stdout + result.stderr


def test_validation_has_teeth(tmp_path: Path) -> None:
    """A CA that is not a certificate is rejected: validate mode really builds the TLS context."""
    path = tmp_path / "bootstrap.yaml"
    path.write_text(render_bootstrap(_bootstrap(xds_tls_ca_pem="not a certificate\n")))

    result = _validate(path)

    assert result.returncode != 0
    assert "trusted CA" in result.stdout + result.stderr


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
def test_ads_config(delta: bool) -> None:
    b = _bootstrap(delta=delta)

    ads = b["dynamic_resources"]["ads_config"]
    assert ads["api_type"] == ("DELTA_GRPC" if delta else "GRPC")
    assert ads["transport_api_version"] == "V3"
    assert ads["set_node_on_first_message_only"] is True
    assert ads["grpc_services"][0]["envoy_grpc"]["cluster_name"] == XDS_CLUSTER
    assert "initial_metadata" not in ads["grpc_services"][0]
    for key in ("cds_config", "lds_config"):
        assert b["dynamic_resources"][key] == {"ads": {}, "resource_api_version": "V3"}
    assert b["node"] == {"id": "order-v1.shop", "cluster": "order.shop"}
    assert b["admin"]["address"]["socket_address"] == {"address": "127.0.10.1", "port_value": 15000}


@pytest.mark.parametrize(
    ("host", "kind"),
    [("127.0.0.1", "STATIC"), ("::1", "STATIC"), ("legation", "STRICT_DNS")],
    ids=["ipv4", "ipv6", "hostname"],
)
def test_xds_cluster_type_follows_the_host(host: str, kind: str) -> None:
    cluster = _xds_cluster(_bootstrap(xds_host=host))

    assert cluster["type"] == kind
    assert cluster["connect_timeout"] == "1s"
    assert "transport_socket" not in cluster
    options = cluster["typed_extension_protocol_options"]
    http2 = options["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "explicit_http_config"
    ]
    assert "connection_keepalive" in http2["http2_protocol_options"]


def test_token_becomes_grpc_initial_metadata() -> None:
    b = _bootstrap(xds_token="abc.def")

    [service] = b["dynamic_resources"]["ads_config"]["grpc_services"]
    assert service["initial_metadata"] == [{"key": "authorization", "value": "Bearer abc.def"}]


@pytest.mark.parametrize(
    ("host", "server_name", "san_type", "sni"),
    [
        ("legation", None, "DNS", "legation"),
        ("127.0.0.1", None, "IP_ADDRESS", None),
        ("127.0.0.1", "xds.legation.example", "DNS", "xds.legation.example"),
    ],
    ids=["hostname", "ip", "ip-with-server-name"],
)
def test_tls_trusts_only_the_given_ca_and_checks_the_server_name(
    ca_pem: str, host: str, server_name: str | None, san_type: str, sni: str | None
) -> None:
    cluster = _xds_cluster(
        _bootstrap(xds_host=host, xds_tls_ca_pem=ca_pem, xds_tls_server_name=server_name)
    )

    tls = cluster["transport_socket"]["typed_config"]
    validation = tls["common_tls_context"]["validation_context"]
    assert validation["trusted_ca"] == {"inline_string": ca_pem}
    expected_name = server_name or host
    assert validation["match_typed_subject_alt_names"] == [
        {"san_type": san_type, "matcher": {"exact": expected_name}}
    ]
    assert tls["common_tls_context"]["alpn_protocols"] == ["h2"]
    assert tls.get("sni") == sni


def test_render_round_trips(ca_pem: str) -> None:
    b = _bootstrap(xds_tls_ca_pem=ca_pem, xds_token="t")

    assert yaml.safe_load(render_bootstrap(b)) == b
    assert json.loads(render_bootstrap(b, fmt="json")) == b
    assert "inline_string: |" in render_bootstrap(b)  # the PEM stays readable
