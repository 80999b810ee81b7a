"""In-cluster identity end to end: two control-plane replicas share one CA through the
Secret legation-ca, and real Envoy sidecars authenticate their xDS streams (over TLS)
with their pods' projected service-account tokens, checked by TokenReview.

The emulated API server plays the cluster: it stores the Secret (create races: 409
AlreadyExists) and answers TokenReviews for the tokens the test registers.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest

from legation.bootstrap import build_bootstrap
from legation.translators.names import istio_node_id

from .harness import AppFleet, EnvoyFleet, Loopback, eventually
from .kube_lab import (
    APP_PORT,
    EXPLICIT,
    NS,
    ApiServer,
    catalog_slice,
    control_plane,
    endpoint,
    k8s_objects,
    kubeconfig,
    served_by,
    shop,
)

pytestmark = pytest.mark.e2e

SYSTEM = "legation-system"


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    with ApiServer() as server:
        yield server


def sa_token(pod: str, service_account: str) -> str:
    """What kubelet projects for `audience: legation`: a JWT signed by the cluster."""
    return jwt.encode({"iss": "https://kubernetes.default.svc.cluster.local",
                       "sub": f"system:serviceaccount:{NS}:{service_account}",
                       "aud": ["legation"], "exp": 4_000_000_000,
                       "kubernetes.io": {"namespace": NS, "pod": {"name": pod}}},
                      "cluster-signing-key-" * 2, algorithm="HS256")


def _bootstrap(app: Any, *, node: str, address: str, root_pem: str, token: str) -> Any:
    assert app.xds_tls is not None, "the TLS xDS listener is not running"
    return build_bootstrap(node_id=node, node_cluster=NS, xds_host="127.0.0.1",
                           xds_port=app.xds_tls.port, admin_host=address, admin_port=0,
                           xds_tls_ca_pem=root_pem, xds_token=token)


async def test_replicas_share_the_ca_secret_and_pods_authenticate_with_token_review(
    apiserver: ApiServer, envoys: EnvoyFleet, apps: AppFleet, loopback: Loopback,
    tmp_path: Path,
) -> None:
    client_a, client_b, ip1 = loopback.many(3)
    apiserver.apply(k8s_objects.namespace(SYSTEM))
    shop(apiserver, client_ip=client_a, catalog_ips=(ip1,))
    apiserver.apply(k8s_objects.pod("frontend-b", NS, client_b, labels={"app": "frontend"},
                                    service_account="frontend", annotations=EXPLICIT))
    apiserver.apply(catalog_slice([endpoint("catalog-1", ip1)]))
    await apps.start("catalog-1", host=ip1, port=APP_PORT)
    token_a, token_b = sa_token("frontend-7d9f-x2x4z", "frontend"), sa_token("frontend-b",
                                                                             "frontend")
    apiserver.add_token(token_a, namespace=NS, service_account="frontend",
                        pod="frontend-7d9f-x2x4z")
    apiserver.add_token(token_b, namespace=NS, service_account="frontend", pod="frontend-b")
    config = kubeconfig(tmp_path / "kubeconfig", apiserver.url)
    node_a = istio_node_id("frontend-7d9f-x2x4z", NS, ip=client_a)

    async with control_plane(config, ca_dir=tmp_path / "ca-one", namespace=SYSTEM) as one, \
            control_plane(config, ca_dir=tmp_path / "ca-two", namespace=SYSTEM) as two:
        secret = apiserver.get("v1", "Secret", "legation-ca", SYSTEM)
        assert secret is not None, "the first replica did not create legation-ca"
        root_pem = base64.b64decode(secret["data"]["root-cert.pem"]).decode()
        for ca_dir in ("ca-one", "ca-two"):
            assert (tmp_path / ca_dir / "root-cert.pem").read_text() == root_pem
        assert len([w for w in apiserver.writes("secrets") if w.method == "POST"]) == 1

        # each replica's TLS certificate chains to the Secret's root; TokenReview admits
        envoy_a = await envoys.start("frontend-a", _bootstrap(
            one, node=node_a, address=client_a, root_pem=root_pem, token=token_a))
        envoy_b = await envoys.start("frontend-b", _bootstrap(
            two, node=f"frontend-b.{NS}", address=client_b, root_pem=root_pem, token=token_b))
        assert await envoy_a.ready() and await envoy_b.ready()
        assert await served_by(client_a, 3) == {"catalog-1": 3}
        assert await served_by(client_b, 3) == {"catalog-1": 3}
        reviews = [r for r in apiserver.state.token_reviews if r["audiences"] == ["legation"]]
        assert {r["token"] for r in reviews} == {token_a, token_b}

        # a pod's token does not open another pod's stream
        intruder = await envoys.start("intruder", _bootstrap(
            one, node=f"frontend-b.{NS}", address=loopback.next(), root_pem=root_pem,
            token=token_a), wait="admin")

        async def refused() -> bool:
            return bool(await _rejected(one))

        await eventually(refused, what="replica one refusing the intruder")
        assert not await intruder.ready()


async def _rejected(app: Any) -> float:
    """legation_xds_rejected_streams_total, summed over its labels."""
    return sum(s.value for m in app.metrics.registry.collect() for s in m.samples
               if s.name == "legation_xds_rejected_streams_total")
