"""What stands behind the edge (loket_stack.edge) besides the services: the local OIDC token issuer
(demo accounts; the services validate its tokens against its JWKS) and the API's merged OpenAPI
document with its docs page. It proxies nothing: nginx routes every request.

Failed sign-ins back off (`LoginBackoff`): per account and client, and per account. The edge adds
the per-client budget of the token route (deploy/edge/loket.conf.template). In production a real
identity provider issues the tokens: started without `--key-file`, this service serves the docs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import math
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from loket_runtime.i18n import Text, in_language, negotiate, tr

DEMO_ACCOUNTS: dict[str, dict[str, Any]] = {
    "staff": {"roles": ["staff"], "locations": ["migration-counter"]},
    "staff-gentbrugge": {"roles": ["staff"], "locations": ["sc-gentbrugge"]},
    "ops": {"roles": ["ops"], "locations": ["*"]},
    "admin": {"roles": ["admin", "staff", "ops"], "locations": ["*"]},
}
TOKEN_SECONDS = 8 * 3600


NAME_KEPT = 128  # characters of a user name a counter keeps: longer names count by their start


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0  # monotonic seconds
    locked_until: float = 0.0


class LoginBackoff:
    """Failed sign-ins back off, as OWASP advises against online guessing, without locking anyone out
    for good. Per account and client: the first `free_per_pair` failures are free, then each further
    one locks that pair for 1, 2, 4, ... seconds (up to `max_delay`). Per account, from any client
    (guessing spread over many addresses): the same after `free_per_account` failures. A sign-in
    that succeeds clears its pair; an account's count is forgotten `forget_after` seconds after its
    last failure. Unknown user names are counted alike, so the answers do not tell which exist.
    At most `max_keys` counters are kept (the oldest go first), so a flood of names cannot fill memory.
    """

    def __init__(
        self,
        free_per_pair: int = 3,
        free_per_account: int = 20,
        max_delay: float = 900.0,
        forget_after: float = 900.0,
        max_keys: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.free = {"pair": free_per_pair, "account": free_per_account}
        self.max_delay = max_delay
        self.forget_after = forget_after
        self.max_keys = max_keys
        self.clock = clock
        self._failures: OrderedDict[tuple[str, ...], _Failures] = OrderedDict()

    def _keys(self, account: str, client: str) -> dict[str, tuple[str, ...]]:
        account = account[:NAME_KEPT]
        return {"pair": ("pair", account, client), "account": ("account", account)}

    def retry_after(self, account: str, client: str) -> float:
        """Seconds before `client` may try `account` again (0: now)."""
        now = self.clock()
        waits = [0.0]
        for key in self._keys(account, client).values():
            failures = self._failures.get(key)
            if failures is not None:
                waits.append(failures.locked_until - now)
        return max(waits)

    def failed(self, account: str, client: str) -> None:
        now = self.clock()
        for kind, key in self._keys(account, client).items():
            failures = self._failures.pop(key, None)
            if failures is None or now - failures.last > self.forget_after:
                failures = _Failures()
            failures.count += 1
            failures.last = now
            beyond = failures.count - self.free[kind]
            if beyond > 0:
                failures.locked_until = now + min(self.max_delay, 2.0 ** (beyond - 1))
            self._failures[key] = failures  # the newest last: the oldest go first
        while len(self._failures) > self.max_keys:
            self._failures.popitem(last=False)

    def succeeded(self, account: str, client: str) -> None:
        self._failures.pop(self._keys(account, client)["pair"], None)

    def __len__(self) -> int:
        """How many counters are kept (at most `max_keys`)."""
        return len(self._failures)


class TokenIssuer:
    """A small OIDC-style issuer: RS256 tokens, JWKS, and an OAuth2 password grant for demo accounts."""

    def __init__(self, key_file: Path, issuer: str, audience: str, password: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.password = password
        self.backoff = LoginBackoff()
        if key_file.exists():
            key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
        else:
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            key_file.parent.mkdir(parents=True, exist_ok=True)
            key_file.write_bytes(
                key.private_bytes(
                    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                )
            )
            key_file.chmod(0o600)
        assert isinstance(key, rsa.RSAPrivateKey)
        self.key = key
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
        self.kid = public_jwk["kid"] = f"loket-{abs(hash(public_jwk['n'])) % 10**8}"
        public_jwk.update({"use": "sig", "alg": "RS256"})
        self.jwks = {"keys": [public_jwk]}

    def issue(self, username: str) -> str:
        account = DEMO_ACCOUNTS[username]
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": username,
            "iat": now,
            "exp": now + TOKEN_SECONDS,
            "jti": str(uuid.uuid4()),
            "roles": account["roles"],
            "locations": account["locations"],
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})

    async def token(self, request: web.Request) -> web.Response:
        """OAuth2 password grant: 200 with a bearer token; 401 for a wrong name or password; 429 with
        Retry-After while failed sign-ins back off (`LoginBackoff`); 400 for a body that is no form."""
        try:
            # A form aiohttp cannot read (multipart without a boundary, bad encoding) is the client's fault.
            form = await request.post()
        except (ValueError, AssertionError, LookupError, UnicodeError) as exc:
            detail = tr("The body is not a form this endpoint reads (%(reason)s).", reason=type(exc).__name__)
            return _problem(request, 400, tr("Bad request"), detail)
        username = str(form.get("username", ""))
        password = str(form.get("password", ""))
        # The edge sets X-Real-IP to the client's address; only the edge reaches this service.
        client = request.headers.get("X-Real-IP") or request.remote or ""
        wait = self.backoff.retry_after(username, client)
        if wait > 0:
            seconds = math.ceil(wait)
            return _problem(
                request,
                429,
                tr("Too many requests"),
                tr("Too many failed sign-ins; try again after %(seconds)s seconds.", seconds=seconds),
                "too-many-requests",
                headers={"Retry-After": str(seconds)},
                retry_after=seconds,
            )
        valid_password = hmac.compare_digest(password.encode(errors="surrogatepass"), self.password.encode())
        if username not in DEMO_ACCOUNTS or not valid_password:
            self.backoff.failed(username, client)
            return _problem(request, 401, tr("Unauthorized"), tr("Unknown user name or wrong password."))
        self.backoff.succeeded(username, client)
        return web.json_response(
            {
                "access_token": self.issue(username),
                "token_type": "bearer",
                "expires_in": TOKEN_SECONDS,
                "roles": DEMO_ACCOUNTS[username]["roles"],
                "locations": DEMO_ACCOUNTS[username]["locations"],
            }
        )

    async def jwks_handler(self, _: web.Request) -> web.Response:
        return web.json_response(self.jwks)

    async def discovery(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "token_endpoint": f"{self.issuer}/token",
                "grant_types_supported": ["password"],
                "id_token_signing_alg_values_supported": ["RS256"],
            }
        )


PROBLEM_BASE = "https://loket.gent/problems/"  # as loket_runtime.problems names them


def _problem(
    request: web.Request,
    status: int,
    title: Text,
    detail: Text,
    type_: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """The issuer's own problem+json, in the request's language (the rule of `loket_runtime.i18n`)."""
    language = negotiate(request.headers.get("Accept-Language"))
    kind = PROBLEM_BASE + type_ if type_ else "about:blank"
    body = {"type": kind, "title": title, "status": status, "detail": detail, **extra}
    return web.json_response(
        in_language(body, language),
        status=status,
        content_type="application/problem+json",
        headers={"Content-Language": language} | (headers or {}),
    )


class ApiDocs:
    """The merged OpenAPI document of the services (read from each, `upstreams`: name -> base URL)."""

    def __init__(self, upstreams: dict[str, str]) -> None:
        self.upstreams = upstreams
        self.session: aiohttp.ClientSession | None = None

    async def start(self, _: web.Application) -> None:
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())

    async def stop(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def openapi(self, _: web.Request) -> web.Response:
        """One OpenAPI document for the whole API: the services' documents merged."""
        assert self.session is not None
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "Loket API",
                "version": "1.0.0",
                "description": "The public HTTP contract of Loket (API.md): catalogue, availability, "
                "bookings, staff agenda and operations.",
            },
            "paths": {},
            "components": {
                "schemas": {},
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
            },
        }
        for _service, base in sorted(self.upstreams.items()):
            try:
                async with self.session.get(f"{base}/openapi.json") as response:
                    doc = await response.json()
            except aiohttp.ClientError:
                continue
            merged["paths"].update({p: v for p, v in doc.get("paths", {}).items() if p.startswith("/api/")})
            merged["components"]["schemas"].update(doc.get("components", {}).get("schemas", {}))
        merged["paths"]["/api/v1/auth/token"] = {
            "post": {
                "summary": "Get a bearer token (local demo issuer, OAuth2 password grant)",
                "tags": ["auth"],
                "requestBody": {
                    "content": {
                        "application/x-www-form-urlencoded": {
                            "schema": {
                                "type": "object",
                                "required": ["username", "password"],
                                "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
                            }
                        }
                    }
                },
                "responses": {"200": {"description": "token"}, "401": {"description": "wrong credentials"}},
            }
        }
        return web.json_response(merged)

    async def docs(self, _: web.Request) -> web.Response:
        return web.Response(text=DOCS_PAGE, content_type="text/html")

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "issuer"})


DOCS_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Loket API</title></head>
<body><h1>Loket API v1</h1><p>The OpenAPI document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>.</p>
<div id="ops"></div><script>
fetch('/api/v1/openapi.json').then(r => r.json()).then(doc => {
  const ul = document.createElement('ul');
  for (const [path, ops] of Object.entries(doc.paths).sort()) for (const [m, op] of Object.entries(ops)) {
    const li = document.createElement('li'); li.textContent = m.toUpperCase() + ' ' + path + ' - ' + (op.summary || '');
    ul.appendChild(li); }
  document.getElementById('ops').appendChild(ul); });
</script></body></html>"""


async def no_local_issuer(request: web.Request) -> web.Response:
    return _problem(
        request, 404, tr("Not found"), tr("No local sign-in here: tokens come from the city's identity provider.")
    )


def build_app(upstreams: dict[str, str], issuer: TokenIssuer | None) -> web.Application:
    """The issuer's routes (none with `issuer=None`, as in production), the docs, /healthz."""
    docs = ApiDocs(upstreams)
    app = web.Application(client_max_size=64 * 1024)
    app.on_startup.append(docs.start)
    app.on_cleanup.append(docs.stop)
    if issuer is not None:
        app.router.add_post("/api/v1/auth/token", issuer.token)
        app.router.add_get("/api/v1/auth/jwks", issuer.jwks_handler)
        app.router.add_get("/api/v1/auth/.well-known/openid-configuration", issuer.discovery)
    else:
        app.router.add_route("*", "/api/v1/auth/{tail:.*}", no_local_issuer)
    app.router.add_get("/api/v1/openapi.json", docs.openapi)
    app.router.add_get("/api/v1/docs", docs.docs)
    app.router.add_get("/healthz", docs.healthz)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8107)
    parser.add_argument("--upstream", action="append", default=[], help="name=http://127.0.0.1:PORT")
    parser.add_argument("--key-file", type=Path, help="the signing key (made when missing); none: no local sign-in")
    args = parser.parse_args()
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    issuer = None
    if args.key_file is not None:
        issuer = TokenIssuer(
            args.key_file,
            issuer=os.environ.get("LOKET_OIDC_ISSUER", "http://127.0.0.1:8000/api/v1/auth"),
            audience=os.environ.get("LOKET_OIDC_AUDIENCE", "loket"),
            password=os.environ.get("LOKET_DEMO_PASSWORD", "demo"),
        )
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(build_app(upstreams, issuer), host=args.host, port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
