"""The control plane's own look at every `jwksUri`, so an unusable one is a diagnostic.

Envoy fetches a RequestAuthentication's `jwksUri` itself (translators/jwt.py)
and, when it cannot, only its own stats say so: every token of that issuer
is rejected with 401 and nobody is told why. istiod fetches the keys itself
for the same reason. This probe does what is needed for the diagnostic and
nothing more: it GETs each distinct URI the mesh names (again every
`--jwks-refresh`, at most one fetch in flight per URI, 5 s timeout, 1 MiB at
most) and reports, at the rule that names it, a URI that cannot be fetched
or does not hold a JSON Web Key Set with keys. The keys themselves are never
used here: Envoy keeps the last good ones it fetched.

A control plane that cannot reach an issuer its proxies can reach (a
firewall between them) sees a warning that does not affect the proxies; the
message says where the fetch was made from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from legation.mesh.store import MeshStore
from legation.model import Diagnostic, Severity
from legation.model.security import RequestAuthentication

_log = structlog.get_logger("legation.sources.jwks")

SOURCE = "jwks-probe"
FETCH_TIMEOUT_S = 5.0
MAX_BYTES = 1 << 20
Fetch = Callable[[str], bytes]  # raises OSError / ValueError on failure


def fetch_url(uri: str) -> bytes:
    """GET `uri` (http or https, certificates verified), at most MAX_BYTES."""
    req = urllib.request.Request(uri, headers={"accept": "application/json"})
    with urllib.request.urlopen(req, timeout=FETCH_TIMEOUT_S) as resp:  # http(s): converter
        body: bytes = resp.read(MAX_BYTES + 1)
    if len(body) > MAX_BYTES:
        raise ValueError(f"the response is larger than {MAX_BYTES} bytes")
    return body


def problem_of(body: bytes) -> str | None:
    """Why `body` is not a usable JWKS, or None."""
    try:
        parsed = json.loads(body)
    except ValueError as exc:
        return f"the response is not JSON ({exc})"
    keys = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(keys, list) or not keys:
        return 'the response has no non-empty "keys" list (RFC 7517 section 5)'
    if not all(isinstance(k, dict) and isinstance(k.get("kty"), str) for k in keys):
        return "a key of the response has no kty (RFC 7517 section 4)"
    return None


@dataclass(slots=True)
class _Result:
    at: float
    problem: str | None


class JwksProbe:
    """Runs beside the sources: reads the store's RequestAuthentications, writes its
    diagnostics to the store (source ``jwks-probe``)."""

    def __init__(self, store: MeshStore, *, interval_s: float, fetch: Fetch = fetch_url,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._interval = interval_s
        self._fetch = fetch
        self._clock = clock
        self._results: dict[str, _Result] = {}

    async def run(self) -> None:
        version = 0
        while True:
            await self.check_once()
            with contextlib.suppress(TimeoutError):  # due again: fetch what is
                version = await asyncio.wait_for(self._store.wait_changed(version),
                                                 timeout=self._interval)

    async def check_once(self) -> None:
        """Fetch the URIs that are due, then publish the diagnostics of every rule."""
        policies = self._store.snapshot().request_authentications
        uris = sorted({r.jwks_uri for p in policies for r in p.rules if r.jwks_uri})
        now = self._clock()
        due = [u for u in uris
               if u not in self._results or now - self._results[u].at >= self._interval]
        if due:
            problems = await asyncio.gather(*(asyncio.to_thread(self._problem, u) for u in due))
            for uri, problem in zip(due, problems, strict=True):
                self._results[uri] = _Result(at=now, problem=problem)
        self._results = {u: r for u, r in self._results.items() if u in uris}
        self._store.set_diagnostics(SOURCE, self._diagnostics(policies))

    def _problem(self, uri: str) -> str | None:
        try:
            problem = problem_of(self._fetch(uri))
        except (OSError, ValueError, urllib.error.URLError) as exc:
            problem = f"it could not be fetched ({_reason(exc)})"
        if problem is not None:
            _log.warning("jwks.unusable", uri=uri, problem=problem)
        return problem

    def _diagnostics(self, policies: tuple[RequestAuthentication, ...]) -> list[Diagnostic]:
        out = []
        for p in policies:
            for rule in p.rules:
                result = self._results.get(rule.jwks_uri)
                if result is None or result.problem is None:
                    continue
                where = f"{rule.field}.jwksUri"
                out.append(Diagnostic(
                    ref=p.ref, field=where, code="requestauthentication.jwks-unusable",
                    message=(f"{rule.jwks_uri}: {result.problem}, fetched from the control "
                             "plane. Envoy fetches it itself and keeps the last keys it got; "
                             f"until it gets some, every token of {rule.issuer} is rejected "
                             "(401). Expected a JSON Web Key Set served at that URI."),
                    severity=Severity.WARNING, line=p.line_of(where)))
        return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__
