"""The control plane's look at each jwksUri: unusable ones are diagnostics at their rule."""

from __future__ import annotations

import json

from legation.mesh.store import MeshStore
from legation.sources.convert import convert_text
from legation.sources.jwks import JwksProbe, problem_of

GOOD = json.dumps({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}).encode()
RA = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: shop}
spec:
  jwtRules:
  - issuer: a
    jwksUri: http://a.example/keys
  - issuer: b
    jwksUri: http://b.example/keys
"""


def store_with(text: str) -> MeshStore:
    store = MeshStore()
    result = convert_text(text, file="ra.yaml")
    store.replace_source("files", result.objects, result.diagnostics)
    return store


def test_what_a_jwks_needs() -> None:
    assert problem_of(GOOD) is None
    assert "not JSON" in (problem_of(b"<html>") or "")
    assert "keys" in (problem_of(b'{"keys": []}') or "")
    assert "kty" in (problem_of(b'{"keys": [{"n": 1}]}') or "")


async def test_unusable_uris_are_reported_at_their_rule_and_cleared_when_fixed() -> None:
    answers: dict[str, bytes | OSError] = {"http://a.example/keys": GOOD,
                                           "http://b.example/keys": OSError("refused")}
    fetched: list[str] = []
    now = [0.0]

    def fetch(uri: str) -> bytes:
        fetched.append(uri)
        answer = answers[uri]
        if isinstance(answer, OSError):
            raise answer
        return answer

    store = store_with(RA)
    probe = JwksProbe(store, interval_s=60, fetch=fetch, clock=lambda: now[0])
    await probe.check_once()
    (d,) = [d for d in store.snapshot().diagnostics
            if d.code == "requestauthentication.jwks-unusable"]
    assert d.field == "spec.jwtRules[1].jwksUri" and d.ref.name == "jwt" and d.line == 9
    assert "could not be fetched (refused)" in d.message and "token of b" in d.message
    # not due again before the interval
    await probe.check_once()
    assert sorted(fetched) == ["http://a.example/keys", "http://b.example/keys"]
    answers["http://b.example/keys"] = GOOD
    now[0] = 61
    await probe.check_once()
    assert len(fetched) == 4
    assert not [d for d in store.snapshot().diagnostics
                if d.code == "requestauthentication.jwks-unusable"]
