"""A pod's network for transparent-mode end-to-end tests: a Linux network namespace
with Istio's iptables redirection (tests/e2e/test_transparent.py).

`PodNetwork.create()` makes a namespace ``legation-tp-<pid>`` joined to the
test's own namespace by a veth pair on a /30 of 198.18.0.0/15 (RFC 2544's
benchmarking range, so no real network is shadowed): the host side is the
"node" (control plane, upstream apps), the namespace side the pod's IP with
a default route through the node. The pod's nat table gets Istio's rules
(istio/istio tools/istio-iptables, REDIRECT mode): inbound TCP to 15006,
outbound TCP to 15001, except traffic of the sidecar's group (gid 1337),
connections from 127.0.0.6, traffic to localhost, and the excluded inbound
ports (Istio excludes its own 15020/15021/15090; here the sidecar's admin
port). Everything created is removed by `delete()`, which is always safe to
call; deleting the namespace also removes the veth pair.

Needs root (CAP_NET_ADMIN), `ip` (iproute2), `iptables-restore` with the nat
table and the owner match, and `setpriv` (util-linux). `unavailable()` says
precisely what is missing, for a skip.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

PROXY_GID = 1337  # Istio's proxy uid/gid: its traffic is never redirected
OUTBOUND_PORT = 15001
INBOUND_PORT = 15006
ADMIN_PORT = 15000  # the sidecar's admin, on the pod IP, excluded from redirection
_TOOLS = ("ip", "iptables-restore", "setpriv")
_TIMEOUT = 10.0  # seconds, for each setup command


class NetworkSetupError(RuntimeError):
    """A command that builds the pod network failed: the environment cannot do it."""


def unavailable() -> str | None:
    """Why a pod network cannot be built here, or None when it can (as far as is known
    without trying: `create()` may still fail, e.g. without the nat table)."""
    if sys.platform != "linux":
        return "transparent interception needs Linux network namespaces and iptables"
    if os.geteuid() != 0:
        return "creating a network namespace and its iptables rules needs root (CAP_NET_ADMIN)"
    missing = [tool for tool in _TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (iproute2, iptables, util-linux)"
    return None


def istio_rules(*, exclude_inbound: Sequence[int] = (ADMIN_PORT,)) -> str:
    """Istio's nat rules (REDIRECT mode), with the owner match on the proxy's gid only."""
    excluded = "".join(f"-A ISTIO_INBOUND -p tcp --dport {p} -j RETURN\n" for p in exclude_inbound)
    gid = PROXY_GID
    return (
        "*nat\n"
        ":ISTIO_INBOUND - [0:0]\n:ISTIO_IN_REDIRECT - [0:0]\n"
        ":ISTIO_OUTPUT - [0:0]\n:ISTIO_REDIRECT - [0:0]\n"
        "-A PREROUTING -p tcp -j ISTIO_INBOUND\n"
        "-A OUTPUT -p tcp -j ISTIO_OUTPUT\n"
        f"{excluded}"
        "-A ISTIO_INBOUND -p tcp -j ISTIO_IN_REDIRECT\n"
        f"-A ISTIO_IN_REDIRECT -p tcp -j REDIRECT --to-ports {INBOUND_PORT}\n"
        f"-A ISTIO_REDIRECT -p tcp -j REDIRECT --to-ports {OUTBOUND_PORT}\n"
        # the sidecar's connections from 127.0.0.6 to the pod's own address: to the app
        "-A ISTIO_OUTPUT -o lo -s 127.0.0.6/32 -j RETURN\n"
        # the sidecar calling its own pod's service: back in through the inbound side
        f"-A ISTIO_OUTPUT -o lo ! -d 127.0.0.1/32 -m owner --gid-owner {gid} "
        "-j ISTIO_IN_REDIRECT\n"
        f"-A ISTIO_OUTPUT -o lo -m owner ! --gid-owner {gid} -j RETURN\n"
        f"-A ISTIO_OUTPUT -m owner --gid-owner {gid} -j RETURN\n"
        "-A ISTIO_OUTPUT -d 127.0.0.1/32 -j RETURN\n"
        "-A ISTIO_OUTPUT -j ISTIO_REDIRECT\n"
        "COMMIT\n"
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PodNetwork:
    name: str  # the network namespace
    host_interface: str  # the veth end in the test's namespace
    host_ip: str  # the node, as the pod sees it
    pod_ip: str

    @classmethod
    def create(cls, *, pid: int | None = None) -> PodNetwork:
        """Build it, or raise NetworkSetupError (after removing whatever was built)."""
        pid = os.getpid() if pid is None else pid
        subnet = _free_subnet(pid)
        net = cls(name=f"legation-tp-{pid}", host_interface=f"lgtp{pid % 10**6}",
                  host_ip=str(subnet[1]), pod_ip=str(subnet[2]))
        net.delete()  # a leftover of a killed run with the same pid
        try:
            net._build()
        except NetworkSetupError:
            net.delete()
            raise
        return net

    def _build(self) -> None:
        inside = ("ip", "netns", "exec", self.name)
        _run("ip", "netns", "add", self.name)
        _run("ip", "link", "add", self.host_interface, "type", "veth",
             "peer", "name", "eth0", "netns", self.name)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_interface)
        _run("ip", "link", "set", self.host_interface, "up")
        _run(*inside, "ip", "link", "set", "lo", "up")
        _run(*inside, "ip", "addr", "add", f"{self.pod_ip}/30", "dev", "eth0")
        _run(*inside, "ip", "link", "set", "eth0", "up")
        _run(*inside, "ip", "route", "add", "default", "via", self.host_ip)
        _run(*inside, "iptables-restore", stdin=istio_rules())

    def inside(self, *argv: str) -> list[str]:
        """`argv` run in the pod's namespace (as root, group 0: redirected like an app)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def as_proxy(self, *argv: str) -> list[str]:
        """`argv` run in the pod's namespace with the sidecar's group (not redirected)."""
        return self.inside("setpriv", f"--regid={PROXY_GID}", "--clear-groups", "--", *argv)

    def nat_rules(self) -> str:
        return _run(*self.inside("iptables", "-t", "nat", "-S"))

    def delete(self) -> None:
        """Remove the namespace (and with it the veth pair); no error if it is gone."""
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True,
                       timeout=_TIMEOUT, check=False)
        subprocess.run(["ip", "link", "delete", self.host_interface], capture_output=True,
                       timeout=_TIMEOUT, check=False)


def _free_subnet(pid: int) -> ipaddress.IPv4Network:
    """A /30 of 198.18.0.0/15 that no interface of this host uses yet."""
    used = _run("ip", "-4", "-o", "addr", "show")
    for k in range(512):
        third = (pid + k) % 512
        net = ipaddress.IPv4Network(f"198.{18 + third // 256}.{third % 256}.0/30")
        if str(net[1]) + "/" not in used and str(net[2]) + "/" not in used:
            return net
    raise NetworkSetupError("no free /30 in 198.18.0.0/15")


def _run(*argv: str, stdin: str | None = None) -> str:
    try:
        proc = subprocess.run(list(argv), input=stdin, capture_output=True, text=True,
                              timeout=_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NetworkSetupError(f"{' '.join(argv)}: {e}") from e
    if proc.returncode != 0:
        raise NetworkSetupError(
            f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout
