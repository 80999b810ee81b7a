"""Settings: the ONLY place that reads command-line flags or environment variables.

`Settings` is frozen; every component receives the values it needs from it.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


class SettingsError(ValueError):
    """A flag or environment value is invalid; the message is one clear line."""


class LogFormat(StrEnum):
    CONSOLE = "console"
    JSON = "json"


@dataclass(frozen=True, slots=True, kw_only=True)
class HostPort:
    host: str
    port: int

    @classmethod
    def parse(cls, text: str, *, flag: str) -> HostPort:
        """Parse `H:P` (IPv6 as `[::1]:P`); port 0 asks the OS for a free port."""
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise SettingsError(f"{flag}: expected HOST:PORT, got {text!r}")
        host = host.removeprefix("[").removesuffix("]")
        if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
            raise SettingsError(f"{flag}: port must be a number 0..65535, got {port_text!r}")
        return cls(host=host, port=int(port_text))

    def __str__(self) -> str:
        try:
            if ipaddress.ip_address(self.host).version == 6:
                return f"[{self.host}]:{self.port}"
        except ValueError:
            pass
        return f"{self.host}:{self.port}"


def _env_float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise SettingsError(f"{name}: expected a number of seconds, got {raw!r}") from None


ROOT_LIFETIME_S = 3650 * 86400.0  # of a root Legation creates (legation/security/roots.py)


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    config_dirs: tuple[Path, ...] = ()
    mesh_config: Path | None = None  # Istio MeshConfig YAML, watched
    ca_dir: Path | None = None
    xds_address: HostPort = field(default_factory=lambda: HostPort(host="127.0.0.1", port=15010))
    admin_address: HostPort = field(default_factory=lambda: HostPort(host="127.0.0.1", port=15014))
    log_format: LogFormat = LogFormat.CONSOLE
    log_level: str = "info"
    debounce_quiet_s: float = 0.1
    debounce_max_s: float = 1.0
    domain: str = "cluster.local"
    trust_domain: str = "cluster.local"
    warn_file_objects: int = 10_000  # a manifest file with more objects gets a warning
    warn_proxy_config_bytes: int = 16 * 1024 * 1024  # a proxy's config over this: a warning
    jwks_refresh_s: float = 300.0  # how often Envoy refetches a RequestAuthentication jwksUri
    root_namespace: str = "istio-system"
    keepalive_time_s: float = 30.0
    max_connection_age_s: float | None = None
    kubeconfig: Path | None = None
    in_cluster: bool = False
    kube_context: str | None = None
    watch_namespaces: tuple[str, ...] = ()
    # security (issue 4): all of it needs `ca_dir`
    workload_cert_ttl_s: float = 24 * 3600.0
    xds_tls_address: HostPort | None = field(  # None: no TLS listener
        default_factory=lambda: HostPort(host="127.0.0.1", port=15012)
    )
    xds_tls_names: tuple[str, ...] = ()  # extra DNS/IP SANs of the xDS server certificate
    insecure_plaintext_secrets: bool = False  # serve private keys on the plaintext listener
    require_xds_credentials: bool = False  # refuse plaintext streams without a valid token
    # Kubernetes (issue 5): the control plane's own namespace, where the CA Secret lives
    namespace: str = ""  # "": none (the CA stays in --ca-dir alone)
    # root CA rotation (legation/security/rotation.py)
    root_rotate_before_s: float | None = 365 * 86400.0  # None: no automatic rotation
    root_rotation_grace_s: float = 120.0  # longest wait for the proxies' ACKs of the bundle
    ca_secret_poll_s: float = 15.0  # replicas re-read the CA Secret this often
    replica_id: str = ""  # Lease holder identity; "": hostname and a random suffix

    @property
    def kubernetes(self) -> bool:
        return self.in_cluster or self.kubeconfig is not None

    @property
    def ca_secret(self) -> bool:
        """The CA lives in the Secret legation-ca (or Istio's cacerts) of `namespace`,
        copied into `ca_dir` at start-up (legation/kube/secretstore.py)."""
        return self.kubernetes and self.ca_dir is not None and bool(self.namespace)

    @property
    def security(self) -> bool:
        """A CA runs: workload certificates, mTLS, the TLS xDS listener."""
        return self.ca_dir is not None

    def __post_init__(self) -> None:
        if self.debounce_quiet_s < 0 or self.debounce_max_s < self.debounce_quiet_s:
            raise SettingsError(
                "debounce: expected 0 <= quiet <= max, got "
                f"quiet={self.debounce_quiet_s}s max={self.debounce_max_s}s"
            )
        if self.jwks_refresh_s < 1:
            raise SettingsError(f"--jwks-refresh: expected at least 1s, got {self.jwks_refresh_s}s")
        if self.ca_dir is None and (
            self.insecure_plaintext_secrets or self.require_xds_credentials or self.xds_tls_names
        ):
            raise SettingsError(
                "--insecure-plaintext-secrets, --require-xds-credentials and --xds-tls-san "
                "need --ca-dir DIR (there are no certificates or credentials without a CA)"
            )
        if self.root_rotate_before_s is not None and not (
            0 < self.root_rotate_before_s < ROOT_LIFETIME_S
        ):
            raise SettingsError(
                "--root-rotate-before: expected more than 0 and less than the 3650 days a "
                f"new root lives (else it would rotate again at once), or 'off'; got "
                f"{self.root_rotate_before_s}s"
            )
        if self.root_rotation_grace_s < 0 or self.ca_secret_poll_s <= 0:
            raise SettingsError(
                "--root-rotation-grace must not be negative and the CA Secret poll period "
                f"must be positive, got {self.root_rotation_grace_s}s and "
                f"{self.ca_secret_poll_s}s"
            )
        if self.workload_cert_ttl_s < 2:
            raise SettingsError(
                f"--workload-cert-ttl: expected at least 2s, got {self.workload_cert_ttl_s}s"
            )
        if self.mesh_config is not None and not self.mesh_config.parent.is_dir():
            raise SettingsError(f"--mesh-config {self.mesh_config}: its directory does not "
                                "exist")
        for d in self.config_dirs:
            if not d.is_dir():
                raise SettingsError(f"--config-dir {d}: not a readable directory")
            if not os.access(d, os.R_OK | os.X_OK):
                raise SettingsError(f"--config-dir {d}: permission denied")


def debounce_from_env(env: Mapping[str, str]) -> tuple[float | None, float | None]:
    """LEGATION_DEBOUNCE_QUIET / LEGATION_DEBOUNCE_MAX (seconds), when set."""
    quiet = _env_float(env, "LEGATION_DEBOUNCE_QUIET", -1.0)
    most = _env_float(env, "LEGATION_DEBOUNCE_MAX", -1.0)
    return (quiet if quiet >= 0 else None, most if most >= 0 else None)


def environ() -> Mapping[str, str]:
    """The process environment (read here and only here)."""
    return os.environ


SERVICE_ACCOUNT_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def pod_namespace(env: Mapping[str, str], *, in_cluster: bool,
                  namespace_file: Path = SERVICE_ACCOUNT_NAMESPACE_FILE) -> str:
    """The namespace this pod runs in: $POD_NAMESPACE (downward API), else, in a
    cluster, the service account's namespace file; "" when neither says."""
    if env.get("POD_NAMESPACE"):
        return env["POD_NAMESPACE"]
    if in_cluster:
        try:
            return namespace_file.read_text().strip()
        except OSError:
            return ""
    return ""


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, flag: str) -> float:
    """`100ms`, `1.5s`, `30m`, `2h`, or a bare number of seconds."""
    raw = text.strip()
    for unit in ("ms", "s", "m", "h"):
        if raw.endswith(unit):
            number, scale = raw[: -len(unit)], _UNITS[unit]
            break
    else:
        number, scale = raw, 1.0
    try:
        value = float(number) * scale
    except ValueError:
        raise SettingsError(
            f"{flag}: expected a duration like 100ms, 1s or 30m, got {text!r}"
        ) from None
    if value < 0:
        raise SettingsError(f"{flag}: must not be negative, got {text!r}")
    return value
