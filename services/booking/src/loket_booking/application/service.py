"""Booking use cases: the resident's and staff's commands, and the reactions to calendar decisions.

Each command loads the aggregate, decides, and records the new events with the read model and
the outbox in one transaction. A concurrent writer makes the append fail (ConcurrencyError);
commands then reload and decide again, so two reschedules at once cannot both go through.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from cryptography.fernet import Fernet

from loket_booking.adapters.store import BookingRepository, PrivateData
from loket_booking.domain.booking import Booking, TransitionRefused
from loket_booking.domain.rules import (
    RuleViolation,
    check_eligibility,
    check_slot,
    normalise_email,
    normalise_phone,
    parse_national_number,
)
from loket_contracts import events as ev
from loket_contracts.ids import new_event_id
from loket_runtime.catalogue import CatalogueView, local, local_day
from loket_runtime.consumer import Delivery, HandlerContext, PoisonMessage
from loket_runtime.eventstore import ConcurrencyError

DECIDED_CHANNEL = "loket_booking_decided"


@dataclass
class BookingPolicy:
    resident_cancel_deadline: timedelta = timedelta(hours=24)
    checkin_early: timedelta = timedelta(minutes=10)
    max_active_override: int | None = None


@dataclass
class NewBooking:
    product: str
    location: str
    start: datetime
    given_name: str
    family_name: str
    birth_date: date | None
    national_number: str | None
    nationality: str | None
    email: str | None
    phone: str | None
    language: str
    applied_at_location: str | None = None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def token_matches(token: str | None, stored: bytes) -> bool:
    return token is not None and hmac.compare_digest(token_hash(token), bytes(stored))


class BookingService:
    def __init__(self, view: CatalogueView, secret: str, policy: BookingPolicy) -> None:
        self.view = view
        self.repo = BookingRepository()
        self.private = PrivateData()
        self.policy = policy
        self._secret = secret.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(self._secret).digest()))

    # --- resident: request ---------------------------------------------------------------

    def validate(self, cmd: NewBooking, now: datetime) -> tuple[datetime, dict[str, Any], str]:
        """Every resident rule; returns the end, the private data to keep, and the person key."""
        end = check_slot(self.view, cmd.product, cmd.location, cmd.start, now)
        private: dict[str, Any] = {}
        birth = cmd.birth_date
        if cmd.national_number:
            number = parse_national_number(cmd.national_number)
            private["national_number"] = number.digits
            if birth is not None and number.birth_date is not None and birth != number.birth_date:
                raise RuleViolation("person.birth_date", "does not match the birth date in the national number")
            birth = birth or number.birth_date
        if cmd.email:
            private["email"] = normalise_email(cmd.email)
        if cmd.phone:
            private["phone"] = normalise_phone(cmd.phone)
        if not cmd.email and not cmd.phone:
            raise RuleViolation("contact", "give an e-mail address or a phone number so we can reach you")
        if birth is not None and birth > local_day(now):
            raise RuleViolation("person.birth_date", "lies in the future")
        product = self.view.products[cmd.product]
        check_eligibility(
            cmd.product, product.eligibility, birth, local_day(cmd.start), cmd.location, cmd.applied_at_location
        )
        if birth is not None:
            private["birth_date"] = birth.isoformat()
        if cmd.nationality:
            private["nationality"] = cmd.nationality
        identity = private.get("national_number") or f"{private.get('email', '')}|{private.get('phone', '')}"
        person_key = hmac.new(self._secret, identity.encode(), hashlib.sha256).hexdigest()
        return end, private, person_key

    async def request(
        self, conn: asyncpg.Connection, cmd: NewBooking, now: datetime, correlation_id: str | None
    ) -> tuple[Booking, str]:
        """Validate and record a new booking (caller holds a transaction); returns it and its token."""
        end, private, person_key = self.validate(cmd, now)
        # One person's concurrent requests queue here, so the per-person limit holds.
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", person_key)
        limit = self.policy.max_active_override or self.view.products[cmd.product].max_active_per_person
        if await self.repo.active_count(conn, person_key, cmd.product) >= limit:
            raise RuleViolation(
                "person",
                f"this person already has an active booking for {cmd.product}; cancel or reschedule that one instead",
            )
        booking = Booking(
            id=str(new_event_id()),
            location_id=cmd.location,
            product_id=cmd.product,
            start=cmd.start,
            end=end,
            language=cmd.language,
            given_name=cmd.given_name,
            family_name=cmd.family_name,
        )
        token = secrets.token_urlsafe(16)  # 128 random bits
        await self.repo.insert_read_model(conn, booking, person_key, token_hash(token))
        await self.private.save(conn, booking.id, person_key, private | {"manage_token": token})
        requested = ev.BookingRequested(
            booking_id=booking.id,
            location_id=cmd.location,
            product_id=cmd.product,
            start=cmd.start,
            end=end,
            person=ev.PersonName(given_name=cmd.given_name, family_name=cmd.family_name),
            language=cmd.language,
            requested_at=now,  # type: ignore[arg-type]
        )
        await self.repo.record(conn, booking, [requested], correlation_id=correlation_id, at=now)
        return booking, token

    def seal(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def unseal(self, data: bytes) -> bytes:
        return self._fernet.decrypt(data)

    # --- commands on an existing booking -------------------------------------------------

    async def command(self, pool: asyncpg.Pool, booking_id: str, decide: Any, attempts: int = 5) -> Booking:
        """Load, decide (a function of the booking returning events), record; retry on a race."""
        for attempt in range(attempts):
            try:
                async with pool.acquire() as conn, conn.transaction():
                    booking = await self.repo.load(conn, booking_id)
                    if booking is None:
                        raise LookupError(booking_id)
                    await self.repo.record(conn, booking, decide(booking))
                    return booking
            except ConcurrencyError:  # the transaction was rolled back: reload and decide again
                if attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable")

    def reschedule_end(self, booking: Booking, new_start: datetime, now: datetime) -> datetime:
        return check_slot(self.view, booking.product_id, booking.location_id, new_start, now)

    # --- reactions to the calendar and the catalogue ------------------------------------------

    def handlers(self) -> dict[str, Any]:
        return {
            ev.SlotReserved.TYPE: self._react(lambda b, e: b.on_slot_reserved(e)),
            ev.SlotRejected.TYPE: self._react(lambda b, e: b.on_slot_rejected(e)),
            ev.HoldExpired.TYPE: self._react(lambda b, e: b.on_hold_expired(e)),
            ev.RescheduleReserved.TYPE: self._react(lambda b, e: b.on_reschedule_reserved(e)),
            ev.RescheduleRejected.TYPE: self._react(lambda b, e: b.on_reschedule_rejected(e)),
        }

    def _react(self, decide: Any) -> Any:
        async def handle(ctx: HandlerContext, delivery: Delivery) -> None:
            booking_id = str(getattr(delivery.event, "booking_id"))  # noqa: B009
            booking = await self.repo.load(ctx.conn, booking_id)
            if booking is None:
                # Every booking is stored here before its request is published, so a decision
                # about one we do not have is forged or misrouted: kept for operations, not applied.
                raise PoisonMessage(f"{delivery.envelope.type} about booking {booking_id!r}, which does not exist")
            recorded = await self.repo.record(
                ctx.conn, booking, decide(booking, delivery.event), cause=delivery.envelope
            )
            if recorded:
                await ctx.conn.execute("SELECT pg_notify($1, $2)", DECIDED_CHANNEL, booking_id)

        return handle

    async def on_closure(self, ctx: HandlerContext, delivery: Delivery) -> None:
        """A closed day cancels its bookings (by the system, reason "closure"), so residents are told."""
        closure = delivery.event
        assert isinstance(closure, ev.ClosureDeclared)
        # The catalogue consumer applies it to the view too, in its own time: from the moment the
        # day's bookings are cancelled, no new booking on that day may pass validation.
        ctx.after_commit.append(lambda: self.view.apply(closure))
        day_start, day_end = local(closure.day, "00:00"), local(closure.day, "24:00")
        for booking_id in await self.repo.ids_on_day(ctx.conn, closure.location_id, day_start, day_end):
            booking = await self.repo.load(ctx.conn, booking_id)
            if booking is None:
                continue
            events = booking.cancel("system", f"closure: {closure.reason}", delivery.envelope.time, timedelta(0))
            await self.repo.record(ctx.conn, booking, events, cause=delivery.envelope)


__all__ = ["DECIDED_CHANNEL", "BookingPolicy", "BookingService", "NewBooking", "TransitionRefused", "token_matches"]
