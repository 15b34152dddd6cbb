"""Booking HTTP API (residents and staff) and its consumers."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import FastAPI, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from loket_booking.adapters.store import body_hash
from loket_booking.application.intake import KNOWN_FULL, BookingRequest, IdempotencyKeyReused, Intake, IntakeFull
from loket_booking.application.service import (
    DECIDED_CHANNEL,
    BookingPolicy,
    BookingService,
    NewBooking,
    TransitionRefused,
    token_matches,
)
from loket_booking.application.stranded import stranded_handlers
from loket_booking.domain.booking import STATUS_SAID, Booking
from loket_booking.domain.reference import reference_of
from loket_booking.domain.rules import RuleViolation
from loket_contracts import events as ev
from loket_contracts.ids import new_event_id
from loket_contracts.topics import CALENDAR, CATALOGUE
from loket_runtime import clock, ical
from loket_runtime.auth import Principal, current_principal, require_role
from loket_runtime.catalogue import BRUSSELS, CatalogueView
from loket_runtime.eventstore import ConcurrencyError
from loket_runtime.i18n import prefer_language, tr
from loket_runtime.inputs import Day
from loket_runtime.logging import get_logger
from loket_runtime.memo import memoized
from loket_runtime.notify import Waiters
from loket_runtime.problems import Problem, field_problem
from loket_runtime.service import ServiceRuntime, create_app
from loket_runtime.settings import ServiceSettings

log = get_logger(__name__)
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"
DECIDED = ("held", "confirmed", "rejected")


class BookingSettings(ServiceSettings):
    service_name: str = "booking"
    http_port: int = 8102
    database_url: str = "postgresql://postgres@127.0.0.1:5433/loket_booking"
    # Secrets come from the environment in production; these defaults only suit the local stack.
    booking_secret: str = "local-development-secret-change-me"
    internal_token: str = "local-internal-token"
    resident_cancel_deadline_hours: float = 24
    checkin_early_minutes: float = 10
    max_wait_seconds: float = 30
    # The outgoing mail server offers SMTPUTF8 (RFC 6531); false refuses addresses like jörg@...
    email_smtputf8: bool = True
    # How long a start the allocator declared full is refused here at once (domain/known_full.py).
    known_full_seconds: float = 30
    # New bookings waiting to be written (application/intake.py) past which a request gets 503.
    intake_max_waiting: int = 2000


class PersonIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    given_name: str = Field(min_length=1, max_length=100)
    family_name: str = Field(min_length=1, max_length=100)
    birth_date: Day | None = None
    national_number: str | None = Field(None, max_length=20)
    nationality: str | None = Field(None, max_length=60)


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: str | None = Field(None, max_length=254)
    phone: str | None = Field(None, max_length=30)


class BookingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    product: str = Field(min_length=1, max_length=60)
    location: str = Field(min_length=1, max_length=60)
    start: AwareDatetime
    person: PersonIn
    contact: ContactIn = ContactIn()
    language: Literal["nl", "en", "fr"] = "nl"
    applied_at_location: str | None = Field(None, description="card-pickup: where the card was applied for")


class RescheduleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    start: AwareDatetime


class CancelIn(BaseModel):
    reason: str | None = Field(
        None, min_length=1, max_length=300, description="required when staff cancel; a resident may give one"
    )


def brussels(value: datetime | None) -> str | None:
    """An instant as the API writes it: ISO 8601 in Brussels time, with its offset."""
    return _brussels(value) if value else None


# Cached: the same starts of a location's grid are written in every answer of a storm.
_brussels = memoized(lambda value: value.astimezone(BRUSSELS).isoformat())


def parse_wait(prefer: str | None, limit: float) -> float:
    match = re.search(r"\bwait=(\d+(?:\.\d+)?)", prefer or "")
    return min(float(match.group(1)), limit) if match else 0.0


class ContactsIn(BaseModel):
    """Bookings whose contacts notifications needs for one batch of messages."""

    ids: list[Annotated[str, Field(max_length=200)]] = Field(max_length=500)


def build_app(settings: BookingSettings | None = None) -> FastAPI:
    settings = settings or BookingSettings()
    runtime = ServiceRuntime(settings, MIGRATIONS)
    view = CatalogueView()
    policy = BookingPolicy(
        resident_cancel_deadline=timedelta(hours=settings.resident_cancel_deadline_hours),
        checkin_early=timedelta(minutes=settings.checkin_early_minutes),
        smtputf8=settings.email_smtputf8,
        known_full_ttl=timedelta(seconds=settings.known_full_seconds),
    )
    service = BookingService(view, settings.booking_secret, policy)
    waiters = Waiters(settings.database_url, DECIDED_CHANNEL)
    # A rejection that reaches a request still waiting here (with a second to spare) is answered
    # on screen, so notifications need not e-mail it.
    service.answered_in_request = lambda booking_id: waiters.awaits(booking_id, margin=1.0)
    service.decided = lambda booking: waiters.deliver(booking.id, booking)

    runtime.keep_catalogue_view(view)
    runtime.consume(
        "booking-decisions",
        [CALENDAR.name],
        service.handlers() | stranded_handlers(service),
        before_batch=service.load_decided_bookings,
        before_commit=service.announce_decided,
    )
    runtime.consume("booking-closures", [CATALOGUE.name], {ev.ClosureDeclared.TYPE: service.on_closure})

    async def listen(_: ServiceRuntime) -> None:
        await waiters.run()

    runtime.add_task(listen)
    intake = Intake(service, max_waiting=settings.intake_max_waiting)

    async def write_new_bookings(rt: ServiceRuntime) -> None:
        await intake.run(rt.pool)

    runtime.add_task(write_new_bookings)
    app = create_app(runtime, "Loket booking", openapi_url="/openapi.json")

    # --- helpers --------------------------------------------------------------------------

    def presented_token(request: Request, token: str | None) -> str | None:
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value:
            return value.strip()
        return token

    async def authorised_row(request: Request, booking_id: str, token: str | None) -> asyncpg.Record:
        row = await service.repo.row(runtime.pool, booking_id)
        # The same 404 for an unknown booking and a wrong token: existence does not leak.
        if row is None or not token_matches(presented_token(request, token), row["token_hash"]):
            raise Problem(404, tr("Not found"), tr("No booking with this id and token."), "not-found")
        prefer_language(request, row["language"])  # a manage link speaks the booking's language
        return row

    def view_of(booking: Booking, row: asyncpg.Record) -> dict[str, Any]:
        return {
            "id": booking.id,
            "reference": reference_of(booking.id),
            "status": booking.status,
            "product": booking.product_id,
            "location": booking.location_id,
            "desk": booking.desk_id,
            "start": brussels(booking.start),
            "end": brussels(booking.end),
            "hold_expires_at": brussels(booking.hold_expires_at),
            "language": booking.language,
            "person": {"given_name": row["given_name"], "family_name": row["family_name"]},
            "reschedule_pending": booking.pending_reschedule is not None,
            "version": booking.version,
            "history": [
                {k: (brussels(v) if isinstance(v, datetime) else v) for k, v in h.items()} for h in booking.history
            ],
            "links": links(booking.id),
        }

    def links(booking_id: str) -> dict[str, str]:
        base = f"/api/v1/bookings/{booking_id}"
        return {
            "self": base,
            "confirm": f"{base}/confirm",
            "cancel": f"{base}/cancel",
            "reschedule": f"{base}/reschedule",
            "calendar": f"{base}/calendar.ics",
        }

    class PreconditionFailed(Exception):
        pass

    def etag(booking: Booking) -> str:
        return f'"{booking.version}"'

    async def run_command(booking_id: str, decide: Any, request: Request | None = None) -> Booking:
        """Decide on the booking as loaded; with `If-Match` (the ETag of a GET), only if it has not
        changed since, so two changes made from one view cannot both go through."""
        if_match = request.headers.get("if-match") if request is not None else None
        wanted = {t.strip().removeprefix("W/") for t in if_match.split(",")} if if_match else set()

        def guarded(booking: Booking) -> Any:
            if wanted and "*" not in wanted and etag(booking) not in wanted:
                raise PreconditionFailed
            return decide(booking)

        try:
            return await service.command(runtime.pool, booking_id, guarded)
        except PreconditionFailed as exc:
            raise Problem(
                412,
                tr("Booking changed"),
                tr("The booking changed since you loaded it (If-Match); reload it and try again."),
                "precondition-failed",
            ) from exc
        except TransitionRefused as exc:
            extra = {"booking_status": exc.status} if exc.status else {}
            raise Problem(409, tr("Not possible now"), exc.message, exc.code, **extra) from exc
        except ConcurrencyError as exc:
            raise Problem(409, tr("Busy"), tr("The booking changed meanwhile; try again."), "conflict") from exc

    async def wait_for(booking_id: str, seconds: float, done: Any, undecided: bool = False) -> Booking | None:
        """The booking once `done(booking)` holds, or as it stands after `seconds`. `undecided`: the
        caller knows nothing happened yet (it just wrote the request), so the first load is skipped."""
        deadline = asyncio.get_running_loop().time() + seconds
        delivered: object = None  # the booking as this process's consumer just decided it
        while True:
            future = waiters.register(booking_id, until=deadline)
            try:
                if isinstance(delivered, Booking):
                    booking: Booking | None = delivered
                else:
                    booking = None if undecided else await service.repo.load(runtime.pool, booking_id)
                undecided = False
                if booking is not None and done(booking):
                    return booking
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    return booking
                delivered = None
                with contextlib.suppress(TimeoutError):
                    # re-check each second as a fallback
                    delivered = await asyncio.wait_for(future, min(remaining, 1.0))
            finally:
                waiters.discard(booking_id, future)

    def busy(retry_after: int = 2) -> Problem:
        """503: more new bookings wait to be written than this instance takes (`intake_max_waiting`)."""
        return Problem(
            503,
            tr("Busy"),
            tr(
                "Very many bookings are being made at this moment; try again after %(seconds)s seconds.",
                seconds=retry_after,
            ),
            "busy",
            headers={"Retry-After": str(retry_after)},
            retry_after=retry_after,
        )

    def slot_gone(
        reason: str | None, alternatives: list[ev.Slot], headers: dict[str, str] | None = None, **extra: Any
    ) -> Problem:
        """409: the start is not free (any more), with the nearest free ones (`[{start, end, location}]`)."""
        return Problem(
            409,
            tr("Slot not available"),
            tr("That time is no longer free; here are the nearest free ones."),
            "slot-unavailable",
            headers=headers,
            **extra,
            reason=reason,
            alternatives=[
                {"start": brussels(a.start), "end": brussels(a.end), "location": a.location_id} for a in alternatives
            ],
        )

    # --- residents ------------------------------------------------------------------------

    @app.post(
        "/api/v1/bookings",
        status_code=202,
        tags=["bookings"],
        summary="Book an appointment",
        responses={
            201: {"description": "decided within Prefer: wait"},
            409: {"description": "slot gone"},
            422: {"description": "invalid input"},
        },
    )
    async def create_booking(
        body: BookingIn,
        request: Request,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
        prefer: Annotated[str | None, Header()] = None,
        x_correlation_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        now = clock.now()
        prefer_language(request, body.language)  # without Accept-Language, the booking's language
        cmd = NewBooking(
            product=body.product,
            location=body.location,
            start=body.start,
            given_name=body.person.given_name,
            family_name=body.person.family_name,
            birth_date=body.person.birth_date,
            national_number=body.person.national_number,
            nationality=body.person.nationality,
            email=body.contact.email,
            phone=body.contact.phone,
            language=body.language,
            applied_at_location=body.applied_at_location,
        )
        fingerprint = body_hash(body.model_dump(mode="json"))
        try:
            validated = service.validate(cmd, now)
            alternatives = service.known_full_refusal(cmd, now)
            if alternatives is not None and not (
                idempotency_key and await service.repo.idempotent(runtime.pool, idempotency_key)
            ):
                # The allocator already declared this start full: its answer again, and nothing stored
                # or read (the per-person rule is the write's; services/booking/README.md).
                KNOWN_FULL.inc()
                raise slot_gone("slot-taken", alternatives)
            accepted = await intake.submit(
                BookingRequest(cmd, validated, now, x_correlation_id, idempotency_key, fingerprint)
            )
        except RuleViolation as exc:
            raise field_problem(exc.field, exc.message) from exc
        except IntakeFull as exc:
            raise busy() from exc
        except IdempotencyKeyReused as exc:
            raise field_problem(
                "Idempotency-Key", tr("was used before with a different body"), tr("Idempotency-Key reused")
            ) from exc
        # The transaction is over: waiting for the decision holds no connection.
        return await answer(
            accepted.booking_id,
            accepted.manage_token,
            parse_wait(prefer, settings.max_wait_seconds),
            accepted.replayed,
        )

    async def answer(booking_id: str, token: str, wait: float, repeat: bool = False) -> Response:
        if wait:
            booking = await wait_for(booking_id, wait, lambda b: b.status != "requested", undecided=not repeat)
        else:  # a repeat answers with what is known by now; a new booking is still requested
            booking = await service.repo.load(runtime.pool, booking_id) if repeat else None
        headers = {"Location": f"/api/v1/bookings/{booking_id}"}
        if wait:
            headers["Preference-Applied"] = f"wait={wait:g}"
        if booking is None or booking.status == "requested":
            return JSONResponse(
                {
                    "id": booking_id,
                    "reference": reference_of(booking_id),
                    "status": "requested",
                    "manage_token": token,
                    "links": links(booking_id),
                },
                status_code=202,
                headers=headers,
            )
        if booking.status == "rejected":
            rejected = next((h for h in reversed(booking.history) if h["event"] == "booking-rejected"), {})
            # the resident may still view the rejected booking with its token
            raise slot_gone(
                rejected.get("reason"),
                booking.alternatives,
                headers,
                id=booking_id,
                manage_token=token,
                status_detail="rejected",
            )
        return JSONResponse(
            {
                "id": booking.id,
                "reference": reference_of(booking.id),
                "status": booking.status,
                "start": brussels(booking.start),
                "end": brussels(booking.end),
                "location": booking.location_id,
                "desk": booking.desk_id,
                "hold_expires_at": brussels(booking.hold_expires_at),
                "manage_token": token,
                "links": links(booking.id),
            },
            status_code=201,
            headers=headers,
        )

    @app.get("/api/v1/bookings/{booking_id}", tags=["bookings"], summary="View a booking (manage token)")
    async def get_booking(booking_id: str, request: Request, token: str | None = None) -> JSONResponse:
        row = await authorised_row(request, booking_id, token)
        booking = await service.repo.load(runtime.pool, booking_id)
        assert booking is not None
        return JSONResponse(view_of(booking, row), headers={"ETag": etag(booking), "Cache-Control": "no-store"})

    @app.post(
        "/api/v1/bookings/{booking_id}/confirm",
        tags=["bookings"],
        summary="Confirm a held booking (link from the e-mail)",
    )
    async def confirm(booking_id: str, request: Request, token: str | None = None) -> dict[str, Any]:
        row = await authorised_row(request, booking_id, token)
        booking = await run_command(booking_id, lambda b: b.confirm(clock.now()), request)
        return view_of(booking, row)

    @app.post(
        "/api/v1/bookings/{booking_id}/cancel",
        tags=["bookings"],
        summary="Cancel: by the resident (manage token) or by staff (JWT, with a reason)",
    )
    async def cancel(
        booking_id: str, request: Request, token: str | None = None, body: CancelIn | None = None
    ) -> dict[str, Any]:
        presented = presented_token(request, token) or ""
        if presented.count(".") == 2:  # a JWT (a manage token has no dots): staff, at any time, with a reason
            principal = await current_principal(request)
            row = await staff_row(principal, booking_id)
            if body is None or not body.reason:
                raise field_problem("reason", tr("staff give the reason of a cancellation (the resident is told)"))
            reason = body.reason
            booking = await run_command(
                booking_id, lambda b: b.cancel("staff", reason, clock.now(), timedelta(0)), request
            )
        else:
            row = await authorised_row(request, booking_id, token)
            resident_reason = (body.reason if body else None) or "cancelled by the resident"
            booking = await run_command(
                booking_id,
                lambda b: b.cancel("resident", resident_reason, clock.now(), policy.resident_cancel_deadline),
                request,
            )
        return view_of(booking, row)

    @app.post(
        "/api/v1/bookings/{booking_id}/reschedule",
        tags=["bookings"],
        summary="Move to another time; the old one is kept until the new one is reserved",
    )
    async def reschedule(
        booking_id: str,
        body: RescheduleIn,
        request: Request,
        token: str | None = None,
        prefer: Annotated[str | None, Header()] = None,
    ) -> Response:
        row = await authorised_row(request, booking_id, token)
        now = clock.now()
        current = await service.repo.load(runtime.pool, booking_id)
        assert current is not None
        try:
            new_end = service.reschedule_end(current, body.start, now)
        except RuleViolation as exc:
            raise field_problem(exc.field, exc.message) from exc
        request_id = str(new_event_id())
        await run_command(
            booking_id,
            lambda b: b.request_reschedule(request_id, body.start, new_end, now, policy.resident_cancel_deadline),
            request,
        )
        wait = parse_wait(prefer, settings.max_wait_seconds) or 5.0
        booking = await wait_for(booking_id, wait, lambda b: b.pending_reschedule != request_id)
        assert booking is not None
        result = view_of(booking, row)
        if booking.pending_reschedule == request_id:
            return JSONResponse(result, status_code=202)
        outcome = next(
            (
                h
                for h in reversed(booking.history)
                if h.get("new_start") is not None or h["event"] == "booking-rescheduled"
            ),
            {},
        )
        if outcome.get("event") == "reschedule-rejected":
            raise Problem(
                409,
                tr("New time not available"),
                tr("The new time is taken; your booking keeps its old time."),
                "slot-unavailable",
                booking=result,
                reason=outcome.get("reason"),
            )
        return JSONResponse(result, status_code=200)

    @app.get("/api/v1/bookings/{booking_id}/calendar.ics", tags=["bookings"], summary="The appointment as iCalendar")
    async def calendar_ics(booking_id: str, request: Request, token: str | None = None) -> Response:
        """The booking's event as it stands, the same event the e-mails carry (same UID, a SEQUENCE
        that only grows): TENTATIVE while held, CONFIRMED once confirmed, METHOD:CANCEL once
        cancelled, expired or rejected; 409 while the booking is not decided yet."""
        await authorised_row(request, booking_id, token)
        booking = await service.repo.load(runtime.pool, booking_id)
        assert booking is not None and booking.start is not None and booking.end is not None
        state = ical.event_state(booking.status, booking.sequence)
        if state is None:
            raise Problem(
                409,
                tr("Not possible now"),
                tr(
                    "This booking is %(status)s: it is not decided yet, so there is no appointment to add.",
                    status=STATUS_SAID[booking.status],
                ),
                "transition-refused",
                booking_status=booking.status,
            )
        location = view.locations.get(booking.location_id)
        product = view.products.get(booking.product_id)
        product_name = product.name.model_dump()[booking.language] if product else booking.product_id
        method = ical.method_for(state.status, email=False)
        private = await service.private.load(runtime.pool, booking_id) if method == "CANCEL" else None
        appointment = ical.Appointment(
            booking_id=booking.id,
            start=booking.start,
            end=booking.end,
            summary=ical.summary_text(product_name, location.name if location else None),
            location=ical.location_text(location.name, location.address) if location else booking.location_id,
            url=f"{settings.public_base_url}/manage/{booking.id}?token={presented_token(request, token)}",
        )
        attendee = ical.Party(private["email"]) if private and private.get("email") else None
        return Response(
            ical.build(appointment, state, method, stamp=clock.now(), attendee=attendee),
            media_type="text/calendar",
            headers={"Content-Disposition": f'attachment; filename="loket-{booking.id}.ics"'},
        )

    # --- staff ------------------------------------------------------------------------------

    async def staff_row(principal: Principal, booking_id: str) -> asyncpg.Record:
        if not principal.roles & {"staff", "admin"}:
            raise Problem(403, tr("Forbidden"), tr("This needs the role staff."), "forbidden")
        row = await service.repo.row(runtime.pool, booking_id)
        if row is None:
            raise Problem(404, tr("Not found"), tr("No booking %(booking)s.", booking=booking_id), "not-found")
        principal.require_location(row["location_id"])
        return row

    def attendance(outcome: str) -> Any:
        async def record(booking_id: str, request: Request) -> dict[str, Any]:
            principal = await current_principal(request)
            row = await staff_row(principal, booking_id)
            booking = await run_command(
                booking_id,
                lambda b: b.record_attendance(outcome, principal.subject, clock.now(), policy.checkin_early),
                request,
            )
            return view_of(booking, row)

        return record

    for path, outcome in (("check-in", "checked_in"), ("no-show", "no_show"), ("complete", "completed")):
        app.post(
            f"/api/v1/bookings/{{booking_id}}/{path}",
            tags=["staff"],
            summary=f"Staff: mark {outcome.replace('_', ' ')}",
        )(attendance(outcome))

    # --- operations: erasure of a person's data ----------------------------------------------

    @app.delete(
        "/api/v1/ops/persons/{booking_id}",
        status_code=204,
        tags=["ops"],
        summary="Erase the personal data of the person of this booking (role ops)",
        description="Deletes the person's key: the national number, contact details and manage-token copy of "
        "every booking of that person become unreadable; no event is rewritten. The bookings themselves "
        "(times, status, names in the agenda) stay. Erasing twice is a no-op.",
    )
    async def erase_person(booking_id: str, principal: Annotated[Principal, require_role("ops", "admin")]) -> Response:
        row = await service.repo.row(runtime.pool, booking_id)
        if row is None:
            raise Problem(404, tr("Not found"), tr("No booking %(booking)s.", booking=booking_id), "not-found")
        async with runtime.pool.acquire() as conn, conn.transaction():
            erased = await service.private.erase_person(conn, row["person_key"])
        log.info("person erased", booking_id=booking_id, by=principal.subject, had_key=erased)
        return Response(status_code=204)

    # --- internal: for the notifications service -------------------------------------------

    def internal_only(token: str) -> None:
        if not hmac.compare_digest(token.encode(), settings.internal_token.encode()):
            raise Problem(403, tr("Forbidden"), tr("Internal endpoint."))

    async def contacts_of(conn: Any, booking_ids: list[str]) -> dict[str, dict[str, Any]]:
        """How to reach each booking's resident; an unknown booking or an erased person left out."""
        base = settings.public_base_url
        found = {}
        for booking_id, (row, private) in (await service.private.load_many(conn, booking_ids)).items():
            token = private["manage_token"]
            found[booking_id] = {
                "email": private.get("email"),
                "phone": private.get("phone"),
                "language": row["language"],
                "given_name": row["given_name"],
                "family_name": row["family_name"],
                "manage_url": f"{base}/manage/{booking_id}?token={token}",
                "confirm_url": f"{base}/manage/{booking_id}?token={token}&confirm=1",
            }
        return found

    @app.get("/internal/bookings/{booking_id}/contact", include_in_schema=False)
    async def contact(booking_id: str, x_internal_token: Annotated[str, Header()] = "") -> dict[str, Any]:
        internal_only(x_internal_token)
        found = (await contacts_of(runtime.pool, [booking_id])).get(booking_id)
        if found is None:
            raise Problem(404, tr("Not found"), tr("No contact details (unknown booking or erased)."))
        return found

    @app.post("/internal/bookings/contacts", include_in_schema=False)
    async def contacts(body: ContactsIn, x_internal_token: Annotated[str, Header()] = "") -> dict[str, Any]:
        """The contacts of many bookings in one call (notifications asks per batch of messages):
        `{"contacts": {id: {...}}}`, an unknown booking or erased person left out."""
        internal_only(x_internal_token)
        return {"contacts": await contacts_of(runtime.pool, list(dict.fromkeys(body.ids)))}

    return app


__all__ = ["BookingSettings", "Query", "build_app"]
