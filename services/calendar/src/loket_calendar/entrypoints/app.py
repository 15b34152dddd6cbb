"""Calendar service: allocator, hold timer, agenda projection, availability and agenda APIs."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated

import orjson
from fastapi import FastAPI, Query, Request, Response
from pydantic import BaseModel
from sse_starlette.sse import EventSourceResponse

from loket_calendar.application.agenda import AGENDA_CHANNEL, AgendaProjection, agenda_rows
from loket_calendar.application.allocator import Allocator, AllocatorPolicy
from loket_calendar.application.ops import AGENDA_GROUP, DEAD_LETTER_GROUP, DeadLetterCollector
from loket_calendar.domain.schedule import BRUSSELS, CatalogueView
from loket_calendar.entrypoints.ops import build_router
from loket_contracts import events as ev
from loket_contracts.topics import BOOKINGS, CALENDAR, DEAD_LETTERS
from loket_runtime.auth import Principal, require_role
from loket_runtime.db import connect
from loket_runtime.logging import get_logger
from loket_runtime.problems import Problem, field_problem
from loket_runtime.service import ServiceRuntime, create_app
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


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    location: str | None = None


class AvailabilityOut(BaseModel):
    product: str
    location: str | None
    slots: list[SlotOut]


def brussels(instant: datetime) -> str:
    return instant.astimezone(BRUSSELS).isoformat()


def build_app(settings: CalendarSettings | None = None) -> FastAPI:
    settings = settings or CalendarSettings()
    runtime = ServiceRuntime(settings, MIGRATIONS)
    view = CatalogueView()
    allocator = Allocator(view, AllocatorPolicy(release_holdback=timedelta(seconds=settings.release_holdback_seconds)))
    agenda = AgendaProjection()
    listeners: set[asyncio.Queue[str]] = set()

    runtime.keep_catalogue_view(view)
    runtime.consume("calendar-allocator", [BOOKINGS.name], allocator.handlers())
    runtime.consume(AGENDA_GROUP, [BOOKINGS.name, CALENDAR.name], agenda.handlers(), before_commit=agenda.before_commit)
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
            expired = await allocator.expire_holds(
                rt.pool, datetime.now(UTC), timedelta(seconds=settings.hold_grace_seconds)
            )
            if expired:
                log.info("holds expired", count=expired)
            await asyncio.sleep(settings.hold_check_seconds)

    async def agenda_listener(rt: ServiceRuntime) -> None:
        # A connection of its own, not the pool's: a LISTEN must not travel with a pooled connection.
        conn = await connect(settings.database_url)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda *_: lost.set())
            await conn.add_listener(AGENDA_CHANNEL, lambda *args: [q.put_nowait(args[3]) for q in listeners])
            await lost.wait()
            raise ConnectionError("agenda listener lost its connection")  # the runtime restarts this task
        finally:
            await conn.close()

    runtime.add_task(hold_timer)
    runtime.add_task(agenda_listener)
    app = create_app(runtime, "Loket calendar", openapi_url="/openapi.json")
    app.state.view = view
    app.include_router(build_router(runtime))

    @app.get(
        "/api/v1/availability",
        response_model=AvailabilityOut,
        tags=["availability"],
        summary="Free start times for a product, at one location or all",
    )
    async def availability(
        product: str,
        from_: Annotated[date, Query(alias="from")],
        to: date,
        location: str | None = None,
    ) -> Response:
        if product not in view.products:
            raise field_problem("product", f"unknown product {product!r}")
        if location is not None and location not in view.locations:
            raise field_problem("location", f"unknown location {location!r}")
        if to < from_:
            raise field_problem("to", "must not be before from")
        if (to - from_).days >= settings.max_availability_days:
            raise field_problem("to", f"ask for at most {settings.max_availability_days} days at once")
        locations = (
            [location]
            if location
            else sorted(loc.location_id for loc in view.locations.values() if product in loc.products)
        )
        cache = allocator.cache
        key = (product, location, from_, to)
        cached = cache.cached_answer(key, locations)
        if cached is not None:
            return Response(cached, media_type="application/json")
        versions = cache.versions(locations)  # before reading: a change meanwhile makes the answer stale
        now = datetime.now(UTC)
        days = [from_ + timedelta(days=n) for n in range((to - from_).days + 1)]
        free = await cache.free(runtime.pool, product, locations, days, now)
        slots: list[dict[str, str]] = []
        for day in days:
            for loc in locations:
                for s in free[(loc, day)]:
                    slots.append(
                        {"start": s.start_text, "end": s.end_text}
                        if location
                        else {"start": s.start_text, "end": s.end_text, "location": loc}
                    )
        # Serialised directly: thousands of slots need no second validation pass.
        body = orjson.dumps({"product": product, "location": location, "slots": slots})
        cache.keep_answer(key, locations, versions, body)
        return Response(body, media_type="application/json")

    @app.get("/api/v1/agenda/{location}", tags=["agenda"], summary="The agenda of a counter for one day")
    async def get_agenda(
        location: str,
        principal: Annotated[Principal, require_role("staff", "ops", "admin")],
        date_: Annotated[date, Query(alias="date")],
        as_of: datetime | None = None,
    ) -> dict[str, object]:
        if location not in view.locations:
            raise Problem(404, "Not found", f"No location {location!r}.")
        principal.require_location(location)
        if as_of is not None and as_of.tzinfo is None:
            raise field_problem("as_of", "give an instant with its offset, e.g. 2026-12-01T10:00:00+01:00")
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
            "as_of": brussels(as_of or datetime.now(UTC)),
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
            raise Problem(404, "Not found", f"No location {location!r}.")
        principal.require_location(location)
        queue: asyncio.Queue[str] = asyncio.Queue()
        listeners.add(queue)

        async def events() -> AsyncIterator[dict[str, str]]:
            try:
                yield {"event": "ready", "data": json.dumps({"location": location})}
                while True:
                    notice = json.loads(await queue.get())
                    if notice.get("rebuilt") or notice.get("location") == location:
                        notice |= {"location": location, "at": datetime.now(UTC).isoformat()}
                        yield {"event": "agenda-changed", "data": json.dumps(notice)}
            finally:
                listeners.discard(queue)

        return EventSourceResponse(events(), ping=15)

    return app


__all__ = ["build_app", "ev"]
