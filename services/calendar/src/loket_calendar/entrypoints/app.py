"""Calendar service: allocator, hold timer, agenda projection, availability and agenda APIs."""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qsl

from aiokafka import TopicPartition
from fastapi import FastAPI, Header, Query, Request, Response
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from loket_calendar.application.agenda import AGENDA_CHANNEL, AgendaProjection, agenda_rows
from loket_calendar.application.allocator import RESERVATIONS_CHANNEL, Allocator, AllocatorPolicy
from loket_calendar.application.availability import VIEWS, Answer, AnswerKey, AvailabilityCache, View
from loket_calendar.application.ops import AGENDA_GROUP, DEAD_LETTER_GROUP, DeadLetterCollector
from loket_calendar.application.stranding import STRANDING_GROUP, StrandingSweep, dry_run, stranded_out
from loket_calendar.domain.schedule import BRUSSELS, CatalogueView
from loket_calendar.entrypoints.ops import build_router
from loket_contracts import events as ev
from loket_contracts.events import EVENT_TYPES
from loket_contracts.topics import BOOKINGS, CALENDAR, CATALOGUE, DEAD_LETTERS
from loket_runtime import clock
from loket_runtime.auth import Principal, require_role
from loket_runtime.catalogue import CATALOGUE_VIEW_GROUP
from loket_runtime.db import connect
from loket_runtime.i18n import tr
from loket_runtime.inputs import Day
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem
from loket_runtime.service import HTTP_LATENCY, HTTP_REQUESTS, ServiceRuntime, create_app
from loket_runtime.settings import ServiceSettings

MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
log = get_logger(__name__)


class CalendarSettings(ServiceSettings):
    service_name: str = "calendar"
    http_port: int = 8103
    database_url: str = "postgresql://postgres@127.0.0.1:5433/loket_calendar"
    release_holdback_seconds: float = 0
    hold_grace_seconds: float = 30
    hold_check_seconds: float = 1.0
    max_availability_days: int = 92
    # What this process does besides the HTTP API, comma-separated: "allocator" (decisions and
    # the hold timer) and "projections" (the agenda, dead letters). The local stack runs the
    # allocator in a process of its own, so projections never slow decisions down.
    roles: str = "allocator,projections"
    # The allocator's batches may be larger than other consumers': its cost per batch (the read of
    # what the batch touches, a few writes) is spread over more decisions when a storm queues up.
    # Without a backlog a batch is whatever arrived meanwhile, so this adds no latency then.
    allocator_batch_size: int = 2000
    allocator_cache_seconds: float = 30
    availability_cache_seconds: float = 30
    # Shared with the catalogue, which asks `POST /internal/strandings` before a change.
    internal_token: str = "local-internal-token"

    def role_set(self) -> set[str]:
        roles = {r.strip() for r in self.roles.split(",") if r.strip()}
        unknown = roles - {"allocator", "projections"}
        if unknown:
            raise ValueError(f"LOKET_ROLES: unknown role(s) {', '.join(sorted(unknown))}")
        return roles


class ChangeIn(BaseModel):
    type: str
    data: dict[str, object]


class StrandingsIn(BaseModel):
    changes: list[ChangeIn]
    action: str = "refuse"


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    location: str | None = None


class AvailabilityOut(BaseModel):
    product: str
    location: str | None
    slots: list[SlotOut]


class DayOut(BaseModel):
    date: date
    free: int  # free starts that day
    locations: dict[str, int] | None = None  # per location with some, when no location was asked for


class AvailabilityDaysOut(BaseModel):
    """`view=days`: every day of the range with its number of free starts."""

    product: str
    location: str | None
    days: list[DayOut]


def brussels(instant: datetime) -> str:
    return instant.astimezone(BRUSSELS).isoformat()


# --- availability as bytes ---------------------------------------------------------------------

AVAILABILITY_PATH = "/api/v1/availability"
# The answer changes the moment a booking is decided: browsers and shared caches may keep it but
# must ask again each time (a 304 when nothing changed), never show it on their own.
CACHE_CONTROL = b"public, no-cache"
_accepts_gzip: dict[str, bool] = {}


def accepts_gzip(accept_encoding: str) -> bool:
    """RFC 9110 12.5.3: gzip (or *) listed without q=0."""
    known = _accepts_gzip.get(accept_encoding)
    if known is not None:
        return known
    weights: dict[str, float] = {}
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[coding.strip()] = q
    found = weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0
    if len(_accepts_gzip) < 256:  # browsers send a handful of distinct values
        _accepts_gzip[accept_encoding] = found
    return found


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """If-None-Match uses the weak comparison (RFC 9110 13.1.2)."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == opaque for tag in if_none_match.split(","))


def render_answer(
    answer: Answer, accept_encoding: str, if_none_match: str | None
) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Status, raw headers and body of an availability answer for this client."""
    headers = [
        (b"content-type", b"application/json"),
        (b"vary", b"Accept-Encoding"),
        (b"etag", answer.etag.encode()),
        (b"cache-control", CACHE_CONTROL),
    ]
    if etag_matches(if_none_match, answer.etag):
        return 304, headers, b""
    if accepts_gzip(accept_encoding):
        body = answer.gzip
        headers.append((b"content-encoding", b"gzip"))
    else:
        body = answer.body
    headers.append((b"content-length", str(len(body)).encode()))
    return 200, headers, body


class AvailabilityFastPath:
    """Pure ASGI: `GET /api/v1/availability` with an answer already made is written straight away,
    before FastAPI's routing, validation and the runtime's BaseHTTPMiddleware (which together cost
    more than half the time of such a request). Everything else, every miss and every query in an
    unusual form goes on to the app, which validates, builds and keeps the answer."""

    def __init__(self, app: ASGIApp, cache: AvailabilityCache, service: str) -> None:
        self.app = app
        self.cache = cache
        self.latency = HTTP_LATENCY.labels(service, "GET")
        self.requests = {status: HTTP_REQUESTS.labels(service, "GET", str(status)) for status in (200, 304)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == AVAILABILITY_PATH and scope["method"] == "GET":
            started = time.perf_counter()
            key = answer_key(scope["query_string"])
            answer = self.cache.fresh_answer(key) if key is not None else None
            if answer is not None:
                accept_encoding, if_none_match = "", None
                for name, value in scope["headers"]:
                    if name == b"accept-encoding":
                        accept_encoding = value.decode("latin-1")
                    elif name == b"if-none-match":
                        if_none_match = value.decode("latin-1")
                status, headers, body = render_answer(answer, accept_encoding, if_none_match)
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                self.latency.observe(time.perf_counter() - started)
                self.requests[status].inc()
                return
        await self.app(scope, receive, send)


_QUERY_NAMES = {"product", "location", "from", "to", "view"}


def answer_key(query_string: bytes) -> AnswerKey | None:
    """The cache key of a query given as the route's slow path would read it, or None to let it decide."""
    try:
        pairs = parse_qsl(query_string.decode("latin-1"), strict_parsing=True)
    except ValueError:
        return None
    params = dict(pairs)
    if len(params) != len(pairs) or not params.keys() <= _QUERY_NAMES:
        return None
    product, first, last = params.get("product"), params.get("from"), params.get("to")
    view = params.get("view", "slots")
    if product is None or first is None or last is None or view not in VIEWS:
        return None
    return (product, params.get("location"), first, last, view)


def build_app(settings: CalendarSettings | None = None) -> FastAPI:
    settings = settings or CalendarSettings()
    runtime = ServiceRuntime(settings, MIGRATIONS)
    view = CatalogueView()
    roles = settings.role_set()
    policy = AllocatorPolicy(release_holdback=timedelta(seconds=settings.release_holdback_seconds))
    # Changes by any allocator reach every process by NOTIFY, and a hold running out or a held-back
    # desk-time coming back makes the free starts it touches stale at that instant: the TTL is a
    # safety net. A process that only decides uses the cache for rejections' alternatives alone.
    cache_seconds = settings.allocator_cache_seconds if roles == {"allocator"} else settings.availability_cache_seconds
    allocator = Allocator(view, policy, AvailabilityCache(view, ttl_seconds=cache_seconds))
    agenda = AgendaProjection()
    listeners: set[asyncio.Queue[str]] = set()

    runtime.keep_catalogue_view(view)
    if "allocator" in roles:
        runtime.consume(
            "calendar-allocator",
            [BOOKINGS.name],
            allocator.handlers(),
            before_batch=allocator.before_batch,
            before_commit=allocator.before_commit,
            batch_size=settings.allocator_batch_size,
        )

        def view_position(topic: str, partition: int) -> int | None:
            """Where this process's catalogue view stands on a partition (its consumer's positions)."""
            for consumer in runtime.consumers:
                positions = getattr(consumer, "positions", None)
                if getattr(consumer, "group_id", None) == CATALOGUE_VIEW_GROUP and isinstance(positions, dict):
                    return int(positions.get(TopicPartition(topic, partition), 0))
            return None

        sweep = StrandingSweep(allocator, view_position)
        runtime.consume(STRANDING_GROUP, [CATALOGUE.name], sweep.handlers(), before_batch=sweep.before_batch)
    if "projections" in roles:
        runtime.consume(
            AGENDA_GROUP, [BOOKINGS.name, CALENDAR.name], agenda.handlers(), before_commit=agenda.before_commit
        )
        runtime.add_consumer(
            lambda pool: DeadLetterCollector(
                pool=pool,
                bootstrap=settings.kafka_bootstrap,
                group_id=DEAD_LETTER_GROUP,
                topics=[DEAD_LETTERS.name],
                handlers={},
                batch_size=settings.consumer_batch_size,
            )
        )

    async def hold_timer(rt: ServiceRuntime) -> None:
        while True:
            expired = await allocator.expire_holds(rt.pool, clock.now(), timedelta(seconds=settings.hold_grace_seconds))
            if expired:
                log.info("holds expired", count=expired)
            await asyncio.sleep(settings.hold_check_seconds)

    async def notification_listener(rt: ServiceRuntime) -> None:
        """Agenda changes for the SSE streams, and reservation changes committed by an allocator
        (in this process or another) for the availability cache."""
        # A connection of its own, not the pool's: a LISTEN must not travel with a pooled connection.
        conn = await connect(settings.database_url)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda *_: lost.set())
            await conn.add_listener(AGENDA_CHANNEL, lambda *args: [q.put_nowait(args[3]) for q in listeners])
            await conn.add_listener(RESERVATIONS_CHANNEL, lambda *args: allocator.cache.invalidate(args[3]))
            # Changes committed before the LISTEN took effect are not announced: start afresh.
            allocator.cache.invalidate_all()
            await lost.wait()
            raise ConnectionError("listener lost its connection")  # the runtime restarts this task
        finally:
            await conn.close()

    if "allocator" in roles:
        runtime.add_task(hold_timer)
    runtime.add_task(notification_listener)
    app = create_app(runtime, "Loket calendar", openapi_url="/openapi.json")
    app.state.view = view
    app.include_router(build_router(runtime))

    @app.post("/internal/strandings", include_in_schema=False)
    async def strandings(body: StrandingsIn, x_internal_token: Annotated[str, Header()] = "") -> dict[str, object]:
        """For the catalogue: the active bookings these catalogue changes would leave outside the
        catalogue, and where each could move (a dry run on a copy of the view; writes nothing)."""
        if not hmac.compare_digest(x_internal_token.encode(), settings.internal_token.encode()):
            raise Problem(404, tr("Not found"), tr("There is nothing at this address."))
        changes = []
        for change in body.changes:
            model = EVENT_TYPES.get(change.type)
            if model is None:
                raise field_problem("changes", tr("unknown event type %(type)r", type=change.type))
            changes.append(model.model_validate(change.data))
        found = await dry_run(runtime.pool, view, changes, clock.now())
        return {"bookings": stranded_out(found, body.action)}

    @app.get(
        "/api/v1/availability",
        tags=["availability"],
        summary="Free start times for a product, at one location or all",
        description=(
            "`view=slots` (the default): every free start. `view=days`: every day of the range with its"
            " number of free starts (a few KB for a calendar page; a day's starts then with from = to ="
            " that day). gzip when the client accepts it; a weak ETag, and 304 for a matching If-None-Match."
        ),
        response_class=Response,
        responses={
            200: {
                "model": AvailabilityOut | AvailabilityDaysOut,
                "description": "the free starts (`view=slots`) or their number per day (`view=days`)",
            },
            304: {"description": "not modified since the ETag given in If-None-Match"},
        },
    )
    async def availability(
        request: Request,
        product: str,
        from_: Annotated[Day, Query(alias="from")],
        to: Day,
        location: str | None = None,
        answer_view: Annotated[
            View,
            Query(
                alias="view",
                description="`slots`: every free start; `days`: per day the number of free starts",
            ),
        ] = "slots",
    ) -> Response:
        if product not in view.products:
            raise field_problem("product", tr("unknown product %(product)r", product=product))
        if location is not None and location not in view.locations:
            raise field_problem("location", tr("unknown location %(location)r", location=location))
        if to < from_:
            raise field_problem("to", tr("must not be before from"))
        if (to - from_).days >= settings.max_availability_days:
            raise field_problem("to", tr("ask for at most %(days)s days at once", days=settings.max_availability_days))
        locations = (
            [location]
            if location
            else sorted(loc.location_id for loc in view.locations.values() if product in loc.products)
        )
        answer = await allocator.cache.answer(
            runtime.pool, product, location, locations, from_, to, clock.now(), answer_view
        )
        status, headers, body = render_answer(
            answer, request.headers.get("accept-encoding", ""), request.headers.get("if-none-match")
        )
        # Bytes as they are: no response model, no second validation of thousands of slots.
        response = Response(body, status_code=status)
        response.raw_headers = headers
        return response

    # Outside every other middleware: an answer already made goes out without FastAPI.
    app.add_middleware(AvailabilityFastPath, cache=allocator.cache, service=settings.service_name)

    @app.get("/api/v1/agenda/{location}", tags=["agenda"], summary="The agenda of a counter for one day")
    async def get_agenda(
        location: str,
        principal: Annotated[Principal, require_role("staff", "ops", "admin")],
        date_: Annotated[Day, Query(alias="date")],
        as_of: datetime | None = None,
    ) -> dict[str, object]:
        if location not in view.locations:
            raise Problem(404, tr("Not found"), tr("No location %(location)r.", location=location))
        principal.require_location(location)
        if as_of is not None and as_of.tzinfo is None:
            raise field_problem("as_of", tr("give an instant with its offset, e.g. 2026-12-01T10:00:00+01:00"))
        rows = await agenda_rows(runtime.pool, location, date_, as_of)
        desks: dict[str, list[dict[str, object]]] = {
            d.desk_id: [] for d in sorted(view.desks.values(), key=lambda d: d.desk_id) if d.location_id == location
        }
        for row in rows:
            desks.setdefault(row.get("desk_id") or "unassigned", []).append(
                {
                    "booking": row["booking_id"],
                    "start": brussels(row["start_at"]),
                    "end": brussels(row["end_at"]),
                    "product": row["product_id"],
                    "status": row["status"],
                    "person": {"given_name": row.get("given_name"), "family_name": row.get("family_name")},
                }
            )
        return {
            "location": location,
            "date": date_.isoformat(),
            "as_of": brussels(as_of or clock.now()),
            "desks": [{"desk": desk, "appointments": appts} for desk, appts in desks.items()],
        }

    @app.get(
        "/api/v1/agenda/{location}/stream",
        tags=["agenda"],
        summary="Server-Sent Events: one `agenda-changed` event per change at the location",
    )
    async def agenda_stream(
        location: str,
        request: Request,
        principal: Annotated[Principal, require_role("staff", "ops", "admin")],
    ) -> EventSourceResponse:
        if location not in view.locations:
            raise Problem(404, tr("Not found"), tr("No location %(location)r.", location=location))
        principal.require_location(location)
        queue: asyncio.Queue[str] = asyncio.Queue()
        listeners.add(queue)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "ready", "data": json.dumps({"location": location})}
                while True:
                    notice = json.loads(await queue.get())
                    if notice.get("rebuilt") or notice.get("location") == location:
                        notice |= {"location": location, "at": clock.now().isoformat()}
                        yield {"event": "agenda-changed", "data": json.dumps(notice)}
            finally:
                listeners.discard(queue)

        return EventSourceResponse(events(), ping=15)

    return app


__all__ = ["build_app", "ev"]
