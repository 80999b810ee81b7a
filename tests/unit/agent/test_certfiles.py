"""The gRPC agent's files (agent/certfiles.py): what it accepts, writes and refuses."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

import pytest
from google.protobuf import any_pb2

from legation.agent.certfiles import (
    CERT_FILE,
    KEY_FILE,
    ROOTS_FILE,
    SecretRejected,
    credentials_from,
    unpack_secrets,
    write_credentials,
)
from legation.bootstrap import build_grpc_bootstrap
from legation.model import SpiffeId
from legation.security import CertificateAuthority
from legation.translators.secrets import root_secret, workload_secret


def _packed(tmp_path: Path, *, roots: bool = True) -> list[any_pb2.Any]:
    ca = CertificateAuthority.load_or_create(tmp_path / "ca", trust_domain="cluster.local")
    cert = ca.issue(SpiffeId(trust_domain="cluster.local", namespace="shop",
                             service_account="web"), ttl=timedelta(hours=1))
    secrets = [workload_secret(cert), *([root_secret(ca.trust_bundle())] if roots else [])]
    out = []
    for s in secrets:
        a = any_pb2.Any()
        a.Pack(s)
        out.append(a)
    return out


def test_the_secrets_become_three_files_the_key_private(tmp_path: Path) -> None:
    creds = credentials_from(unpack_secrets(_packed(tmp_path)))
    out = tmp_path / "certs"
    assert write_credentials(out, creds) is True
    assert (out / CERT_FILE).read_text() == creds.chain_pem
    assert "PRIVATE KEY" in (out / KEY_FILE).read_text()
    assert stat.S_IMODE((out / KEY_FILE).stat().st_mode) == 0o600
    assert (out / ROOTS_FILE).read_text() == creds.roots_pem
    assert write_credentials(out, creds) is False  # unchanged: nothing rewritten
    assert sorted(p.name for p in out.iterdir()) == sorted([CERT_FILE, KEY_FILE, ROOTS_FILE])


def test_a_response_without_the_roots_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(SecretRejected, match="expected both secrets 'default' and 'ROOTCA', "
                       "got default"):
        credentials_from(unpack_secrets(_packed(tmp_path, roots=False)))


def test_the_bootstrap_provider_names_the_files(tmp_path: Path) -> None:
    boot = build_grpc_bootstrap(node_id="proxyless~1.2.3.4~w.ns~ns.svc.cluster.local",
                                namespace="ns", labels={}, xds_host="h", xds_port=1,
                                cert_dir=str(tmp_path))
    config = boot["certificate_providers"]["default"]
    assert config["plugin_name"] == "file_watcher"
    assert config["config"]["private_key_file"] == str(tmp_path / KEY_FILE)
