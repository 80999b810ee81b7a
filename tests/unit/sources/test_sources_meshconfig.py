"""MeshConfig: from `--mesh-config FILE` or the ConfigMap `istio`, and which one is used."""

from __future__ import annotations

from pathlib import Path

import pytest
from sources_builders import convert

from legation.mesh.store import MeshStore
from legation.model import MeshConfig, OutboundPolicy, Severity
from legation.sources.convert import convert_text
from legation.sources.convert.meshconfig import convert_mesh_config_text
from legation.sources.files import MeshConfigFile

CONFIG_MAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: NS}
data:
  mesh: |-
    enableTracing: true
    outboundTrafficPolicy:
      mode: MODE
"""


def config_map(mode: str = "REGISTRY_ONLY", namespace: str = "istio-system") -> str:
    return CONFIG_MAP.replace("MODE", mode).replace("NS", namespace)


def test_the_istio_config_map_is_read() -> None:
    result = convert(config_map())
    (cfg,) = result.objects
    assert isinstance(cfg, MeshConfig)
    assert (cfg.outbound_policy, cfg.namespace) == (OutboundPolicy.REGISTRY_ONLY, "istio-system")
    (info,) = result.diagnostics  # enableTracing is known, not applied: said so
    assert (info.code, info.severity, info.field) == (
        "configmap.field-not-applied", Severity.INFO, "data.mesh.enableTracing")


def test_other_config_maps_are_not_read_and_say_so() -> None:
    result = convert("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: app, namespace: a}\n"
                     "data: {k: v}\n")
    assert result.objects == ()
    assert [(d.code, d.severity) for d in result.diagnostics] == [
        ("configmap.not-read", Severity.INFO)]


@pytest.mark.parametrize(("text", "code", "field"), [
    ("outboundTrafficPolicy: {mode: allow_any}\n", "meshconfig.outbound-policy-invalid",
     "outboundTrafficPolicy.mode"),
    ("outboundTrafficPolicy: {mod: ALLOW_ANY}\n", "meshconfig.field-unknown",
     "outboundTrafficPolicy.mod"),
    ("outboundTrafficPolicy: ALLOW_ANY\n", "meshconfig.outbound-policy-invalid",
     "outboundTrafficPolicy"),
    ("- a list\n", "meshconfig.mesh-invalid", ""),
])
def test_an_invalid_file_is_an_error(text: str, code: str, field: str) -> None:
    config, diagnostics, broken = convert_mesh_config_text(text, file="mesh.yaml")
    assert config is None and not broken
    (d,) = [d for d in diagnostics if d.severity is Severity.ERROR]
    assert (d.code, d.field, d.ref.file) == (code, field, "mesh.yaml")


def test_a_newer_istio_field_is_a_warning_not_an_outage() -> None:
    config, diagnostics, _ = convert_mesh_config_text(
        "outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nenableFancyThing: true\n", file="m.yaml")
    assert config is not None and config.outbound_policy is OutboundPolicy.REGISTRY_ONLY
    assert [(d.code, d.severity, d.line) for d in diagnostics] == [
        ("meshconfig.field-unknown", Severity.WARNING, 2)]


def test_an_empty_file_is_istios_defaults() -> None:
    config, diagnostics, _ = convert_mesh_config_text("", file="m.yaml")
    assert config == MeshConfig(ref=config.ref) and config.allow_any and diagnostics == []


def _objects(text: str) -> MeshStore:
    store = MeshStore()
    store.replace_source("files", convert_text(text, file="mesh.yaml").objects)
    return store


def test_the_root_namespace_config_map_is_used_and_others_are_reported() -> None:
    store = _objects(config_map("REGISTRY_ONLY", "istio-system") + "---\n"
                     + config_map("ALLOW_ANY", "team"))
    mesh = store.snapshot()
    assert mesh.config.outbound_policy is OutboundPolicy.REGISTRY_ONLY
    (d,) = [d for d in mesh.diagnostics if d.code == "meshconfig.not-used"]
    assert d.ref.namespace == "team" and "mesh.yaml" in d.message


def test_without_any_mesh_config_istios_default_applies() -> None:
    assert MeshStore().snapshot().config.allow_any


def test_the_file_wins_over_the_config_map_and_keeps_its_last_good(tmp_path: Path) -> None:
    store = _objects(config_map("ALLOW_ANY"))
    path = tmp_path / "mesh.yaml"
    path.write_text("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\n")
    source = MeshConfigFile(path, store)
    source.load()
    assert store.snapshot().config.outbound_policy is OutboundPolicy.REGISTRY_ONLY
    path.write_text("outboundTrafficPolicy: {mode: NOPE}\n")
    source.load()
    mesh = store.snapshot()
    assert mesh.config.outbound_policy is OutboundPolicy.REGISTRY_ONLY  # the last good
    (d,) = [d for d in mesh.diagnostics if d.severity is Severity.ERROR]
    assert d.message.endswith("The last good MeshConfig stays in force until this is fixed.")
    path.unlink()  # no file: Istio's defaults, and the ConfigMap is not consulted
    source.load()
    assert store.snapshot().config.outbound_policy is OutboundPolicy.ALLOW_ANY
