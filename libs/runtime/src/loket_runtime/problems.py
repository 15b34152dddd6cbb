"""RFC 9457 problem details: every error the API returns is application/problem+json."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiokafka import errors as kafka_errors
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    """Raise anywhere in a request; rendered as problem+json with any extra members."""

    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        type_: str = "about:blank",
        errors: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail
        self.type = type_ if type_ == "about:blank" or "://" in type_ else PROBLEM_BASE + type_
        self.errors = errors
        self.headers = headers
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "title": self.title, "status": self.status, "detail": self.detail}
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body


def field_problem(field: str, message: str, title: str = "Invalid request") -> Problem:
    """A 422 naming one field, e.g. field_problem("person.national_number", "checksum does not match")."""
    return Problem(422, title, f"{field}: {message}", "validation", errors=[{"field": field, "message": message}])


def too_large(size: int | None, limit: int, what: str = "The request body") -> Problem:
    """413: a body (or what it would make) larger than the service accepts."""
    amount = f" is {size} bytes;" if size is not None else " is too large;"
    return Problem(
        413,
        "Payload too large",
        f"{what}{amount} at most {limit} bytes are accepted.",
        "payload-too-large",
        limit=limit,
    )


def unavailable(retry_after: int = RETRY_AFTER_SECONDS) -> Problem:
    """503: the database or Kafka is unreachable. A change may or may not have been made: repeat a
    POST with the same `Idempotency-Key` (the booking API answers the repeat with what was done)."""
    return Problem(
        503,
        "Service unavailable",
        "A part this request needs (database or message broker) is unreachable for now. Try again after"
        f" {retry_after} seconds; repeat a POST with the same Idempotency-Key, so that it is done once.",
        "unavailable",
        headers={"Retry-After": str(retry_after)},
        retry_after=retry_after,
    )


def problem_response(problem: Problem) -> JSONResponse:
    return JSONResponse(
        problem.body(), status_code=problem.status, media_type="application/problem+json", headers=problem.headers
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for err in exc.errors():
            loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path", "header")]
            errors.append({"field": ".".join(loc) or "body", "message": str(err.get("msg", "invalid"))})
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return problem_response(Problem(422, "Invalid request", detail, "validation", errors=errors))

    @app.exception_handler(PayloadTooLarge)
    async def _too_large(_: Request, exc: PayloadTooLarge) -> JSONResponse:
        return problem_response(too_large(exc.size, exc.limit, f"The {exc.what} this request makes"))

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("a part is unavailable", path=request.url.path, method=request.method, error=repr(exc)[:500])
        return problem_response(unavailable())

    for error in UNAVAILABLE_ERRORS:
        app.add_exception_handler(error, _unavailable)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        titles = {
            401: "Unauthorized",
            403: "Forbidden",
            404: "Not found",
            405: "Method not allowed",
            413: "Payload too large",
        }
        return problem_response(
            Problem(
                exc.status_code,
                titles.get(exc.status_code, "Error"),
                str(exc.detail),
                headers=dict(exc.headers) if exc.headers else None,
            )
        )
