"""A secured mesh under test: `legation serve --ca-dir` as a real process, real Envoys.

Like `harness.MeshLab`, but every workload has a service account and runs a
sidecar labelled `security.istio.io/tlsMode: istio` (so clients use
automatic mTLS), and sidecars connect to the authenticated TLS xDS listener
with a credential minted from the same `--ca-dir` (what `legation bootstrap
--xds-tls` embeds). Extra flags of `legation serve` (e.g. a short
`--workload-cert-ttl`) are passed through. Files are written atomically into
the watched directory, so policies can change while the mesh runs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from legation.bootstrap import build_bootstrap
from legation.demo.app import DemoApp
from legation.demo.controlplane import ControlPlane, metric_sum
from legation.demo.envoy import Envoy, WaitFor
from legation.demo.http import HttpError, HttpResponse, request
from legation.security import CertificateAuthority, TokenAuthority

from .harness import AppFleet, EnvoyFleet, Loopback, eventually, service_yaml, workload_entry_yaml

NAMESPACE = "shop"
TRUST_DOMAIN = "cluster.local"
XDS_PORT, XDS_TLS_PORT, ADMIN_PORT = 15010, 15012, 15014
OUTBOUND_PORT = 15001
SIDECAR_LABEL = {"security.istio.io/tlsMode": "istio"}


@dataclass(slots=True, kw_only=True)
class SecureWorkload:
    name: str
    address: str
    service_account: str
    app: DemoApp | None = None
    envoy: Envoy | None = None

    @property
    def node_id(self) -> str:
        return f"{self.name}.{NAMESPACE}"

    @property
    def spiffe_id(self) -> str:
        return f"spiffe://{TRUST_DOMAIN}/ns/{NAMESPACE}/sa/{self.service_account}"

    @property
    def sidecar(self) -> Envoy:
        assert self.envoy is not None, f"{self.name} has no sidecar"
        return self.envoy


class SecureLab:
    def __init__(
        self,
        *,
        root: Path,
        loopback: Loopback,
        envoys: EnvoyFleet,
        apps: AppFleet,
        serve_args: tuple[str, ...] = (),
    ) -> None:
        self.config_dir = root / "mesh"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.ca_dir = root / "ca"
        self.loopback, self.envoys, self.apps = loopback, envoys, apps
        host = loopback.next()
        self.tls_xds = (host, XDS_TLS_PORT)
        self.control_plane = ControlPlane(
            config_dirs=[self.config_dir],
            workdir=root / "control-plane",
            xds=(host, XDS_PORT),
            admin=(host, ADMIN_PORT),
            extra_args=(
                "--ca-dir", str(self.ca_dir),
                "--xds-tls-address", f"{host}:{XDS_TLS_PORT}",
                *serve_args,
            ),
        )  # fmt: skip
        self.workloads: dict[str, SecureWorkload] = {}
        self._tokens: TokenAuthority | None = None
        self._ca_pem = ""
        self.write(
            "namespace.yaml", f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"
        )

    # -- manifests ---------------------------------------------------------

    def write(self, filename: str, text: str) -> Path:
        path = self.config_dir / filename
        tmp = self.config_dir / f".{filename}.tmp"
        tmp.write_text(text)
        tmp.replace(path)
        return path

    def service(self, name: str, *, port: int = 9080) -> None:
        self.write(f"service-{name}.yaml", service_yaml(name, NAMESPACE, port=port))

    async def backend(self, name: str, *, app: str, service_account: str) -> SecureWorkload:
        demo = await self.apps.start(name)
        return self._workload(name, app, service_account, app_ports={9080: demo.port}, demo=demo)

    def client(self, name: str, *, service_account: str) -> SecureWorkload:
        return self._workload(name, name, service_account)

    def workload(self, name: str, *, app: str, service_account: str,
                 app_ports: dict[int, int] | None = None) -> SecureWorkload:
        """A workload whose app the test runs itself (`app_ports`: target port -> where)."""
        return self._workload(name, app, service_account, app_ports=app_ports)

    def _workload(
        self,
        name: str,
        app: str,
        service_account: str,
        *,
        app_ports: dict[int, int] | None = None,
        demo: DemoApp | None = None,
    ) -> SecureWorkload:
        w = SecureWorkload(
            name=name, address=self.loopback.next(), service_account=service_account, app=demo
        )
        labels = {"app": app, **SIDECAR_LABEL}
        self.write(
            f"workload-{name}.yaml",
            workload_entry_yaml(
                name,
                NAMESPACE,
                address=w.address,
                labels=labels,
                app_ports=app_ports,
                service_account=service_account,
            ),
        )
        self.workloads[name] = w
        return w

    def peer_authentication(self, mode: str) -> None:
        self.write(
            "peer-authentication.yaml",
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            f"metadata: {{name: default, namespace: {NAMESPACE}}}\n"
            f"spec:\n  mtls: {{mode: {mode}}}\n",
        )

    # -- processes ---------------------------------------------------------

    async def start(self) -> None:
        """The control plane, then (its CA and token key exist now) the credentials."""
        await self.control_plane.start()
        self._tokens = TokenAuthority.load_or_create(self.ca_dir, TRUST_DOMAIN)
        ca = CertificateAuthority.load_or_create(self.ca_dir, trust_domain=TRUST_DOMAIN)
        self._ca_pem = ca.trust_bundle().pem

    def token(self, *, workload: str, service_account: str) -> str:
        assert self._tokens is not None, "start() first"
        return self._tokens.mint(NAMESPACE, service_account, workload)

    def bootstrap(
        self, w: SecureWorkload, *, tls: bool = True, token: str | None = None, delta: bool = False
    ) -> dict[str, Any]:
        """`w`'s sidecar bootstrap: over TLS with its own credential unless told otherwise."""
        if tls and token is None:
            token = self.token(workload=w.name, service_account=w.service_account)
        host, port = self.tls_xds if tls else self.control_plane.xds
        return build_bootstrap(
            node_id=w.node_id,
            node_cluster=NAMESPACE,
            xds_host=host,
            xds_port=port,
            admin_host=w.address,
            admin_port=0,
            delta=delta,
            xds_tls_ca_pem=self._ca_pem if tls else None,
            xds_token=token,
        )

    async def start_sidecar(
        self,
        w: SecureWorkload,
        *,
        wait: WaitFor = "ready",
        bootstrap: dict[str, Any] | None = None,
        delta: bool = False,
    ) -> Envoy:
        cp = self.control_plane

        async def known() -> bool:
            return await cp.versions(w.node_id) is not None

        await eventually(known, what=f"control plane knowing {w.node_id}")
        w.envoy = await self.envoys.start(
            w.name, bootstrap or self.bootstrap(w, delta=delta), wait=wait
        )
        return w.envoy

    async def start_all(self) -> None:
        await self.start()
        await asyncio.gather(*(self.start_sidecar(w) for w in self.workloads.values()))

    # -- traffic and observations ------------------------------------------

    async def call(
        self,
        client: SecureWorkload,
        service: str,
        *,
        method: str = "GET",
        path: str = "/",
        timeout: float = 5.0,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """A request from `client`'s app through its sidecar's outbound proxy."""
        return await request(
            client.address, OUTBOUND_PORT, method, path,
            headers={"host": f"{service}.{NAMESPACE}:9080", **(headers or {})}, timeout=timeout,
        )  # fmt: skip

    async def plaintext_refused(self, target: SecureWorkload) -> bool:
        """True when a plaintext HTTP request to `target`'s inbound listener gets no answer."""
        try:
            await request(target.address, 9080, "GET", "/", timeout=3.0)
        except (OSError, HttpError, TimeoutError, asyncio.IncompleteReadError):
            return True
        return False

    async def cert_serials(self, w: SecureWorkload) -> list[tuple[str, list[str]]]:
        """(serial, URI SANs) of each distinct workload certificate `w`'s Envoy holds (every
        TLS context that uses one lists it in /certs; CAs are left out)."""
        data = await w.sidecar.certs()
        out: dict[str, list[str]] = {}
        for entry in data.get("certificates", []):
            for c in entry.get("cert_chain", []):
                uris = [s["uri"] for s in c.get("subject_alt_names", []) if "uri" in s]
                out[c["serial_number"]] = uris
        return sorted(out.items())

    async def metric(self, name: str) -> float:
        return metric_sum(await self.control_plane.metrics(), name)
