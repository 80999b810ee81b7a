"""`networking.istio.io` Gateway -> `Gateway`: its selector and servers.

Checked as Istio's validation does (istio/api gateway.proto, pilot's
ValidateGateway): a non-empty `servers` list; each server a `port` with a
number and a protocol, and at least one host ``[namespace/]dnsName`` (the
namespace a name, ``*`` or ``.``; the name an FQDN, ``*`` or ``*.suffix``).
Two servers on one port must agree on the protocol.

Served now: plaintext HTTP, HTTP2 and GRPC servers, and `tls.httpsRedirect`
on them; HTTPS servers with `tls.mode` SIMPLE or MUTUAL and a
`credentialName` (a Secret in the gateway workload's namespace, served over
SDS), or ISTIO_MUTUAL (the mesh's certificates: east-west and egress
gateways); TLS servers likewise (terminated TLS carrying the bound
VirtualServices' `tcp` routes); HTTPS or TLS with PASSTHROUGH (routed by SNI
to the VirtualServices' `tls` routes, not terminated); TCP (and MONGO)
servers (their `tcp` routes). Another protocol or mode (GRPC-WEB,
AUTO_PASSTHROUGH, ...) is reported and not built, as are the fields without
effect here (`bind`, `defaultEndpoint`, other `tls` settings): never dropped
in silence.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from legation.model import Protocol
from legation.model.gateway import Gateway, GatewayHost, GatewayServer
from legation.sources.convert import istio
from legation.sources.convert.fields import Ctx, is_dns1123_label
from legation.sources.convert.meta import Meta
from legation.sources.convert.yamlload import child_path

SPEC_FIELDS = ("selector", "servers")
SERVER_FIELDS = ("port", "bind", "hosts", "tls", "name", "defaultEndpoint")
PORT_FIELDS = ("number", "protocol", "name", "targetPort")
TLS_FIELDS = ("httpsRedirect", "mode", "serverCertificate", "privateKey", "caCertificates",
              "credentialName", "credentialNames", "subjectAltNames", "verifyCertificateSpki",
              "verifyCertificateHash", "minProtocolVersion", "maxProtocolVersion",
              "cipherSuites", "caCrl", "tlsCertificates")
# Istio's server protocols (gateway.proto Port.protocol), case-insensitive.
PROTOCOLS = ("HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "TCP", "TLS")
SERVED = {"HTTP": Protocol.HTTP, "HTTP2": Protocol.HTTP2, "GRPC": Protocol.GRPC}
HTTPS_MODES = ("SIMPLE", "MUTUAL", "ISTIO_MUTUAL", "PASSTHROUGH")
_HOST_EXPECTED = ("'[namespace/]host': the namespace a name, '*' or '.'; the host an FQDN, "
                  "'*' or '*.suffix', e.g. '*' or 'shop/bookinfo.example.com'")


def convert_gateway(ctx: Ctx, meta: Meta, data: Mapping[str, Any]) -> Gateway | None:
    spec = ctx.mapping(data, "spec", "", problem="spec")
    istio.check_fields(ctx, spec, "spec", SPEC_FIELDS, what="a Gateway spec")
    selector = istio.labels(ctx, spec, "selector", "spec")
    if not selector:
        ctx.warn("spec.selector", "selector-empty",
                 "the Gateway selects no workload: expected labels of the gateway workloads, "
                 "e.g. {istio: ingressgateway}. Nothing listens for its servers.")
    raw = list(ctx.items(spec, "servers", "spec", problem="servers"))
    if not raw:
        ctx.missing("spec.servers", "servers", "at least one server")
    servers: list[GatewayServer] = []
    protocols: dict[int, tuple[str, str]] = {}  # port -> (protocol, path of first server)
    for i, (path, item) in enumerate(raw):
        server = _server(ctx, i, path, item, protocols)
        if server is not None:
            servers.append(server)
    return Gateway(ref=ctx.ref, name=meta.name, namespace=meta.namespace, selector=selector,
                   servers=tuple(servers), lines=tuple(sorted(ctx.lines.items())))


def _server(ctx: Ctx, index: int, path: str, item: Any,
            protocols: dict[int, tuple[str, str]]) -> GatewayServer | None:
    server = ctx.as_mapping(item, path, problem="server")
    if server is None:
        return None
    istio.check_fields(ctx, server, path, SERVER_FIELDS, what="a Gateway server")
    for key, why in (("bind", "listeners bind the gateway workload's own address"),
                     ("defaultEndpoint", "it applies to sidecar ingress only")):
        if key in server:
            ctx.warn(child_path(path, key), "field-not-applied", f"{key} is not applied: {why}.")
    port_path = child_path(path, "port")
    port = ctx.mapping(server, "port", path, problem="port")
    if not port:
        ctx.missing(port_path, "port", "a port with a number and a protocol")
        return None
    istio.check_fields(ctx, port, port_path, PORT_FIELDS, what="a Gateway port")
    number = ctx.port(port, "number", port_path, problem="port-number", required=True)
    written = istio.string(ctx, port, "protocol", port_path, required=True,
                           expected="one of " + ", ".join(PROTOCOLS))
    protocol = written.upper()
    if written and protocol not in PROTOCOLS:
        ctx.invalid(child_path(port_path, "protocol"), "protocol", written,
                    "one of " + ", ".join(PROTOCOLS))
        return None
    if "targetPort" in port:
        ctx.warn(child_path(port_path, "targetPort"), "field-not-applied",
                 "targetPort is not applied: the gateway listens on port.number itself.")
    hosts = _hosts(ctx, server, path)
    if number is None or not protocol or not hosts:
        return None
    first = protocols.setdefault(number, (protocol, path))
    if _family(first[0]) != _family(protocol):
        ctx.error(child_path(port_path, "protocol"), "port-conflict",
                  f"port {number} is {protocol} here but {first[0]} in {first[1]}: servers "
                  "sharing a port must share its protocol (expected the same protocol, or "
                  "another port).")
        return None
    name = str(port.get("name") or "")
    if protocol in ("HTTPS", "TLS"):
        mode, credential = _https(ctx, server, path, protocol)
        if not mode:
            return None
        return GatewayServer(index=index, port=number, port_name=name,
                             protocol=Protocol(protocol), hosts=hosts, tls_mode=mode,
                             credential=credential)
    if protocol in ("TCP", "MONGO"):  # opaque TCP: the bound VirtualServices' tcp routes
        if "tls" in server:
            ctx.warn(child_path(path, "tls"), "field-not-applied",
                     "tls is not applied to a TCP server (expected protocol TLS to terminate "
                     "or pass TLS through).")
        return GatewayServer(index=index, port=number, port_name=name, protocol=Protocol.TCP,
                             hosts=hosts)
    redirect = _tls(ctx, server, path, protocol)
    served = SERVED.get(protocol)
    if served is None:
        ctx.warn(child_path(port_path, "protocol"), "server-not-applied",
                 f"{protocol} servers are not served yet: no listener is built for port "
                 f"{number} (served: HTTP, HTTP2, GRPC, TCP, and HTTPS or TLS with tls.mode "
                 "SIMPLE, MUTUAL, ISTIO_MUTUAL or PASSTHROUGH).")
        return None
    return GatewayServer(index=index, port=number, port_name=str(port.get("name") or ""),
                         protocol=served, hosts=hosts, https_redirect=redirect)


def _family(protocol: str) -> str:
    """Servers sharing a port: plaintext HTTP ones, or TLS ones told apart by SNI (HTTPS
    and TLS, terminated or passed through), or TCP ones."""
    if protocol in SERVED:
        return "http"
    return "tls" if protocol in ("HTTPS", "TLS") else protocol


def _hosts(ctx: Ctx, server: Mapping[str, Any], path: str) -> tuple[GatewayHost, ...]:
    entries = istio.strings(ctx, server, "hosts", path)
    if not entries:
        ctx.missing(child_path(path, "hosts"), "hosts", "at least one host, e.g. '*'")
    out = []
    for i, entry in enumerate(entries):
        item = f"{path}.hosts[{i}]"
        ns, slash, name = entry.lower().rpartition("/")
        if slash and not (ns in ("*", ".") or is_dns1123_label(ns)):
            ctx.invalid(item, "host", entry, _HOST_EXPECTED)
            continue
        if not istio.host(ctx, name, item, wildcard=True):
            continue
        out.append(GatewayHost(namespace=ns if slash else "*", host=name.rstrip(".")))
    return tuple(dict.fromkeys(out))


def _https(ctx: Ctx, server: Mapping[str, Any], path: str, protocol: str) -> tuple[str, str]:
    """(tls.mode, tls.credentialName) of an HTTPS or TLS server; ("", "") when it cannot be
    served (reported). PASSTHROUGH routes by SNI without terminating (VirtualService
    `tls` routes)."""
    tls_path = child_path(path, "tls")
    tls = istio.section(ctx, server, "tls", path)
    if tls is None:
        ctx.missing(tls_path, "tls", f"TLS settings for a {protocol} server: "
                    "{mode: SIMPLE, credentialName: <Secret>} or {mode: PASSTHROUGH}")
        return "", ""
    istio.check_fields(ctx, tls, tls_path, TLS_FIELDS, what="server TLS settings")
    mode = istio.string(ctx, tls, "mode", tls_path) or "SIMPLE"
    credential = istio.string(ctx, tls, "credentialName", tls_path)
    if mode == "PASSTHROUGH":
        others = sorted(k for k in tls if k not in ("mode",))
        if others:
            ctx.warn(child_path(tls_path, others[0]), "field-not-applied",
                     f"tls.{', tls.'.join(others)} not applied: PASSTHROUGH does not "
                     "terminate TLS.")
        return mode, ""
    if mode not in HTTPS_MODES:
        ctx.warn(child_path(tls_path, "mode"), "server-not-applied",
                 f"tls.mode {mode} is not served yet: no listener is built for this server "
                 f"(served: {', '.join(HTTPS_MODES)}).")
        return "", ""
    if mode == "ISTIO_MUTUAL":  # the mesh's own certificates: nothing else is read
        if credential:
            ctx.warn(child_path(tls_path, "credentialName"), "field-not-applied",
                     "credentialName is not used with ISTIO_MUTUAL: the gateway presents its "
                     "workload certificate and requires a mesh client certificate.")
        return mode, ""
    if not credential:
        ctx.warn(tls_path, "server-not-applied",
                 "an HTTPS server is served from a Secret named by tls.credentialName; "
                 "certificate file paths (serverCertificate, privateKey) are not read, so no "
                 "listener is built for this server.")
        return "", ""
    others = sorted(k for k in tls if k not in ("mode", "credentialName", "httpsRedirect"))
    if others:
        ctx.warn(child_path(tls_path, others[0]), "field-not-applied",
                 f"tls.{', tls.'.join(others)} not applied: Envoy's TLS defaults hold.")
    return mode, credential


def _tls(ctx: Ctx, server: Mapping[str, Any], path: str, protocol: str) -> bool:
    """`tls.httpsRedirect` (an HTTP server's only TLS setting); the rest is reported."""
    tls_path = child_path(path, "tls")
    tls = istio.section(ctx, server, "tls", path)
    if tls is None:
        return False
    istio.check_fields(ctx, tls, tls_path, TLS_FIELDS, what="server TLS settings")
    redirect = istio.boolean(ctx, tls, "httpsRedirect", tls_path) or False
    others = sorted(k for k in tls if k != "httpsRedirect")
    if others:
        ctx.warn(child_path(tls_path, others[0]), "field-not-applied",
                 f"tls.{', tls.'.join(others)} not applied: TLS termination at gateways is not "
                 f"served yet ({protocol} server).")
    return redirect
