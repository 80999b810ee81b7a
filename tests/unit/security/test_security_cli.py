"""`legation bootstrap --xds-tls` and the security flags of `legation serve`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from legation.cli import _serve_settings, main
from legation.security import CertificateAuthority, TokenAuthority
from legation.settings import HostPort, Settings, SettingsError

SHOP = Path(__file__).resolve().parents[3] / "examples" / "shop"


def _bootstrap(tmp_path: Path, *extra: str) -> dict[str, object]:
    out = tmp_path / "boot.yaml"
    code = main(
        [
            "bootstrap",
            "--config-dir",
            str(SHOP),
            "--workload",
            "order-v1",
            "--namespace",
            "shop",
            "--admin-address",
            "127.0.10.2:15000",
            "--ca-dir",
            str(tmp_path / "ca"),
            "-o",
            str(out),
            *extra,
        ]
    )
    assert code == 0
    data: dict[str, object] = yaml.safe_load(out.read_text())
    return data


def test_bootstrap_xds_tls_embeds_the_ca_and_a_credential_for_the_workload(tmp_path: Path) -> None:
    boot = _bootstrap(tmp_path, "--xds-tls")
    (cluster,) = [c for c in boot["static_resources"]["clusters"]  # type: ignore[index]
                  if c["name"] == "xds-grpc"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 15012}
    ctx = cluster["transport_socket"]["typed_config"]["common_tls_context"]
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain="cluster.local")
    assert ctx["validation_context"]["trusted_ca"]["inline_string"] == ca.trust_bundle().pem
    (metadata,) = boot["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"]  # type: ignore[index]
    token = metadata["value"].removeprefix("Bearer ")
    claims = TokenAuthority.load_or_create(tmp_path / "ca", "cluster.local").verify(
        token, node_namespace="shop", node_workload="order-v1", workload_service_account="order-sa"
    )
    assert str(claims.identity) == "spiffe://cluster.local/ns/shop/sa/order-sa"
    # short-lived by default (`legation proxy` refreshes it); long-lived only when asked
    lifetime = claims.expires_at - datetime.now(UTC)
    assert timedelta(hours=23) < lifetime <= timedelta(hours=24)


def test_a_long_lived_credential_is_asked_for_and_the_expiry_is_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    boot = _bootstrap(tmp_path, "--token-ttl", "365d")
    (metadata,) = boot["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"]  # type: ignore[index]
    claims = TokenAuthority.load_or_create(tmp_path / "ca", "cluster.local").verify(
        metadata["value"].removeprefix("Bearer "), node_namespace="shop",
        node_workload="order-v1", workload_service_account="order-sa")
    assert claims.expires_at - datetime.now(UTC) > timedelta(days=364)
    assert "expires in 365d (--token-ttl); `legation proxy` runs Envoy and refreshes it" in (
        capsys.readouterr().err)


def test_bootstrap_with_a_ca_but_plaintext_still_carries_the_credential(tmp_path: Path) -> None:
    boot = _bootstrap(tmp_path)
    (cluster,) = [c for c in boot["static_resources"]["clusters"]  # type: ignore[index]
                  if c["name"] == "xds-grpc"]
    assert "transport_socket" not in cluster
    assert "initial_metadata" in boot["dynamic_resources"]["ads_config"]["grpc_services"][0]  # type: ignore[index]


def test_bootstrap_refuses_a_service_account_the_mesh_contradicts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "bootstrap",
            "--config-dir",
            str(SHOP),
            "--workload",
            "order-v1",
            "--namespace",
            "shop",
            "--admin-address",
            "127.0.0.1:0",
            "--ca-dir",
            str(tmp_path),
            "--service-account",
            "payment-sa",
        ]
    )
    assert code == 2
    assert "runs as order-sa" in capsys.readouterr().err


def test_xds_tls_needs_a_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "bootstrap",
            "--workload",
            "w",
            "--namespace",
            "ns",
            "--admin-address",
            "127.0.0.1:0",
            "--xds-tls",
        ]
    )
    assert code == 2 and "--xds-tls needs --ca-dir" in capsys.readouterr().err


def _serve(*args: str) -> Settings:
    from legation.cli import _parser

    ns: argparse.Namespace = _parser().parse_args(["serve", "--config-dir", str(SHOP), *args])
    return _serve_settings(ns)


def test_serve_security_flags(tmp_path: Path) -> None:
    plain = _serve()
    assert (plain.security, plain.xds_tls_address) == (False, None)
    s = _serve(
        "--ca-dir",
        str(tmp_path),
        "--workload-cert-ttl",
        "30s",
        "--xds-tls-address",
        "0.0.0.0:25012",
        "--xds-tls-san",
        "legation.example",
        "--insecure-plaintext-secrets",
        "--require-xds-credentials",
    )
    assert s.security and s.workload_cert_ttl_s == 30
    assert s.xds_tls_address == HostPort(host="0.0.0.0", port=25012)
    assert (s.xds_tls_names, s.insecure_plaintext_secrets, s.require_xds_credentials) == (
        ("legation.example",),
        True,
        True,
    )
    assert _serve("--ca-dir", str(tmp_path)).xds_tls_address == HostPort(
        host="127.0.0.1", port=15012
    )
    assert _serve("--ca-dir", str(tmp_path), "--xds-tls-address", "off").xds_tls_address is None
    assert _serve("--ca-dir", str(tmp_path), "--workload-cert-ttl", "2d").workload_cert_ttl_s == (
        timedelta(days=2).total_seconds()
    )


def test_secret_flags_need_a_ca() -> None:
    with pytest.raises(SettingsError, match="need --ca-dir"):
        _serve("--insecure-plaintext-secrets")
