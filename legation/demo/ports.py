"""Which addresses and ports the demo needs, and whether they are free: checked before
anything starts, so a second demo (or a running `legation serve`) is one clear line."""

from __future__ import annotations

import errno
import socket
from collections.abc import Iterable

from legation.bootstrap import PROMETHEUS_PORT
from legation.demo.plan import ENVOY_ADMIN_PORT, OUTBOUND_PORT, Plan

Need = tuple[str, int, str]  # host, port, what it is for


class PortError(Exception):
    """A needed address or port is unavailable; the message is one line for the user."""


def needed_ports(plan: Plan, *, xds: tuple[str, int], admin: tuple[str, int]) -> list[Need]:
    needs: list[Need] = [
        (*xds, "the control plane's xDS port"),
        (*admin, "the control plane's admin port"),
    ]
    for s in plan.sidecars:
        needs.append((s.address, OUTBOUND_PORT, f"{s.workload}'s sidecar outbound listener"))
        needs.append((s.address, ENVOY_ADMIN_PORT, f"{s.workload}'s sidecar admin"))
        needs.append((s.address, PROMETHEUS_PORT, f"{s.workload}'s sidecar metrics (15090)"))
        needs += [(s.address, p, f"{s.workload}'s sidecar inbound listener") for p in s.inbound]
    needs += [(a.host, a.port, f"the {a.name} app") for a in plan.apps]
    return needs


def check_free(needs: Iterable[Need]) -> None:
    """Bind (without listening) each; PortError on the first that cannot be had."""
    for host, port, what in needs:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers do
            try:
                sock.bind((host, port))
            except OSError as e:
                raise PortError(_why(host, port, what, e)) from None


def _why(host: str, port: int, what: str, e: OSError) -> str:
    if e.errno == errno.EADDRNOTAVAIL:
        return (
            f"{host} (for {what}) is not an address of this machine; the demo needs "
            f"127.0.0.0/8 on the loopback interface (macOS: sudo ifconfig lo0 alias {host})"
        )
    if e.errno == errno.EADDRINUSE:
        return (
            f"{host}:{port} (for {what}) is already in use: is another `legation demo` "
            "or `legation serve` running? Stop it and try again"
        )
    return f"cannot bind {host}:{port} (for {what}): {e.strerror or e}"
