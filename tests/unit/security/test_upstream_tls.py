"""Client-side mTLS: automatic mTLS by endpoint metadata; DestinationRule tls forces or disables."""

from __future__ import annotations

import textwrap
from typing import Any

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import json_format

from legation.mesh.store import MeshStore
from legation.model import MeshSecurity, MeshSnapshot
from legation.sources.convert import convert_text
from legation.translators import translate_mesh

MESH = """\
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec:
  selector: {app: catalog}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-1, namespace: shop}
spec:
  address: 10.0.0.1
  labels: {app: catalog, security.istio.io/tlsMode: istio}
  serviceAccount: catalog-sa
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: catalog-legacy, namespace: shop}
spec:
  address: 10.0.0.2
  labels: {app: catalog}
  serviceAccount: legacy-sa
"""
CLUSTER = "outbound|9080||catalog.shop.svc.cluster.local"


def translated(extra: str = "", *, mtls: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    result = convert_text(MESH + textwrap.dedent(extra), file="t.yaml")
    assert [d.format() for d in result.diagnostics if d.severity == "error"] == []
    store = MeshStore(security=MeshSecurity(mtls=mtls))
    store.replace_source("t", result.objects, result.diagnostics)
    mesh: MeshSnapshot = store.snapshot()
    out = translate_mesh(mesh)
    (cluster,) = [c for c in out.clusters if c.name == CLUSTER]
    (cla,) = [e for e in out.endpoints if e.cluster_name == CLUSTER]
    as_dict = lambda m: json_format.MessageToDict(m, preserving_proto_field_name=True)  # noqa: E731
    return as_dict(cluster), as_dict(cla)


def tls_modes(cla: dict[str, Any]) -> dict[str, str]:
    out = {}
    for group in cla["endpoints"]:
        for lb in group["lb_endpoints"]:
            meta = lb.get("metadata", {}).get("filter_metadata", {})
            out[lb["endpoint"]["address"]["socket_address"]["address"]] = meta.get(
                "envoy.transport_socket_match", {}
            ).get("tlsMode", "-")
    return out


def upstream(socket: dict[str, Any]) -> tls_pb2.UpstreamTlsContext:
    ctx = tls_pb2.UpstreamTlsContext()
    json_format.ParseDict({k: v for k, v in socket["typed_config"].items() if k != "@type"}, ctx)
    return ctx


def test_auto_mtls_by_endpoint_metadata() -> None:
    cluster, cla = translated()
    assert "transport_socket" not in cluster
    matches = cluster["transport_socket_matches"]
    assert [m.get("match", {}) for m in matches] == [{"tlsMode": "istio"}, {}]
    ctx = upstream(matches[0]["transport_socket"])
    common = ctx.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["default"]
    assert common.combined_validation_context.validation_context_sds_secret_config.name == "ROOTCA"
    sans = (
        common.combined_validation_context.default_validation_context.match_typed_subject_alt_names
    )
    # the destination's meshed service accounts only (the legacy one has no sidecar)
    assert [s.matcher.exact for s in sans] == ["spiffe://cluster.local/ns/shop/sa/catalog-sa"]
    assert ctx.sni == "outbound_.9080_._.catalog.shop.svc.cluster.local"
    assert list(common.alpn_protocols) == []  # no Istio-only ALPN
    assert matches[1]["transport_socket"]["name"] == "envoy.transport_sockets.raw_buffer"
    assert tls_modes(cla) == {"10.0.0.1": "istio", "10.0.0.2": "-"}


def test_no_ca_no_mtls() -> None:
    cluster, cla = translated(mtls=False)
    assert "transport_socket" not in cluster and "transport_socket_matches" not in cluster
    assert tls_modes(cla) == {"10.0.0.1": "-", "10.0.0.2": "-"}


def test_destination_disables_mtls_on_its_port() -> None:
    _, cla = translated("""\
        ---
        apiVersion: security.istio.io/v1
        kind: PeerAuthentication
        metadata: {name: catalog-plain, namespace: shop}
        spec:
          selector: {matchLabels: {app: catalog}}
          portLevelMtls: {9080: {mode: DISABLE}}
    """)
    assert tls_modes(cla) == {"10.0.0.1": "-", "10.0.0.2": "-"}


def _rule(mode: str) -> str:
    return f"""\
        ---
        apiVersion: networking.istio.io/v1
        kind: DestinationRule
        metadata: {{name: catalog, namespace: shop}}
        spec:
          host: catalog
          trafficPolicy: {{tls: {{mode: {mode}}}}}
    """


def test_istio_mutual_forces_mtls_for_every_endpoint() -> None:
    cluster, _ = translated(_rule("ISTIO_MUTUAL"))
    assert "transport_socket_matches" not in cluster
    ctx = upstream(cluster["transport_socket"])
    assert [s.name for s in ctx.common_tls_context.tls_certificate_sds_secret_configs] == [
        "default"
    ]


def test_disable_turns_mtls_off() -> None:
    cluster, _ = translated(_rule("DISABLE"))
    assert "transport_socket" not in cluster and "transport_socket_matches" not in cluster
