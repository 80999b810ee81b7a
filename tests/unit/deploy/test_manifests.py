"""deploy/kubernetes: every manifest is a valid Kubernetes object, and together they
deploy Legation as issue 5 asks (least privilege, hardened pods, probes, replicas).

Validation is offline, against the Kubernetes OpenAPI schema as the official
client's models carry it: each document is deserialized into its model
(`ApiClient.deserialize`: required fields and types), walked field by field
against the models' `attribute_map`/`openapi_types` (unknown fields, as
`kubectl --validate=strict` rejects them), and serialized back unchanged.
Then kubeconform-style cross checks: kinds known, names valid, selectors
matching pod labels, probe and Service ports existing, RBAC verbs and
resources valid. Where `kubectl` is installed, `kubectl kustomize` must
render exactly what `kubectl apply -f` reads.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from legation.cli import _parser, _serve_settings
from legation.kube.istiostatus import KINDS as ISTIO_STATUS_KINDS
from legation.kube.lease import LEADER_LEASE
from legation.kube.secretstore import CA_SECRET, ISTIO_CA_SECRET
from legation.settings import pod_namespace
from legation.sources.kube.kinds import WATCHED_KINDS

ROOT = Path(__file__).resolve().parents[3]
DEPLOY = ROOT / "deploy" / "kubernetes"
CRDS = DEPLOY / "crds"
NAMESPACE = "legation-system"

MODELS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "V1Namespace",
    ("v1", "ServiceAccount"): "V1ServiceAccount",
    ("v1", "Service"): "V1Service",
    ("apps/v1", "Deployment"): "V1Deployment",
    ("policy/v1", "PodDisruptionBudget"): "V1PodDisruptionBudget",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "V1ClusterRole",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "V1ClusterRoleBinding",
    ("rbac.authorization.k8s.io/v1", "Role"): "V1Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "V1RoleBinding",
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): "V1CustomResourceDefinition",
}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
RBAC_VERBS = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
LABEL_KEY = re.compile(r"([a-z0-9.-]{1,253}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
LABEL_VALUE = re.compile(r"(|[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)")


def _load(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    """What `kubectl apply -f DIR` reads: every *.yaml/*.yml/*.json file, in name order."""
    out = []
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.suffix in (".yaml", ".yml", ".json"):
            for doc in yaml.safe_load_all(path.read_text()):
                if doc is not None:
                    out.append((path.name, doc))
    return out


DOCS = _load(DEPLOY)
CRD_DOCS = _load(CRDS)
ALL = DOCS + CRD_DOCS


def _id(item: tuple[str, dict[str, Any]]) -> str:
    return f"{item[1].get('kind')}/{item[1].get('metadata', {}).get('name')}"


def _one(kind: str, docs: list[tuple[str, dict[str, Any]]] = DOCS) -> dict[str, Any]:
    [found] = [d for _, d in docs if d["kind"] == kind]
    return found


def _all(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in ALL if d["kind"] == kind]


# -- the OpenAPI schema, as the client's models carry it ------------------------------------


def _unknown_fields(data: Any, type_name: str, path: str) -> Iterator[str]:
    """Fields the schema does not define, and values of the wrong JSON type."""
    generic = re.fullmatch(r"(List|Dict)\[(?:str, )?(.+)\]", type_name)
    if generic:
        container, inner = generic.groups()
        want = list if container == "List" else dict
        if not isinstance(data, want):
            yield f"{path}: expected a {want.__name__}"
            return
        items = enumerate(data) if isinstance(data, list) else data.items()
        for key, value in items:
            yield from _unknown_fields(value, inner, f"{path}[{key}]")
        return
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float), "datetime": str}
    if type_name in primitive:
        ok = isinstance(data, primitive[type_name]) and not (  # type: ignore[arg-type]
            type_name == "int" and isinstance(data, bool))
        if not ok:
            yield f"{path}: expected {type_name}, got {type(data).__name__}"
        return
    if type_name == "object":  # IntOrString, arbitrary JSON
        return
    model = getattr(client, type_name)
    if not isinstance(data, dict):
        yield f"{path}: expected an object ({type_name})"
        return
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    for key, value in data.items():
        if key not in by_json:
            yield f"{path}.{key}: unknown field of {type_name}"
        else:
            yield from _unknown_fields(value, model.openapi_types[by_json[key]], f"{path}.{key}")


@pytest.mark.parametrize("item", ALL, ids=[_id(i) for i in ALL])
def test_every_manifest_matches_the_kubernetes_openapi_schema(
    item: tuple[str, dict[str, Any]],
) -> None:
    _, doc = item
    key = (doc.get("apiVersion"), doc.get("kind"))
    assert key in MODELS, f"unknown apiVersion/kind {key}"
    model = MODELS[key]  # type: ignore[index]

    problems = list(_unknown_fields(doc, model, doc["kind"]))
    api = client.ApiClient()
    obj = api.deserialize(json.dumps(doc), model, "application/json")  # required fields, types
    back = api.sanitize_for_serialization(obj)

    assert problems == []
    assert back == doc  # nothing dropped, coerced or defaulted on the way


def test_the_schema_check_can_fail() -> None:
    bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
           "spec": {"replica": 2, "selector": {}, "template": {"spec": {"containers": [
               {"name": "a", "image": "i", "ports": [{"containerPort": "80"}]}]}}}}

    problems = list(_unknown_fields(bad, "V1Deployment", "Deployment"))

    assert problems == ["Deployment.spec.replica: unknown field of V1DeploymentSpec",
                        "Deployment.spec.template.spec.containers[0].ports[0].containerPort: "
                        "expected int, got str"]


@pytest.mark.parametrize("item", ALL, ids=[_id(i) for i in ALL])
def test_names_labels_and_namespaces_are_valid(item: tuple[str, dict[str, Any]]) -> None:
    _, doc = item
    meta = doc["metadata"]
    assert DNS_SUBDOMAIN.fullmatch(meta["name"]) and len(meta["name"]) <= 253
    for key, value in (meta.get("labels") or {}).items():
        assert LABEL_KEY.fullmatch(key), key
        assert LABEL_VALUE.fullmatch(value), value
    if doc["kind"] in CLUSTER_SCOPED:
        assert "namespace" not in meta
    else:
        assert meta["namespace"] == NAMESPACE


# -- kubectl apply -k and -f -------------------------------------------------------------------


@pytest.mark.parametrize("directory", [DEPLOY, CRDS], ids=["deploy", "crds"])
def test_apply_k_and_apply_f_read_the_same_objects(directory: Path) -> None:
    kustomization = directory / "Kustomization"
    spec = yaml.safe_load(kustomization.read_text())
    manifests = sorted(p.name for p in directory.iterdir() if p.suffix in (".yaml", ".yml"))

    assert kustomization.suffix == ""  # invisible to `kubectl apply -f DIR`
    assert not (directory / "kustomization.yaml").exists()
    assert not (directory / "kustomization.yml").exists()
    assert spec["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert spec["kind"] == "Kustomization"
    assert sorted(spec["resources"]) == manifests
    assert set(spec) <= {"apiVersion", "kind", "resources"}  # no transformation: -f == -k


def test_apply_f_creates_the_namespace_first_and_not_the_crds() -> None:
    assert DOCS[0][1]["kind"] == "Namespace"  # files apply in name order
    assert not [d for _, d in DOCS if d["kind"] == "CustomResourceDefinition"]


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
@pytest.mark.parametrize("directory", [DEPLOY, CRDS], ids=["deploy", "crds"])
def test_kubectl_kustomize_renders_what_apply_f_reads(directory: Path) -> None:
    proc = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    rendered = [d for d in yaml.safe_load_all(proc.stdout) if d]

    def key(d: Mapping[str, Any]) -> str:
        return json.dumps(d, sort_keys=True)

    assert sorted(map(key, rendered)) == sorted(key(d) for _, d in _load(directory))


# -- the Deployment ------------------------------------------------------------------------------


def _pod_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _one("Deployment")["spec"]["template"]["spec"]
    return spec


def _container() -> dict[str, Any]:
    [container] = _pod_spec()["containers"]
    return container


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_selectors_select_the_control_plane_pods() -> None:
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    spec = _pod_spec()
    terms = [t["podAffinityTerm"]["labelSelector"]["matchLabels"]
             for t in spec["affinity"]["podAntiAffinity"]
             ["preferredDuringSchedulingIgnoredDuringExecution"]]
    spreads = [c["labelSelector"]["matchLabels"] for c in spec["topologySpreadConstraints"]]

    assert _matches(deployment["spec"]["selector"]["matchLabels"], labels)
    assert _matches(_one("Service")["spec"]["selector"], labels)
    assert _matches(_one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"], labels)
    assert terms and all(_matches(t, labels) for t in terms)
    assert spreads and all(_matches(s, labels) for s in spreads)


def test_ports_probes_and_service_agree() -> None:
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    service = _one("Service")["spec"]["ports"]
    args = _args()

    assert ports == {"grpc-xds": 15010, "grpc-xds-tls": 15012, "http-monitoring": 15014}
    assert all(DNS_LABEL.fullmatch(n) and len(n) <= 15 for n in ports)  # IANA_SVC_NAME
    assert {p["port"] for p in service} == {15010, 15012, 15014}
    for p in service:
        assert p["targetPort"] in ports and ports[p["targetPort"]] == p["port"]
    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe",
                                                   "readinessProbe")}
    assert {k: p["path"] for k, p in probes.items()} == {
        "startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"}
    assert all(ports.get(p["port"]) == 15014 for p in probes.values())
    assert args.admin_address.endswith(":15014") and args.xds_address.endswith(":15010")


def test_the_pod_is_hardened() -> None:
    spec, container = _pod_spec(), _container()
    pod_ctx, ctx = spec["securityContext"], container["securityContext"]

    assert pod_ctx["runAsNonRoot"] is True and pod_ctx["runAsUser"] > 0
    assert pod_ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["privileged"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert _one("Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == \
        "restricted"
    resources = container["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert "memory" in resources["limits"]


def test_writable_paths_are_empty_dirs_and_the_ca_dir_is_one() -> None:
    spec, container = _pod_spec(), _container()
    empty_dirs = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}

    assert set(mounts.values()) <= empty_dirs
    assert mounts["/tmp"] in empty_dirs
    assert mounts[str(_args().ca_dir)] in empty_dirs
    [ca] = [v for v in spec["volumes"] if v["name"] == mounts[str(_args().ca_dir)]]
    assert ca["emptyDir"]["medium"] == "Memory"  # keys stay off the node's disk


def test_replicas_and_disruption_budget() -> None:
    deployment = _one("Deployment")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert _one("PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert _pod_spec()["serviceAccountName"] == _one("ServiceAccount")["metadata"]["name"]


def _args() -> Any:
    return _parser().parse_args(_container()["args"])


def test_the_container_args_are_accepted_by_legation_serve() -> None:
    args = _args()
    settings = _serve_settings(args)  # raises SettingsError on a bad value

    assert args.command == "serve"
    assert settings.in_cluster and settings.kubeconfig is None
    assert settings.max_connection_age_s == 1800
    assert settings.security and settings.xds_tls_address is not None
    assert str(settings.xds_tls_address) == "0.0.0.0:15012"
    service = _one("Service")["metadata"]
    assert f"{service['name']}.{service['namespace']}.svc" in settings.xds_tls_names
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in _container()["env"]}
    assert env == {"POD_NAMESPACE": "metadata.namespace"}  # --namespace: the CA Secret's
    in_pod = dataclasses.replace(settings, namespace=pod_namespace(
        {"POD_NAMESPACE": NAMESPACE}, in_cluster=True))
    assert in_pod.ca_secret  # the CA comes from the Secret legation-ca of legation-system


# -- RBAC ------------------------------------------------------------------------------------------


def _grants(rules: list[dict[str, Any]]) -> dict[tuple[str, str, tuple[str, ...]], set[str]]:
    """(apiGroup, resource, resourceNames) -> verbs."""
    out: dict[tuple[str, str, tuple[str, ...]], set[str]] = {}
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}
        assert "*" not in rule["verbs"] and "*" not in rule["resources"]
        assert "*" not in rule["apiGroups"]
        assert set(rule["verbs"]) <= RBAC_VERBS
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                key = (group, resource, tuple(sorted(rule.get("resourceNames", ()))))
                out.setdefault(key, set()).update(rule["verbs"])
    return out


def test_the_cluster_role_reads_the_watched_kinds_and_creates_token_reviews() -> None:
    grants = _grants(_one("ClusterRole")["rules"])
    watched = {(k.group, k.plural, ()): {"get", "list", "watch"} for k in WATCHED_KINDS
               if not k.in_config_namespace}  # the MeshConfig's ConfigMap: the Role's

    status = {("gateway.networking.k8s.io", f"{plural}/status", ()): {"patch"}
              for plural in ("gatewayclasses", "gateways", "grpcroutes", "httproutes")}
    status |= {(group, f"{plural}/status", ()): {"patch"}  # kube/istiostatus.py
               for group, _, plural in ISTIO_STATUS_KINDS.values()}
    assert grants == {**watched, **status,
                      ("authentication.k8s.io", "tokenreviews", ()): {"create"},
                      ("", "events", ()): {"create"}}  # kube/events.py


def test_the_role_touches_only_its_own_secrets_and_lease() -> None:
    role = _one("Role")
    grants = _grants(role["rules"])

    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants == {
        ("", "secrets", tuple(sorted((CA_SECRET, ISTIO_CA_SECRET)))): {"get", "update"},
        ("", "secrets", ()): {"create"},  # RBAC cannot restrict create by name
        ("coordination.k8s.io", "leases", (LEADER_LEASE,)): {"get", "update"},
        ("coordination.k8s.io", "leases", ()): {"create"},
        # the MeshConfig: only the ConfigMap istio (a field-selected list/watch)
        ("", "configmaps", ("istio",)): {"get", "list", "watch"},
    }
    assert [k.field_selector for k in WATCHED_KINDS if k.in_config_namespace] == [
        "metadata.name=istio"]


@pytest.mark.parametrize("kind", ["ClusterRoleBinding", "RoleBinding"])
def test_bindings_grant_the_roles_to_the_service_account(kind: str) -> None:
    binding = _one(kind)
    role_kind = kind.removesuffix("Binding")
    account = _one("ServiceAccount")["metadata"]

    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind,
                                  "name": _one(role_kind)["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                    "namespace": account["namespace"]}]


# -- CRDs ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in WATCHED_KINDS  # Gateway API: its own bundle
                                  if k.crd and k.group != "gateway.networking.k8s.io"],
                         ids=lambda k: k.kind)
def test_a_crd_for_every_istio_kind_legation_reads(kind: Any) -> None:
    [crd] = [c for c in _all("CustomResourceDefinition")
             if c["metadata"]["name"] == f"{kind.plural}.{kind.group}"]
    spec = crd["spec"]

    assert (spec["group"], spec["scope"]) == (kind.group, "Namespaced")
    assert (spec["names"]["kind"], spec["names"]["plural"]) == (kind.kind, kind.plural)
    assert tuple(v["name"] for v in spec["versions"]) == kind.versions
    assert all(v["served"] for v in spec["versions"])
    assert [v["name"] for v in spec["versions"] if v["storage"]] == [kind.versions[0]]
    for v in spec["versions"]:
        schema = v["schema"]["openAPIV3Schema"]
        assert schema["type"] == "object"  # structural: every level typed
        assert schema["properties"]["spec"] == {
            "type": "object", "x-kubernetes-preserve-unknown-fields": True}
