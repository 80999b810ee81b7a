"""The CA's key material in a Kubernetes Secret, shared by every replica (`--in-cluster`).

Design: the Secret is the source of truth, the CA directory a copy of it.
`CASecretStore.materialize(ca_dir)` settles, through the API server, which key
material the cluster uses, and writes exactly those files into `ca_dir` (an
in-memory emptyDir in the Deployment); `CertificateAuthority.load_or_create`
and `TokenAuthority.load_or_create` then load them as from any `--ca-dir`.
So the CA keeps one loading and validation path (plug-in checks, key/cert
match, expiry) whatever the storage, and every replica loads identical bytes.

Which material, in this order:
1. Istio's `cacerts` Secret of the control plane's namespace, when present
   (keys `ca-cert.pem`, `ca-key.pem`, `root-cert.pem`, `cert-chain.pem`): the
   operator's intermediate, Istio's plug-in layout (`plugin.py`).
2. Otherwise the Secret `legation-ca`: `root-cert.pem`, `root-key.pem` (and,
   after a rotation, `roots.json` and the `root-<fp>-*.pem` files).
In both cases `legation-ca` also carries `xds-token-key.pem`, so that a
token minted by one replica verifies on every other.

Created once even when several replicas start together: a replica that finds
no `legation-ca` makes the material in a private temporary directory and
creates the Secret; the API server lets exactly one create succeed, and every
loser (409 AlreadyExists) reads and uses the winner's Secret, discarding its
own. `publish(ca_dir, resource_version=...)` writes the directory back after
a change (root rotation, by the lease holder only) with the resourceVersion it
read as precondition: a concurrent writer gets 409 (`SecretConflict`). The
other replicas poll `fetch()` and, when a resourceVersion moved, re-materialize
the directory with `write_ca_dir` and reload the CA (legation/kube/casecret.py).

Uses the official client (blocking; call it before serving or in a thread).
Imports nothing of `legation.xds` or `legation.sources`.
"""

from __future__ import annotations

import base64
import json
import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import urllib3
from kubernetes import client as k8s

from legation.security import files
from legation.security.certs import KeyType, generate_key, key_to_pem
from legation.security.clock import Clock, utc_now
from legation.security.errors import CAError
from legation.security.plugin import PLUGIN_FILES
from legation.security.roots import ROOT_CERT, ROOT_KEY, STATE_FILE, RootStore
from legation.security.tokens import TOKEN_KEY_FILE

_log = structlog.get_logger(__name__)

CA_SECRET = "legation-ca"
ISTIO_CA_SECRET = "cacerts"
_FILE_NAME = re.compile(r"[A-Za-z0-9][-._A-Za-z0-9]*")  # a Secret key that is a plain file name
_CA_FILE = re.compile(r"(root-.*\.pem|roots\.json|xds-token-key\.pem|ca-cert\.pem|ca-key\.pem|"
                      r"cert-chain\.pem)")
_TRANSIENT = (urllib3.exceptions.HTTPError, OSError)


class SecretConflict(CAError):
    """The Secret changed since it was read (409 on update): re-read it and retry."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Materialized:
    """What `materialize` wrote into the CA directory."""

    source: str  # "cacerts" (Istio plug-in CA) or "legation-ca"
    created: bool  # this replica created legation-ca
    files: tuple[str, ...]
    resource_version: str  # of legation-ca, for a later publish()
    istio_resource_version: str = ""  # of cacerts, "" when there is none


@dataclass(frozen=True, slots=True, kw_only=True)
class Fetched:
    """The CA material the Secrets hold now (`fetch`), to compare and re-materialize."""

    source: str  # "cacerts" (Istio plug-in CA) or "legation-ca"
    content: Mapping[str, bytes]  # file name -> bytes, as `materialize` would write them
    resource_version: str  # of legation-ca
    istio_resource_version: str  # of cacerts, "" when there is none


class CASecretStore:
    """The CA Secrets of `namespace` (see the module doc)."""

    def __init__(
        self,
        api: Any,  # kubernetes.client.ApiClient
        *,
        namespace: str,
        name: str = CA_SECRET,
        istio_name: str = ISTIO_CA_SECRET,
        clock: Clock = utc_now,
        attempts: int = 5,
        backoff_s: float = 0.5,
        request_timeout_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._api = k8s.CoreV1Api(api)
        self.namespace, self.name, self.istio_name = namespace, name, istio_name
        self._clock = clock
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._timeout = request_timeout_s
        self._sleep = sleep

    def materialize(self, ca_dir: Path) -> Materialized:
        """Settle the cluster's CA material (creating legation-ca if needed) and write it
        into `ca_dir`, replacing any CA files there that the Secrets do not hold."""
        istio = self._retrying("read", lambda: self._get(self.istio_name), name=self.istio_name)
        plugin = _plugin_files(istio, self.namespace, self.istio_name) if istio else None
        ours = self._retrying("read", lambda: self._get(self.name))
        created = False
        if ours is None or (plugin is None and not _has_root(ours)) or (
                TOKEN_KEY_FILE not in _data(ours)):
            ours, created = self._create_or_adopt(ours, with_root=plugin is None)
        content = dict(_data(ours))
        if plugin is not None:  # Istio's intermediate signs; ours only shares the token key
            content = {TOKEN_KEY_FILE: content[TOKEN_KEY_FILE], **plugin}
        write_ca_dir(ca_dir, content)
        source = self.istio_name if plugin is not None else self.name
        _log.info("sds.ca-secret-materialized", secret=f"{self.namespace}/{source}",
                  created=created, files=len(content), dir=str(ca_dir))
        return Materialized(source=source, created=created, files=tuple(sorted(content)),
                            resource_version=_rv(ours),
                            istio_resource_version=_rv(istio) if istio else "")

    def fetch(self) -> Fetched:
        """What `materialize` would write now, read without creating or writing anything
        (the replicas that did not change the CA poll this to pick a rotation up).
        `CAError` when the API server cannot be reached or legation-ca is gone."""
        istio = self._retrying("read", lambda: self._get(self.istio_name), name=self.istio_name)
        plugin = _plugin_files(istio, self.namespace, self.istio_name) if istio else None
        ours = self._retrying("read", lambda: self._get(self.name))
        if ours is None or TOKEN_KEY_FILE not in _data(ours) or (
                plugin is None and not _has_root(ours)):
            raise CAError(f"Secret {self.namespace}/{self.name}: missing or incomplete; "
                          "keeping the CA loaded at start-up")
        content = dict(_data(ours))
        if plugin is not None:
            content = {TOKEN_KEY_FILE: content[TOKEN_KEY_FILE], **plugin}
        return Fetched(source=self.istio_name if plugin is not None else self.name,
                       content=content,
                       resource_version=_rv(ours),
                       istio_resource_version=_rv(istio) if istio else "")

    def publish(self, ca_dir: Path, *, resource_version: str) -> str:
        """Write the CA files of `ca_dir` into legation-ca if it is still at
        `resource_version`; returns the new resourceVersion. `SecretConflict` otherwise."""
        content = {p.name: files.read_bytes(p) for p in sorted(ca_dir.iterdir())
                   if p.is_file() and _CA_FILE.fullmatch(p.name)}
        body = self._body(content, resource_version=resource_version)
        try:
            resp = self._retrying("update", lambda: self._api.replace_namespaced_secret(
                self.name, self.namespace, body, _preload_content=False,
                _request_timeout=self._timeout))
        except k8s.ApiException:  # 409: _retrying passes only that through
            raise SecretConflict(f"Secret {self.namespace}/{self.name} changed since "
                                 f"resourceVersion {resource_version}") from None
        return _rv(json.loads(resp.data))

    # -- internals -----------------------------------------------------------------------

    def _create_or_adopt(self, current: Mapping[str, Any] | None,
                         *, with_root: bool) -> tuple[Mapping[str, Any], bool]:
        try:
            if current is not None:  # incomplete (e.g. made by hand): complete it, keep the rest
                fresh = _fresh_material(self._clock,
                                        with_root=with_root and not _has_root(current))
                body = self._body({**fresh, **_data(current)}, resource_version=_rv(current))
                return self._call("update", lambda: self._api.replace_namespaced_secret(
                    self.name, self.namespace, body, _preload_content=False,
                    _request_timeout=self._timeout)), True
            body = self._body(_fresh_material(self._clock, with_root=with_root))
            return self._call("create", lambda: self._api.create_namespaced_secret(
                self.namespace, body, _preload_content=False,
                _request_timeout=self._timeout)), True
        except k8s.ApiException:  # 409: another replica won the race; use what it wrote
            _log.info("sds.ca-secret-race-lost", secret=f"{self.namespace}/{self.name}")
        winner = self._retrying("read", lambda: self._get(self.name))
        if winner is None or TOKEN_KEY_FILE not in _data(winner) or (
                with_root and not _has_root(winner)):
            raise CAError(f"Secret {self.namespace}/{self.name}: changed while being created "
                          "and is still incomplete; restart to try again")
        return winner, False

    def _get(self, name: str) -> Mapping[str, Any] | None:
        try:
            resp = self._api.read_namespaced_secret(name, self.namespace,
                                                    _preload_content=False,
                                                    _request_timeout=self._timeout)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        body = json.loads(resp.data)
        return body if isinstance(body, dict) else {}

    def _call(self, verb: str, fn: Callable[[], Any]) -> Mapping[str, Any]:
        body = json.loads(self._retrying(verb, fn).data)
        return body if isinstance(body, dict) else {}

    def _retrying(self, verb: str, fn: Callable[[], Any], *, name: str = "") -> Any:
        """`fn()`, retried with exponential backoff while the API server is unreachable or
        answers 429/5xx. A 409 is raised as is (the caller's race); anything else, or the
        last failed attempt, is a CAError."""
        name = name or self.name
        for attempt in range(self._attempts):
            last = attempt + 1 == self._attempts
            try:
                return fn()
            except k8s.ApiException as exc:
                if exc.status == 409:
                    raise
                if exc.status not in (429, 500, 502, 503, 504) or last:
                    raise _api_error(exc, self.namespace, name, verb) from None
            except _TRANSIENT as exc:
                if last:
                    raise CAError(f"Secret {self.namespace}/{name}: cannot {verb}: the API "
                                  f"server cannot be reached ({type(exc).__name__})") from None
            self._sleep(self._backoff_s * 2**attempt)
        raise AssertionError("unreachable")

    def _body(self, content: Mapping[str, bytes], *, resource_version: str = "") -> dict[str, Any]:
        meta: dict[str, Any] = {
            "name": self.name, "namespace": self.namespace,
            "labels": {"app.kubernetes.io/name": "legation",
                       "app.kubernetes.io/component": "certificate-authority"},
        }
        if resource_version:
            meta["resourceVersion"] = resource_version
        data = {k: base64.b64encode(v).decode("ascii") for k, v in sorted(content.items())}
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": meta,
                "data": data}


def _fresh_material(clock: Clock, *, with_root: bool) -> dict[str, bytes]:
    """A new token key and, `with_root`, a new self-signed root, made as the CA makes them
    (RootStore, in a private temporary directory)."""
    out = {TOKEN_KEY_FILE: key_to_pem(generate_key(KeyType.ECDSA_P256)).encode()}
    if with_root:
        with tempfile.TemporaryDirectory(prefix="legation-ca-") as tmp:
            RootStore.load_or_create(Path(tmp), now=clock())
            for name in (ROOT_CERT, ROOT_KEY):
                out[name] = files.read_bytes(Path(tmp) / name)
    return out


def _data(secret: Mapping[str, Any]) -> dict[str, bytes]:
    raw = secret.get("data") or {}
    out: dict[str, bytes] = {}
    for key, value in raw.items() if isinstance(raw, dict) else ():
        if not isinstance(key, str) or not _FILE_NAME.fullmatch(key):
            continue
        try:
            out[key] = base64.b64decode(str(value), validate=True)
        except ValueError:
            continue
    return out


def _has_root(secret: Mapping[str, Any]) -> bool:
    data = _data(secret)
    return STATE_FILE in data or (ROOT_CERT in data and ROOT_KEY in data)


def _plugin_files(secret: Mapping[str, Any], namespace: str, name: str) -> dict[str, bytes]:
    data = _data(secret)
    missing = [k for k in PLUGIN_FILES if k not in data]
    if missing:
        raise CAError(f"Secret {namespace}/{name} (Istio's plug-in CA) lacks "
                      f"{', '.join(missing)}; it needs {', '.join(PLUGIN_FILES)}")
    return {k: data[k] for k in PLUGIN_FILES}


def write_ca_dir(ca_dir: Path, content: Mapping[str, bytes]) -> None:
    """Make the CA files of `ca_dir` exactly `content` (others are left alone)."""
    files.ensure_dir(ca_dir)
    for stale in sorted(ca_dir.iterdir()):
        if stale.is_file() and _CA_FILE.fullmatch(stale.name) and stale.name not in content:
            files.remove(stale)
    for name, data in sorted(content.items()):
        mode = files.KEY_MODE if "key" in name or name == STATE_FILE else files.CERT_MODE
        files.replace(ca_dir / name, data, mode=mode)


def _rv(secret: Mapping[str, Any]) -> str:
    meta = secret.get("metadata") or {}
    return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


def _api_error(exc: Any, namespace: str, name: str, verb: str) -> CAError:
    hint = " (check the Role of the control plane's service account)" if exc.status == 403 else ""
    return CAError(f"Secret {namespace}/{name}: cannot {verb}: HTTP {exc.status} "
                   f"{exc.reason}{hint}")
