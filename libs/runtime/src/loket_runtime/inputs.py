"""Inputs no service can keep or show are refused where they enter, with a 422 naming the field,
never a 5xx from deep inside (PostgreSQL refusing a NUL, a date arithmetic overflow).

- `RefuseUnstorableText` (installed by `service.create_app` in every service): a NUL, another
  control character than tab, line feed and carriage return, or a lone surrogate (no UTF-8 has
  it) in a query parameter, the path, or any string or key of a JSON body is refused before a
  route sees it. One place for every text field of every API, declared or added later.
- `Day`: a date inside the calendar every service computes with (`MIN_DAY`..`MAX_DAY`); a day
  and its neighbours, in any time zone, stay representable.
- `RowId`: a path or query id that fits a PostgreSQL bigint.
- Last resort (`install_input_guards`): a value the database still refuses as data (class 22:
  out of range, untranslatable character) or a date arithmetic overflow answers 422, not 500.
"""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qsl

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from loket_runtime.i18n import Text, tr
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem, problem_response

log = get_logger(__name__)

MIN_DAY = date(1900, 1, 1)
MAX_DAY = date(2999, 12, 31)
BIGINT_MAX = 2**63 - 1

# NUL and the C0 controls but tab, LF and CR; DEL; lone surrogates (from JSON "\ud800" escapes).
UNSTORABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def unstorable(text: str) -> Text | None:
    """Why `text` cannot be stored or shown (the first offending character), or None."""
    found = UNSTORABLE.search(text)
    if found is None:
        return None
    return tr("contains a character that cannot be stored or shown (U+%(code)s)", code=f"{ord(found[0]):04X}")


def _within_calendar(day: date) -> date:
    if not MIN_DAY <= day <= MAX_DAY:
        raise ValueError(
            tr("must be between %(first)s and %(last)s", first=MIN_DAY.isoformat(), last=MAX_DAY.isoformat())
        )
    return day


Day = Annotated[date, AfterValidator(_within_calendar)]
RowId = Annotated[int, Field(ge=0, le=BIGINT_MAX)]


def _first_unstorable(value: Any, path: list[str]) -> tuple[str, str] | None:
    """(field, message) of the first string or key of a JSON value that cannot be stored."""
    if isinstance(value, str):
        reason = unstorable(value)
        return (".".join(path) or "body", reason) if reason else None
    if isinstance(value, dict):
        for key, item in value.items():
            reason = unstorable(key)
            if reason:
                return (".".join(path) or "body", tr("a member's name %(reason)s", reason=reason))
            found = _first_unstorable(item, [*path, key])
            if found:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _first_unstorable(item, [*path, str(index)])
            if found:
                return found
    return None


class RefuseUnstorableText:
    """Plain ASGI: a query, path or JSON body carrying text that cannot be stored is answered 422
    (problem+json naming the field). Bodies are already bounded by `LimitBody` outside it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = self._in_url(scope)
        if found is not None:
            await problem_response(field_problem(*found), Request(scope))(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        content_type = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()
        if content_type and "json" not in content_type:
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = b""
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        found = self._in_body(body)
        if found is not None:
            await problem_response(field_problem(*found), Request(scope))(scope, receive, send)
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _in_url(scope: Scope) -> tuple[str, str] | None:
        # As Starlette reads it: latin-1, then percent-escapes as UTF-8 (an invalid one becomes U+FFFD).
        for name, value in parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            reason = unstorable(name)
            if reason:
                return ("query", tr("a parameter's name %(reason)s", reason=reason))
            reason = unstorable(value)
            if reason:
                return (name, reason)
        path = scope.get("path", "")
        reason = unstorable(path)
        return ("path", reason) if reason else None

    @staticmethod
    def _in_body(body: bytes) -> tuple[str, str] | None:
        if not body:
            return None
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return None  # not JSON: the route's own validation answers
        try:
            return _first_unstorable(document, [])
        except RecursionError:
            return ("body", tr("is nested too deeply"))


def install_input_guards(app: FastAPI) -> None:
    """The middleware above, and the last-resort 422 for data the database or date arithmetic refuses."""
    app.add_middleware(RefuseUnstorableText)

    async def _refused_data(request: Request, exc: Exception) -> JSONResponse:
        # What the database or Python says is for the log; the person asking reads that a value cannot be used.
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        log.info("a value was refused as data", path=request.url.path, error=message[:300])
        problem = Problem(422, tr("Invalid request"), tr("A value in this request cannot be used."), "validation")
        return problem_response(problem, request)

    app.add_exception_handler(asyncpg.DataError, _refused_data)
    app.add_exception_handler(OverflowError, _refused_data)
