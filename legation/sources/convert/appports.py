"""The `sidecar.legation.io/app-ports` annotation: where a sidecar forwards inbound traffic.

In explicit mode (DESIGN.md §4) the sidecar binds `<address>:<targetPort>`,
so the application itself must listen elsewhere; by default on
`127.0.0.1:<targetPort>`. The annotation overrides that per target port:

    sidecar.legation.io/app-ports: "9080=18081,9090=127.0.0.5:19090,8443=[::1]:18443"

Each comma-separated entry is `<targetPort>=<port>` or `<targetPort>=<ip>:<port>`
(IPv6 in brackets). Hosts must be IP addresses: the sidecar reaches the app
through a static Envoy cluster, which takes no hostnames.
"""

from __future__ import annotations

import ipaddress

from legation.model import AppAddress

APP_PORTS_ANNOTATION = "sidecar.legation.io/app-ports"
APP_PORTS_EXPECTED = (
    "comma-separated `<targetPort>=<port>` or `<targetPort>=<ip>:<port>` entries, "
    'e.g. "9080=18081,9090=127.0.0.5:19090", with ports from 1 to 65535'
)


class AppPortsError(ValueError):
    """The annotation is malformed; the message says which entry and why."""


def parse_app_ports(text: str) -> tuple[tuple[int, AppAddress], ...]:
    """Parse the annotation value; sorted by target port. Raises AppPortsError."""
    out: dict[int, AppAddress] = {}
    for raw in text.split(","):
        entry = raw.strip()
        if not entry:
            continue
        target_text, eq, dest = entry.partition("=")
        if not eq:
            raise AppPortsError(f"entry {entry!r} has no '='")
        target = _port(target_text.strip(), entry)
        if target in out:
            raise AppPortsError(f"target port {target} appears twice")
        out[target] = _address(dest.strip(), entry)
    return tuple(sorted(out.items()))


def format_app_ports(app_ports: tuple[tuple[int, AppAddress], ...]) -> str:
    """The annotation value for `app_ports` (inverse of `parse_app_ports`)."""
    parts = []
    for target, addr in app_ports:
        host = f"[{addr.host}]" if ":" in addr.host else addr.host
        parts.append(f"{target}={host}:{addr.port}")
    return ",".join(parts)


def _port(text: str, entry: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise AppPortsError(f"{text!r} in entry {entry!r} is not a port from 1 to 65535")
    return int(text)


def _address(dest: str, entry: str) -> AppAddress:
    if ":" not in dest:
        return AppAddress(port=_port(dest, entry))
    if dest.startswith("["):
        host, close, rest = dest[1:].partition("]")
        if not close or not rest.startswith(":"):
            raise AppPortsError(f"entry {entry!r}: write an IPv6 host as [addr]:port")
        port_text = rest[1:]
    else:
        host, _, port_text = dest.rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        raise AppPortsError(f"{host!r} in entry {entry!r} is not an IP address") from None
    if ip.version == 6 and not dest.startswith("["):
        raise AppPortsError(f"entry {entry!r}: write an IPv6 host as [addr]:port")
    return AppAddress(host=str(ip), port=_port(port_text, entry))
