"""End-user authentication and external authorization with real Envoys.

RequestAuthentication validates tokens the test signs (RS256 and ES256 with
`cryptography`) against keys inline or at a `jwksUri` the test serves and
rotates; AuthorizationPolicies decide on the request principal and claims;
CUSTOM policies call the test's own ext_authz servers (HTTP and gRPC).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2, status_pb2

from .harness import AppFleet, EnvoyFleet, Loopback, MeshLab, eventually, request
from .security_lab import NAMESPACE, SecureLab, SecureWorkload

ISSUER = "https://issuer.test"
EC_ISSUER = "ec-issuer"


# -- tokens -----------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int(value: int, size: int) -> str:
    return _b64(value.to_bytes(size, "big"))


class RsaKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, str]:
        n = self.key.public_key().public_numbers()
        return {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
                "n": _int(n.n, 256), "e": _int(n.e, 3)}

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


class EcKey:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.key = ec.generate_private_key(ec.SECP256R1())

    def jwk(self) -> dict[str, str]:
        n = self.key.public_key().public_numbers()
        return {"kty": "EC", "crv": "P-256", "alg": "ES256", "kid": self.kid,
                "x": _int(n.x, 32), "y": _int(n.y, 32)}

    def sign(self, data: bytes) -> bytes:
        r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")  # JWS: r || s (RFC 7518 3.4)


def token(key: RsaKey | EcKey, *, iss: str = ISSUER, sub: str = "alice", aud: str = "shop",
          exp_in: float = 600, kid: str | None = None, **claims: Any) -> str:
    alg = "RS256" if isinstance(key, RsaKey) else "ES256"
    header = {"alg": alg, "typ": "JWT", "kid": kid or key.kid}
    now = int(time.time())
    payload = {"iss": iss, "sub": sub, "aud": aud, "iat": now, "exp": int(now + exp_in),
               **claims}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


def bearer(t: str) -> dict[str, str]:
    return {"authorization": f"Bearer {t}"}


# -- the test's servers ---------------------------------------------------------------


class Served:
    """What the test's HTTP servers answer; changed by the test while they run."""

    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.jwks_status = 200
        self.jwks_fetches = 0
        self.checks: list[str] = []  # paths the HTTP authorizer was asked about


@contextmanager
def http_server(host: str, served: Served) -> Iterator[int]:
    """`/jwks.json` (the JWKS) and every other path as an ext_authz HTTP service: allow
    when the check carries `x-allow: yes`, else 403 with `x-reason`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/jwks.json":
                served.jwks_fetches += 1
                body = json.dumps(served.jwks).encode()
                self.send_response(served.jwks_status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self._check()

        do_POST = do_PUT = do_DELETE = do_GET

        def _check(self) -> None:
            served.checks.append(self.path)
            allowed = self.headers.get("x-allow") == "yes"
            self.send_response(200 if allowed else 403)
            if allowed:
                self.send_header("x-authz-user", "checked-by-http")
            else:
                self.send_header("x-reason", "no x-allow header")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class GrpcAuthorizer(external_auth_pb2_grpc.AuthorizationServicer):
    """envoy.service.auth.v3: allow when the request carries `x-allow: yes`."""

    def __init__(self) -> None:
        self.checks: list[str] = []

    async def Check(self, request: Any, context: Any) -> Any:
        http = request.attributes.request.http
        self.checks.append(http.path)
        if http.headers.get("x-allow") == "yes":
            return external_auth_pb2.CheckResponse(status=status_pb2.Status(code=code_pb2.OK))
        return external_auth_pb2.CheckResponse(
            status=status_pb2.Status(code=code_pb2.PERMISSION_DENIED),
            denied_response=external_auth_pb2.DeniedHttpResponse(body="denied by grpc"))


@pytest.fixture
async def jwt_lab(tmp_path: Path, loopback: Loopback, envoys: EnvoyFleet,
                  apps: AppFleet) -> AsyncIterator[SecureLab]:
    lab = SecureLab(root=tmp_path, loopback=loopback, envoys=envoys, apps=apps,
                    serve_args=("--jwks-refresh", "1s"))
    try:
        yield lab
    finally:
        await envoys.stop_all()
        await lab.control_plane.stop()


def policy(name: str, spec: str) -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: {NAMESPACE}}}\nspec:\n{spec}")


async def status(lab: SecureLab, client: SecureWorkload, path: str = "/",
                 headers: dict[str, str] | None = None) -> int:
    return (await lab.call(client, "payment", path=path, headers=headers)).status


# -- RequestAuthentication ---------------------------------------------------------------


async def test_tokens_are_validated_and_principals_and_claims_authorize(
    jwt_lab: SecureLab,
) -> None:
    lab = jwt_lab
    served = Served()
    k1, k2, ec_key, stranger = RsaKey("k1"), RsaKey("k2"), EcKey("e1"), RsaKey("k1")
    served.jwks = {"keys": [k1.jwk()]}
    host = lab.loopback.next()
    with http_server(host, served) as port:
        lab.service("payment")
        await lab.backend("payment-v1", app="payment", service_account="payment-sa")
        web = lab.client("web", service_account="web-sa")
        lab.peer_authentication("STRICT")
        lab.write("request-authentication.yaml", f"""\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: payment, namespace: {NAMESPACE}}}
spec:
  selector: {{matchLabels: {{app: payment}}}}
  jwtRules:
  - issuer: {ISSUER}
    jwksUri: http://{host}:{port}/jwks.json
    audiences: [shop]
  - issuer: {EC_ISSUER}
    jwks: '{json.dumps({"keys": [ec_key.jwk()]})}'
""")
        lab.write("require-jwt.yaml", policy("require-jwt", """\
  selector: {matchLabels: {app: payment}}
  action: DENY
  rules:
  - from: [{source: {notRequestPrincipals: ["*"]}}]
"""))
        lab.write("admins.yaml", policy("admins", f"""\
  selector: {{matchLabels: {{app: payment}}}}
  rules:
  - to: [{{operation: {{paths: [/admin*]}}}}]
    when:
    - {{key: "request.auth.claims[groups]", values: [admins]}}
  - to: [{{operation: {{notPaths: [/admin*]}}}}]
    from: [{{source: {{requestPrincipals: ["{ISSUER}/*", "{EC_ISSUER}/bob"]}}}}]
"""))
        await lab.start_all()

        good = token(k1)
        resp = await eventually(lambda: _status_is(lab, web, 200, bearer(good)),
                                what="a valid RS256 token accepted")
        assert "authorization" not in resp.json()["headers"]  # not forwarded to the app
        assert await status(lab, web, headers=bearer(token(ec_key, iss=EC_ISSUER,
                                                            sub="bob"))) == 200
        rejected = {
            "expired": token(k1, exp_in=-120),
            "wrong signature": token(stranger),  # same kid, another key
            "wrong audience": token(k1, aud="billing"),
            "unknown issuer": token(k1, iss="https://other.test"),
        }
        for what, t in rejected.items():
            resp = await lab.call(web, "payment", headers=bearer(t))
            assert resp.status == 401, (what, resp.status, resp.text())
            assert "Jwt" in resp.text(), (what, resp.text())  # Envoy says why
        assert await status(lab, web) == 403  # no token: authenticated as nobody, denied
        # a principal the ALLOW rule does not name
        assert await status(lab, web, headers=bearer(token(ec_key, iss=EC_ISSUER,
                                                            sub="eve"))) == 403
        # claims: groups (a list in the token) must hold admins for /admin
        assert await status(lab, web, "/admin", bearer(token(k1))) == 403
        assert await status(lab, web, "/admin", bearer(token(k1, groups=["dev", "admins"]))) == 200

        # Rotation: the issuer publishes k2 only; within a refresh, k2 works, k1 no more.
        served.jwks = {"keys": [k2.jwk()]}
        await eventually(lambda: _status_is(lab, web, 200, bearer(token(k2))), timeout=15,
                         what="a token of the rotated key accepted")
        assert await status(lab, web, headers=bearer(token(k1))) == 401

        # The JWKS server fails: Envoy keeps the keys it has.
        fetches = served.jwks_fetches
        served.jwks_status = 503
        await eventually(lambda: _true(served.jwks_fetches >= fetches + 3), timeout=15,
                         what="Envoy refetching from the failing JWKS server")
        assert await status(lab, web, headers=bearer(token(k2))) == 200
        assert await status(lab, web, headers=bearer(token(k1))) == 401

        # ... and the control plane, fetching the URI too, says what is wrong, where.
        async def reported() -> list[dict[str, Any]] | None:
            return [d for d in await lab.control_plane.diagnostics()
                    if d["code"] == "requestauthentication.jwks-unusable"] or None

        (d,) = await eventually(reported, timeout=15, what="the unusable jwksUri reported")
        assert d["field"] == "spec.jwtRules[0].jwksUri" and "HTTP 503" in d["message"]


async def _status_is(lab: SecureLab, client: SecureWorkload, want: int,
                     headers: dict[str, str]) -> Any:
    resp = await lab.call(client, "payment", headers=headers)
    return resp if resp.status == want else None


async def _true(value: bool) -> bool:
    return value


# -- CUSTOM ------------------------------------------------------------------------------


def mesh_config(http_host: str, http_port: int, grpc_host: str, grpc_port: int, *,
                http_extra: str = "") -> str:
    return f"""\
apiVersion: v1
kind: ConfigMap
metadata: {{name: istio, namespace: istio-system}}
data:
  mesh: |
    extensionProviders:
    - name: http-authz
      envoyExtAuthzHttp:
        service: {http_host}
        port: {http_port}
        timeout: 2s
        includeRequestHeadersInCheck: [x-allow]
        headersToUpstreamOnAllow: [x-authz-user]
        headersToDownstreamOnDeny: [x-reason]
{http_extra}    - name: grpc-authz
      envoyExtAuthzGrpc: {{service: {grpc_host}, port: {grpc_port}, timeout: 2s}}
"""


async def test_custom_policies_call_the_external_authorizers(jwt_lab: SecureLab) -> None:
    lab = jwt_lab
    served = Served()
    http_host, grpc_host = lab.loopback.next(), lab.loopback.next()
    authorizer = GrpcAuthorizer()
    server = grpc.aio.server()
    external_auth_pb2_grpc.add_AuthorizationServicer_to_server(authorizer, server)
    grpc_port = server.add_insecure_port(f"{grpc_host}:0")
    await server.start()
    try:
        with http_server(http_host, served) as http_port:
            lab.write("mesh-config.yaml", mesh_config(http_host, http_port, grpc_host,
                                                      grpc_port))
            lab.service("payment")
            lab.service("catalog")
            await lab.backend("payment-v1", app="payment", service_account="payment-sa")
            await lab.backend("catalog-v1", app="catalog", service_account="catalog-sa")
            web = lab.client("web", service_account="web-sa")
            lab.peer_authentication("STRICT")
            lab.write("ext-payment.yaml", policy("ext-payment", """\
  selector: {matchLabels: {app: payment}}
  action: CUSTOM
  provider: {name: http-authz}
  rules:
  - to: [{operation: {paths: [/admin*]}}]
"""))
            lab.write("ext-catalog.yaml", policy("ext-catalog", """\
  selector: {matchLabels: {app: catalog}}
  action: CUSTOM
  provider: {name: grpc-authz}
  rules:
  - to: [{operation: {paths: [/secure*]}}]
"""))
            await lab.start_all()
            allow = {"x-allow": "yes"}

            # HTTP provider: only the matched paths are checked.
            resp = await eventually(
                lambda: _call_is(lab, web, "payment", "/admin/x", 200, allow),
                what="an allowed request through the HTTP authorizer")
            assert resp.json()["headers"].get("x-authz-user") == "checked-by-http"
            assert served.checks == ["/admin/x"]
            denied = await lab.call(web, "payment", path="/admin/x")
            assert denied.status == 403 and denied.header("x-reason") == "no x-allow header"
            assert (await lab.call(web, "payment", path="/public")).status == 200
            assert served.checks == ["/admin/x", "/admin/x"]  # /public was never sent

            # gRPC provider.
            assert (await lab.call(web, "catalog", path="/secure/1", headers=allow)).status == 200
            denied = await lab.call(web, "catalog", path="/secure/1")
            assert (denied.status, denied.text()) == (403, "denied by grpc")
            assert (await lab.call(web, "catalog", path="/open")).status == 200
            assert authorizer.checks == ["/secure/1", "/secure/1"]

            # The HTTP authorizer unreachable: failOpen lets the request in ...
            dead = lab.loopback.next()
            lab.write("mesh-config.yaml", mesh_config(
                dead, 9, grpc_host, grpc_port, http_extra="        failOpen: true\n"))
            await eventually(lambda: _call_is(lab, web, "payment", "/admin/y", 200, {}),
                             timeout=15, what="failOpen: allowed while the authorizer is down")
            # ... and without it, statusOnError answers.
            lab.write("mesh-config.yaml", mesh_config(
                dead, 9, grpc_host, grpc_port, http_extra='        statusOnError: "503"\n'))
            await eventually(lambda: _call_is(lab, web, "payment", "/admin/y", 503, allow),
                             timeout=15, what="statusOnError while the authorizer is down")
            assert (await lab.call(web, "payment", path="/public")).status == 200
    finally:
        await server.stop(None)


async def _call_is(lab: SecureLab, client: SecureWorkload, service: str, path: str, want: int,
                   headers: dict[str, str]) -> Any:
    resp = await lab.call(client, service, path=path, headers=headers)
    return resp if resp.status == want else None


# -- at the ingress gateway ------------------------------------------------------------


@pytest.mark.parametrize("delta", [False], ids=["sotw"])
async def test_the_ingress_gateway_requires_a_valid_token(mesh: MeshLab) -> None:
    key = EcKey("gw")
    mesh.service("productpage")
    await mesh.backend("productpage-v1", app="productpage")
    gateway = mesh.client("ingressgateway", labels={"istio": "ingressgateway"})
    mesh.write("gateway.yaml", f"""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: public, namespace: {mesh.namespace}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 8080, name: http, protocol: HTTP}}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: shop, namespace: {mesh.namespace}}}
spec:
  hosts: ["*"]
  gateways: [public]
  http:
  - route:
    - destination: {{host: productpage, port: {{number: 9080}}}}
---
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: ingress, namespace: {mesh.namespace}}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  jwtRules:
  - issuer: {EC_ISSUER}
    jwks: '{json.dumps({"keys": [key.jwk()]})}'
    outputClaimToHeaders: [{{header: x-user, claim: sub}}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: ingress-require-jwt, namespace: {mesh.namespace}}}
spec:
  selector: {{matchLabels: {{istio: ingressgateway}}}}
  action: DENY
  rules:
  - from: [{{source: {{notRequestPrincipals: ["*"]}}}}]
""")
    await mesh.start()

    async def get(headers: dict[str, str]) -> Any:
        return await request(gateway.address, 8080, "GET", "/productpage",
                             headers={"host": "shop.example.com", **headers}, timeout=5)

    async def served() -> Any:
        resp = await get(bearer(token(key, iss=EC_ISSUER, sub="carol")))
        return resp if resp.status == 200 else None

    resp = await eventually(served, what="a valid token through the gateway")
    assert resp.header("x-served-by") == "productpage-v1"
    assert resp.json()["headers"]["x-user"] == "carol"  # outputClaimToHeaders
    assert (await get({})).status == 403
    # expired beyond the 60 s of clock skew Envoy allows
    assert (await get(bearer(token(key, iss=EC_ISSUER, exp_in=-300)))).status == 401
