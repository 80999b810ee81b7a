"""Files under `--ca-dir`: atomic replacement and exclusive creation.

Two processes may start against an empty `--ca-dir` at the same moment;
they must end up sharing one root and one token key. A file is therefore
published by writing a private temporary file in the same directory and
hard-linking it to its final name: `link(2)` fails with EEXIST when the name
is taken (the same guarantee as `O_EXCL`) and, unlike `O_EXCL` on the final
name, nobody can ever read a half-written file. Replacement (state that we
own and rewrite) uses `rename(2)`, which is atomic too.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path

import structlog

from legation.security.errors import CAError

_log = structlog.get_logger(__name__)

KEY_MODE = 0o600
CERT_MODE = 0o644


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as e:
        raise CAError(f"{path}: cannot create the CA directory: {e.strerror or e}") from None
    if not path.is_dir():
        raise CAError(f"{path}: not a directory")


def _temporary(path: Path, data: bytes, mode: int) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def create_exclusive(path: Path, data: bytes, *, mode: int) -> bool:
    """Publish `data` at `path` unless it exists; True when this call created it."""
    try:
        tmp = _temporary(path, data, mode)
    except OSError as e:
        raise CAError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    except OSError as e:
        raise CAError(f"{path}: cannot create: {e.strerror or e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return True


def replace(path: Path, data: bytes, *, mode: int) -> None:
    """Atomically replace (or create) `path` with `data`."""
    try:
        tmp = _temporary(path, data, mode)
        try:
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise CAError(f"{path}: cannot write: {e.strerror or e}") from None


def read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CAError(f"{path}: cannot read: {e.strerror or e}") from None


def read_key_bytes(path: Path) -> bytes:
    """Read a private key file; warn when others may read it (it should be 0600)."""
    data = read_bytes(path)
    with contextlib.suppress(OSError):
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            _log.warning("sds.key-permissions", file=str(path), expected="0600")
    return data


def remove(path: Path) -> None:
    """Best-effort removal (a retired key); failure is logged, not raised."""
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        _log.warning("sds.remove-failed", file=str(path), error=str(e))
