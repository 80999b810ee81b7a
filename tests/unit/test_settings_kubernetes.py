"""Settings for running in Kubernetes (issue 5): the control plane's namespace (where the
CA Secret lives) and the default --max-connection-age."""

from __future__ import annotations

from pathlib import Path

import pytest

from legation.cli import _parser, _serve_settings
from legation.settings import Settings, pod_namespace


def test_pod_namespace_prefers_the_downward_api(tmp_path: Path) -> None:
    file = tmp_path / "namespace"
    file.write_text("from-file\n")

    assert pod_namespace({"POD_NAMESPACE": "from-env"}, in_cluster=True,
                         namespace_file=file) == "from-env"
    assert pod_namespace({}, in_cluster=True, namespace_file=file) == "from-file"
    assert pod_namespace({}, in_cluster=False, namespace_file=file) == ""
    assert pod_namespace({}, in_cluster=True, namespace_file=tmp_path / "absent") == ""


@pytest.mark.parametrize(
    ("argv", "namespace", "ca_secret"),
    [
        (["--kubeconfig", "k", "--ca-dir", "ca", "--namespace", "legation-system"],
         "legation-system", True),
        (["--kubeconfig", "k", "--ca-dir", "ca"], "", False),
        (["--kubeconfig", "k", "--namespace", "legation-system"], "legation-system", False),
    ],
    ids=["kubernetes-ca-namespace", "no-namespace", "no-ca"],
)
def test_the_ca_comes_from_the_secret_with_kubernetes_a_ca_and_a_namespace(
    argv: list[str], namespace: str, ca_secret: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POD_NAMESPACE", raising=False)

    settings = _serve_settings(_parser().parse_args(["serve", *argv]))

    assert settings.namespace == namespace
    assert settings.ca_secret is ca_secret


def test_the_namespace_defaults_to_pod_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "mesh-control")

    settings = _serve_settings(_parser().parse_args(["serve", "--kubeconfig", "k"]))

    assert settings.namespace == "mesh-control"


@pytest.mark.parametrize(("flag", "seconds"), [(None, 1800.0), ("5m", 300.0), ("off", None),
                                               ("0", None)], ids=["default", "5m", "off", "0"])
def test_max_connection_age(flag: str | None, seconds: float | None) -> None:
    argv = ["serve", "--kubeconfig", "k"] + (["--max-connection-age", flag] if flag else [])

    assert _serve_settings(_parser().parse_args(argv)).max_connection_age_s == seconds


def test_no_ca_secret_without_kubernetes(tmp_path: Path) -> None:
    settings = Settings(config_dirs=(tmp_path,), ca_dir=tmp_path / "ca", namespace="x")
    assert not settings.ca_secret
