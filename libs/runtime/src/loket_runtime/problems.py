"""RFC 9457 problem details: every error the API returns is application/problem+json.

The `type` URI is the machine contract and never changes with the language; `title`, `detail`
and each `errors[].message` are `Text`s (`loket_runtime.i18n.tr`), rendered in the language of
the request (`answer_language`) and named by the answer's `Content-Language`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import asyncpg
from aiokafka import errors as kafka_errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from loket_runtime.i18n import LANGUAGES, SOURCE_LANGUAGE, Text, answer_language, in_language, prefer_language, tr
from loket_runtime.logging import get_logger
from loket_runtime.outbox import PayloadTooLarge

log = get_logger(__name__)

PROBLEM_BASE = "https://loket.gent/problems/"

# A part the request needs is down (PostgreSQL, Kafka, the network): the answer is 503 with
# Retry-After, never a 500 (issue 15). `OSError` covers refused connections and timeouts.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,  # a pooled connection the server dropped ("cannot switch to state")
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.TooManyConnectionsError,
    kafka_errors.KafkaConnectionError,
    kafka_errors.KafkaTimeoutError,
    kafka_errors.NoBrokersAvailable,
    kafka_errors.RequestTimedOutError,
    OSError,
)
RETRY_AFTER_SECONDS = 5


class Problem(Exception):
    """Raise anywhere in a request; rendered as problem+json with any extra members.

    `title`, `detail` and the `message` of each `errors` item are `Text`s (`tr(...)`), given in the
    request's language; a plain `str` is shown as it is. `detail` None: the errors, one
    "field: message" each. `errors` items are `{"field": "person.birth_date", "message": Text}`."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str | None,
        type_: str = "about:blank",
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        self.status = status
        self.title = title
        self.errors = errors
        self.detail: str = detail if detail is not None else errors_detail(errors or [])
        super().__init__(self.detail)
        self.type = type_ if type_ == "about:blank" or "://" in type_ else PROBLEM_BASE + type_
        self.headers = headers
        self.extra = extra

    def body(self, language: str = SOURCE_LANGUAGE) -> dict[str, Any]:
        """The problem+json document in `language` (one of `i18n.LANGUAGES`)."""
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        rendered: dict[str, Any] = in_language(body, language)
        return rendered


def errors_detail(errors: list[dict[str, str]]) -> Text:
    """The `detail` of a problem that lists field errors: "field: message; field: message"."""
    parts = [tr("%(field)s: %(message)s", field=e["field"], message=e["message"]) for e in errors]
    if not parts:
        return tr("The request is not valid.")
    detail = parts[0]
    for part in parts[1:]:
        detail = tr("%(first)s; %(next)s", first=detail, next=part)
    return detail


def field_problem(field: str, message: str, title: str | None = None) -> Problem:
    """A 422 naming one field, e.g. field_problem("person.national_number", tr("must be 11 digits"))."""
    return Problem(
        422, title or tr("Invalid request"), None, "validation", errors=[{"field": field, "message": message}]
    )


def too_large(size: int | None, limit: int, what: str | None = None) -> Problem:
    """413: a body (or what it would make, `what`) larger than the service accepts."""
    what = what or tr("The request body")
    if size is not None:
        detail = tr(
            "%(what)s is %(size)s bytes; at most %(limit)s bytes are accepted.", what=what, size=size, limit=limit
        )
    else:
        detail = tr("%(what)s is too large; at most %(limit)s bytes are accepted.", what=what, limit=limit)
    return Problem(413, tr("Payload too large"), detail, "payload-too-large", limit=limit)


def unavailable(retry_after: int = RETRY_AFTER_SECONDS) -> Problem:
    """503: the database or Kafka is unreachable. A change may or may not have been made: repeat a
    POST with the same `Idempotency-Key` (the booking API answers the repeat with what was done)."""
    return Problem(
        503,
        tr("Service unavailable"),
        tr(
            "A part this request needs (database or message broker) is unreachable for now. Try again after"
            " %(seconds)s seconds; repeat a POST with the same Idempotency-Key, so that it is done once.",
            seconds=retry_after,
        ),
        "unavailable",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def problem_response(problem: Problem, connection: HTTPConnection) -> JSONResponse:
    """The answer to the request of `connection`, in its language (`i18n.answer_language`)."""
    language = answer_language(connection)
    headers = {**(problem.headers or {}), "Content-Language": language}
    return JSONResponse(
        problem.body(language), status_code=problem.status, media_type="application/problem+json", headers=headers
    )


# Pydantic's errors by type, as a resident reads them next to the field (the context's values fill
# the placeholders); a type not listed here reads "is not a valid value".
VALIDATION_MESSAGES: dict[str, Text] = {
    "missing": tr("is required"),
    "extra_forbidden": tr("is not a field this request takes"),
    "string_type": tr("must be text"),
    "string_too_short": tr("must be at least %(min_length)s characters long"),
    "string_too_long": tr("must be at most %(max_length)s characters long"),
    "string_pattern_mismatch": tr("does not have the expected form"),
    "int_type": tr("must be a whole number"),
    "int_parsing": tr("must be a whole number"),
    "int_from_float": tr("must be a whole number"),
    "float_type": tr("must be a number"),
    "float_parsing": tr("must be a number"),
    "bool_type": tr("must be true or false"),
    "bool_parsing": tr("must be true or false"),
    "greater_than": tr("must be greater than %(gt)s"),
    "greater_than_equal": tr("must be at least %(ge)s"),
    "less_than": tr("must be less than %(lt)s"),
    "less_than_equal": tr("must be at most %(le)s"),
    "date_type": tr("must be a date, e.g. 2026-12-01"),
    "date_parsing": tr("must be a date, e.g. 2026-12-01"),
    "date_from_datetime_parsing": tr("must be a date, e.g. 2026-12-01"),
    "date_from_datetime_inexact": tr("must be a date, e.g. 2026-12-01"),
    "datetime_type": tr("must be a date and time, e.g. 2026-12-01T09:00:00+01:00"),
    "datetime_parsing": tr("must be a date and time, e.g. 2026-12-01T09:00:00+01:00"),
    "datetime_from_date_parsing": tr("must be a date and time, e.g. 2026-12-01T09:00:00+01:00"),
    "timezone_aware": tr("give the time with its offset, e.g. 2026-12-01T09:00:00+01:00"),
    "literal_error": tr("must be one of %(expected)s"),
    "enum": tr("must be one of %(expected)s"),
    "json_invalid": tr("is not valid JSON"),
    "json_type": tr("is not valid JSON"),
    "dict_type": tr("must be an object"),
    "model_type": tr("must be an object"),
    "model_attributes_type": tr("must be an object"),
    "list_type": tr("must be a list"),
    "too_short": tr("must have at least %(min_length)s items"),
    "too_long": tr("must have at most %(max_length)s items"),
    "uuid_type": tr("must be a UUID"),
    "uuid_parsing": tr("must be a UUID"),
}


def validation_message(error: Mapping[str, Any]) -> Text:
    """One pydantic error as a `Text`: a validator's own `ValueError(tr(...))` as it was raised,
    else the message of its type with the context's values put in."""
    context = error.get("ctx") or {}
    raised = context.get("error")
    if isinstance(raised, ValueError) and raised.args and isinstance(raised.args[0], Text):
        return raised.args[0]
    known = VALIDATION_MESSAGES.get(str(error.get("type")))
    if known is None:
        return tr("is not a valid value")
    return Text(known.msgid, {name: context.get(name, "") for name in PLACEHOLDERS.findall(known.msgid)})


PLACEHOLDERS = re.compile(r"%\((\w+)\)s")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        body = exc.body
        if isinstance(body, dict) and body.get("language") in LANGUAGES:
            # A body that says its language (a booking's) is answered in it when the request asks none.
            prefer_language(request, body["language"])
        errors: list[dict[str, str]] = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path", "header")]
            errors.append({"field": ".".join(loc) or "body", "message": validation_message(err)})
        return problem_response(Problem(422, tr("Invalid request"), None, "validation", errors=errors), request)

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(request: Request, exc: PayloadTooLarge) -> JSONResponse:
        # `exc.what` names the event type, which says nothing to the person asking: logged, not shown.
        log.warning("an event this request makes is too large", what=exc.what, size=exc.size, limit=exc.limit)
        return problem_response(too_large(exc.size, exc.limit, tr("The event this request makes")), request)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("a part is unavailable", path=request.url.path, method=request.method, error=repr(exc)[:500])
        return problem_response(unavailable(), request)

    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _unavailable)

    # What the framework itself answers (no such route, a method the route does not take).
    http_problems = {
        401: (tr("Unauthorized"), tr("Sign in: this endpoint needs a bearer token.")),
        403: (tr("Forbidden"), tr("You may not do this.")),
        404: (tr("Not found"), tr("There is nothing at this address.")),
        405: (tr("Method not allowed"), tr("This address does not take this method.")),
        413: (tr("Payload too large"), tr("The request body is too large.")),
    }

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        title, detail = http_problems.get(exc.status_code, (tr("Error"), tr("The request cannot be answered.")))
        return problem_response(
            Problem(exc.status_code, title, detail, headers=dict(exc.headers) if exc.headers else None), request
        )
