"""The stack's single origin: routes /api/v1/... to the services, serves the web app, and runs
the local OIDC token issuer (demo accounts) that the services validate tokens against.

In production an ingress does the routing and a real identity provider issues the tokens.
Written on aiohttp because a proxy must be cheap: it sits in front of every request.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from loket_runtime.i18n import Text, in_language, negotiate, tr

HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}

UPSTREAM_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5)
BUFFERED_BODY = 4 * 1024 * 1024  # bodies up to this size (with a Content-Length) are read whole, then written

# Longest prefix wins. Values are service names; their ports come from the command line.
ROUTES: list[tuple[str, str]] = [
    ("/api/v1/ops/notifications", "notifications"),
    ("/api/v1/ops/persons", "booking"),
    ("/api/v1/waitlist", "notifications"),
    ("/api/v1/products", "catalogue"),
    ("/api/v1/locations", "catalogue"),
    ("/api/v1/admin", "catalogue"),
    ("/api/v1/availability", "calendar"),
    ("/api/v1/agenda", "calendar"),
    ("/api/v1/ops", "calendar"),
    ("/api/v1/bookings", "booking"),
]
ROUTES.sort(key=lambda route: len(route[0]), reverse=True)
NOT_FORWARDED = HOP_BY_HOP | {"x-forwarded-for", "x-forwarded-proto"}  # the gateway sets these itself

DEMO_ACCOUNTS: dict[str, dict[str, Any]] = {
    "staff": {"roles": ["staff"], "locations": ["migration-counter"]},
    "staff-gentbrugge": {"roles": ["staff"], "locations": ["sc-gentbrugge"]},
    "ops": {"roles": ["ops"], "locations": ["*"]},
    "admin": {"roles": ["admin", "staff", "ops"], "locations": ["*"]},
}
TOKEN_SECONDS = 8 * 3600


class TokenIssuer:
    """A small OIDC-style issuer: RS256 tokens, JWKS, and an OAuth2 password grant for demo accounts."""

    def __init__(self, key_file: Path, issuer: str, audience: str, password: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.password = password
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
        try:
            # A form aiohttp cannot read (multipart without a boundary, bad encoding) is the client's fault.
            form = await request.post()
        except (ValueError, AssertionError, LookupError, UnicodeError) as exc:
            detail = tr("The body is not a form this endpoint reads (%(reason)s).", reason=type(exc).__name__)
            return _problem(request, 400, tr("Bad request"), detail)
        username = str(form.get("username", ""))
        password = str(form.get("password", ""))
        valid_password = hmac.compare_digest(password.encode(errors="surrogatepass"), self.password.encode())
        if username not in DEMO_ACCOUNTS or not valid_password:
            return _problem(request, 401, tr("Unauthorized"), tr("Unknown user name or wrong password."))
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


def _problem(request: web.Request, status: int, title: Text, detail: Text) -> web.Response:
    """The gateway's own problem+json, in the request's language (the rule of `loket_runtime.i18n`)."""
    language = negotiate(request.headers.get("Accept-Language"))
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return web.json_response(
        in_language(body, language),
        status=status,
        content_type="application/problem+json",
        headers={"Content-Language": language},
    )


class Gateway:
    def __init__(self, upstreams: dict[str, str], web_dir: Path | None) -> None:
        self.upstreams = upstreams
        self.web_dir = web_dir
        self.session: aiohttp.ClientSession | None = None

    async def start(self, _: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=400, keepalive_timeout=30)
        # Bytes pass through untouched (no inflating), and no Accept-Encoding is added to a request
        # that had none: a client that did not ask for gzip must not get it. No cookie jar: one
        # client's cookies must never be kept and sent along with another client's requests.
        self.session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def stop(self, _: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    def upstream_for(self, path: str) -> str | None:
        for prefix, service in ROUTES:
            if path == prefix or path.startswith(prefix + "/") or path.startswith(prefix + "?"):
                return self.upstreams[service]
        return None

    async def proxy(self, request: web.Request) -> web.StreamResponse:
        """Forward as is: the path and query as the client wrote them, every header but the hop-by-hop
        ones (repeated ones too), and the answer's bytes untouched (a gzip answer stays gzip)."""
        base = self.upstream_for(request.path)
        if base is None:
            return _problem(request, 404, tr("Not found"), tr("No API at %(path)s.", path=request.path))
        assert self.session is not None
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in NOT_FORWARDED]
        headers += [("X-Forwarded-For", request.remote or ""), ("X-Forwarded-Proto", request.scheme)]
        body = await request.read() if request.can_read_body else None
        try:
            upstream = await self.session.request(
                request.method,
                base + request.raw_path,
                headers=headers,
                data=body,
                allow_redirects=False,
                timeout=UPSTREAM_TIMEOUT,
            )
        except aiohttp.ClientError as exc:
            detail = tr(
                "The service behind %(path)s did not answer (%(reason)s); try again in a moment.",
                path=request.path,
                reason=type(exc).__name__,
            )
            return _problem(request, 502, tr("Service unavailable"), detail)
        try:
            out_headers = [(k, v) for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP]
            length = upstream.content_length
            if (length is not None and length <= BUFFERED_BODY) or upstream.status in (204, 304):
                # One read, one write: a body in hand is cheaper to pass on than a stream of chunks.
                return web.Response(status=upstream.status, headers=out_headers, body=await upstream.read())
            # Server-Sent Events, and bodies of unknown or large size: chunk by chunk as they come.
            response = web.StreamResponse(status=upstream.status, headers=out_headers)
            if length is not None:
                response.content_length = length
            await response.prepare(request)
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            upstream.release()

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

    async def index(self, request: web.Request) -> web.StreamResponse:
        if self.web_dir is not None:
            relative = request.match_info.get("tail", "") or "index.html"
            path = (self.web_dir / relative).resolve()
            if path.is_relative_to(self.web_dir.resolve()) and path.is_file():
                return web.FileResponse(path)
            if (self.web_dir / "index.html").is_file():
                return web.FileResponse(self.web_dir / "index.html")
        return web.Response(text=LANDING_PAGE, content_type="text/html")

    async def healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "service": "gateway"})


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

LANDING_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Loket</title></head>
<body><h1>Loket</h1><p>Appointments for the Ghent Migration Counter.</p>
<p><a href="/api/v1/docs">API documentation</a></p></body></html>"""


def build_app(upstreams: dict[str, str], issuer: TokenIssuer, web_dir: Path | None) -> web.Application:
    gateway = Gateway(upstreams, web_dir)
    app = web.Application(client_max_size=1024 * 1024)
    app.on_startup.append(gateway.start)
    app.on_cleanup.append(gateway.stop)
    app.router.add_post("/api/v1/auth/token", issuer.token)
    app.router.add_get("/api/v1/auth/jwks", issuer.jwks_handler)
    app.router.add_get("/api/v1/auth/.well-known/openid-configuration", issuer.discovery)
    app.router.add_get("/api/v1/openapi.json", gateway.openapi)
    app.router.add_get("/api/v1/docs", gateway.docs)
    app.router.add_get("/healthz", gateway.healthz)
    app.router.add_route("*", "/api/{tail:.*}", gateway.proxy)
    app.router.add_get("/{tail:.*}", gateway.index)
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--upstream", action="append", default=[], help="name=http://127.0.0.1:PORT")
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--web-dir", type=Path)
    args = parser.parse_args()
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    issuer = TokenIssuer(
        args.key_file,
        issuer=os.environ.get("LOKET_OIDC_ISSUER", f"http://127.0.0.1:{args.port}/api/v1/auth"),
        audience=os.environ.get("LOKET_OIDC_AUDIENCE", "loket"),
        password=os.environ.get("LOKET_DEMO_PASSWORD", "demo"),
    )
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass
    web.run_app(
        build_app(upstreams, issuer, args.web_dir), host="127.0.0.1", port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()
