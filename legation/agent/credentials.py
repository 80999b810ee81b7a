"""What a running proxy's bootstrap carries that changes while Envoy runs (`legation proxy`).

Envoy sends its bootstrap's `initial_metadata` as it is and trusts the CA it was
started with, so a new credential or trust bundle means a new bootstrap (and a hot
restart, launcher.py). `ProxyCredential` gives the current ones:
- the token: read from a file (a projected service-account token, which kubelet
  rotates), or minted (`--ca-dir`) and minted again when half its lifetime is gone,
  so a proxy never holds an expired credential;
- the trust bundle of the TLS xDS connection, read again each time.
A read that fails keeps what was read last (and says so): a proxy keeps running on
its last good credential rather than stop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import structlog

_log = structlog.get_logger("legation.proxy")


class ProxyCredential:
    def __init__(
        self,
        *,
        token_file: Path | None = None,
        mint: Callable[[], str] | None = None,
        ttl_s: float = 0.0,
        roots: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._file, self._mint, self._ttl_s, self._roots = token_file, mint, ttl_s, roots
        self._clock = clock
        self._token: str | None = None
        self._minted_at = 0.0
        self._bundle: str | None = None

    def token(self) -> str | None:
        if self._file is not None:
            try:
                text = self._file.read_text().strip()
            except OSError as e:
                text = ""
                error = e.strerror or str(e)
            else:
                error = "the file is empty"
            if text:
                self._token = text
            else:
                _log.warning("proxy.token-unreadable", file=str(self._file), error=error,
                             kept="the last token read" if self._token else "none")
            return self._token
        if self._mint is not None and (
                self._token is None or self._clock() - self._minted_at >= self._ttl_s / 2):
            self._token, self._minted_at = self._mint(), self._clock()
        return self._token

    def roots(self) -> str | None:
        if self._roots is not None:
            try:
                self._bundle = self._roots()
            except (OSError, ValueError) as e:
                _log.warning("proxy.roots-unreadable", error=str(e),
                             kept="the last bundle read" if self._bundle else "none")
        return self._bundle
