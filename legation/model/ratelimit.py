"""Rate limits without EnvoyFilter: what Legation reads from annotations, for Envoy's
local and global rate limit filters (translators/ratelimit.py).

- `LocalRateLimit`: a token bucket in each proxy: `tokens` requests, refilled
  every `fill_s` seconds (``"100/1s"``); over it, 429 with ``x-local-rate-limit:
  true``. On a workload (``ratelimit.legation.io/local``) it guards the workload's
  inbound HTTP ports (a gateway's servers); on VirtualService routes
  (``ratelimit.legation.io/routes``: route name -> limit) the routes of every proxy
  that uses them, each proxy with its own bucket.
- `GlobalRateLimit`: one limit shared by every proxy, decided by a rate limit
  service (Envoy's `envoy.service.ratelimit.v3` protocol) named in MeshConfig
  `extensionProviders[].envoyRateLimit`; the request's descriptor is built from
  `descriptors` in order (``remote_address``, ``header:<name>``, ``path``,
  ``generic:<value>``) under `domain`.
"""

from __future__ import annotations

from dataclasses import dataclass

LOCAL_ANNOTATION = "ratelimit.legation.io/local"
GLOBAL_ANNOTATION = "ratelimit.legation.io/global"
DESCRIPTORS_ANNOTATION = "ratelimit.legation.io/global-descriptors"
DOMAIN_ANNOTATION = "ratelimit.legation.io/domain"
ROUTES_ANNOTATION = "ratelimit.legation.io/routes"
DESCRIPTOR_FORMS = "remote_address, header:<name>, path or generic:<value>"


@dataclass(frozen=True, slots=True)
class LocalRateLimit:
    tokens: int
    fill_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class GlobalRateLimit:
    provider: str
    domain: str
    descriptors: tuple[str, ...] = ("remote_address",)


def valid_descriptor(text: str) -> bool:
    kind, sep, arg = text.partition(":")
    if kind in ("remote_address", "path"):
        return not sep
    return kind in ("header", "generic") and bool(sep) and bool(arg.strip())
