"""`api_client`: the official client configured from a kubeconfig or the pod's service account."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from k8s import ApiServer
from k8s.harness import RecordingStore, running, until
from kubernetes import client as k8s

from legation.sources.kubernetes import KubeConfigError, KubernetesSource, api_client, scopes


def _kubeconfig(path: Path, server: str, token: str) -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emu", "cluster": {"server": server}}],
        "users": [{"name": "legation", "user": {"token": token}}],
        "contexts": [{"name": "emu", "context": {"cluster": "emu", "user": "legation"}}],
        "current-context": "emu",
    }))
    return path


async def test_a_kubeconfig_points_the_source_at_its_server_with_its_token(
    apiserver: ApiServer, tmp_path: Path
) -> None:
    config = _kubeconfig(tmp_path / "config", apiserver.url, "s3cret")
    api = api_client(kubeconfig=config, namespaces=["a", "b"])
    assert api.configuration.host == apiserver.url
    assert api.configuration.connection_pool_maxsize >= len(scopes(["a", "b"]))
    store = RecordingStore()
    async with running(KubernetesSource(store, api)):
        await until(lambda: store.ready)
    assert {r.authorization for r in apiserver.requests} == {"Bearer s3cret"}
    api.close()


@pytest.mark.parametrize("case", ["missing-file", "no-config", "in-cluster-without-env"])
def test_configuration_problems_are_one_clear_error(case: str, tmp_path: Path) -> None:
    with pytest.raises(KubeConfigError) as exc:
        if case == "missing-file":
            api_client(kubeconfig=tmp_path / "nope")
        elif case == "no-config":
            api_client()
        else:
            api_client(in_cluster=True, environ={})
    assert "\n" not in str(exc.value)
    assert ("--kubeconfig" in str(exc.value)) == (case != "in-cluster-without-env")


def test_the_client_is_the_official_one(tmp_path: Path) -> None:
    api = api_client(kubeconfig=_kubeconfig(tmp_path / "c", "http://127.0.0.1:1", "t"))
    assert isinstance(api, k8s.ApiClient)
    api.close()
