"""Bearer JWT validation against an OIDC issuer's JWKS, and role checks with locations.

A token carries `roles` (staff, ops, admin) and `locations` (ids, or "*" for all). Staff may act
only on their own locations.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import httpx
import jwt
from fastapi import Depends, Request

from loket_runtime.i18n import tr
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem

log = get_logger(__name__)


@dataclass(frozen=True)
class Principal:
    subject: str
    roles: frozenset[str]
    locations: frozenset[str]

    def may_act_at(self, location_id: str) -> bool:
        return "*" in self.locations or location_id in self.locations

    def require_location(self, location_id: str) -> None:
        if not self.may_act_at(location_id):
            raise Problem(
                403,
                tr("Forbidden"),
                tr("You have no access to location %(location)s.", location=location_id),
                "forbidden",
            )


class JwtVerifier:
    """Caches the issuer's keys; refetches when a token names an unknown key id."""

    def __init__(self, jwks_url: str, issuer: str, audience: str, cache_seconds: float = 300) -> None:
        self.jwks_url = jwks_url
        self.issuer = issuer
        self.audience = audience
        self.cache_seconds = cache_seconds
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0

    async def _refresh(self) -> None:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(self.jwks_url)
            response.raise_for_status()
        jwks = jwt.PyJWKSet.from_dict(response.json())
        self._keys = {key.key_id: key for key in jwks.keys if key.key_id}
        self._fetched_at = time.monotonic()

    async def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise _unauthorized(tr("The bearer token is not a JWT.")) from exc
        kid = header.get("kid", "")
        if kid not in self._keys or time.monotonic() - self._fetched_at > self.cache_seconds:
            try:
                await self._refresh()
            except (httpx.HTTPError, jwt.PyJWTError) as exc:
                log.warning("the issuer's keys cannot be fetched", url=self.jwks_url, error=repr(exc)[:300])
                raise Problem(
                    503,
                    tr("Sign-in unavailable"),
                    tr("Signing in cannot be checked for now; try again in a moment."),
                    "unavailable",
                    headers={"Retry-After": "5"},
                ) from exc
        key = self._keys.get(kid)
        if key is None:
            raise _unauthorized(tr("The token was signed with an unknown key."))
        try:
            claims = jwt.decode(
                token, key=key, algorithms=["RS256", "ES256"], audience=self.audience, issuer=self.issuer
            )
        except jwt.ExpiredSignatureError as exc:
            raise _unauthorized(tr("The token has expired: sign in again.")) from exc
        except jwt.PyJWTError as exc:
            raise _unauthorized(
                tr("The token is not valid (%(reason)s): sign in again.", reason=type(exc).__name__)
            ) from exc
        return Principal(
            subject=str(claims.get("sub", "")),
            roles=frozenset(claims.get("roles", [])),
            locations=frozenset(claims.get("locations", [])),
        )


def _unauthorized(detail: str) -> Problem:
    return Problem(401, tr("Unauthorized"), detail, "unauthorized", headers={"WWW-Authenticate": "Bearer"})


async def current_principal(request: Request) -> Principal:
    verifier: JwtVerifier = request.app.state.jwt_verifier
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise _unauthorized(tr("Sign in: this endpoint needs a bearer token."))
    return await verifier.verify(token.strip())


def require_role(*roles: str) -> Any:
    async def dependency(principal: Annotated[Principal, Depends(current_principal)]) -> Principal:
        if not principal.roles & set(roles):
            needed = tr("This needs one of these roles: %(roles)s.", roles=", ".join(roles))
            raise Problem(403, tr("Forbidden"), needed, "forbidden")
        return principal

    return Depends(dependency)
