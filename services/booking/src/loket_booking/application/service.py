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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from cryptography.fernet import Fernet

from loket_booking.adapters.store import BookingRepository, Namesakes, PrivateData
from loket_booking.domain.booking import Booking, TransitionRefused
from loket_booking.domain.known_full import KnownFullStarts
from loket_booking.domain.rules import (
    Person,
    RuleViolation,
    check_contact,
    check_eligibility,
    check_slot,
    normalise_email,
    normalise_phone,
    parse_national_number,
    person_of,
    same_person,
)
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.ids import new_event_id
from loket_runtime.catalogue import CatalogueView, local, local_day
from loket_runtime.consumer import Delivery, HandlerContext, PoisonMessage
from loket_runtime.eventstore import ConcurrencyError
from loket_runtime.i18n import tr
from loket_runtime.notify import notify, notify_many

DECIDED_CHANNEL = "loket_booking_decided"
BATCH_BOOKINGS = "bookings"  # batch_state: {booking id: Booking} read before a batch of decisions
BATCH_DECIDED = "decided"  # batch_state: ids of the bookings the batch changed, to NOTIFY at its end


@dataclass
class BookingPolicy:
    resident_cancel_deadline: timedelta = timedelta(hours=24)
    checkin_early: timedelta = timedelta(minutes=10)
    max_active_override: int | None = None
    # Whether the outgoing mail server offers SMTPUTF8: without it, an address with non-ASCII
    # characters before the @ is refused at booking time (its messages could never leave).
    smtputf8: bool = True
    # How long a start the allocator declared full is refused here without asking it again
    # (domain/known_full.py); 0 sends every request to the allocator.
    known_full_ttl: timedelta = timedelta(seconds=30)


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


# What `validate` returns: the end, the private data to keep, and the person as the rule compares them.
Validated = tuple[datetime, dict[str, Any], Person]


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
        self.known_full = KnownFullStarts(ttl=policy.known_full_ttl)
        # Whether the request that made a booking is still waiting in this process for its decision
        # (`Prefer: wait`) and will answer it itself; the HTTP layer, which holds the waiters, sets it.
        self.answered_in_request: Callable[[str], bool] = lambda _booking_id: False
        # Told each booking a decision has just changed, once committed (the HTTP layer's waiters).
        self.decided: Callable[[Booking], None] = lambda _booking: None
        self._secret = secret.encode()
        self._fernet = Fernet(base64.urlsafe_b64encode(hashlib.sha256(self._secret).digest()))

    # --- resident: request ---------------------------------------------------------------

    def validate(self, cmd: NewBooking, now: datetime) -> Validated:
        """Every resident rule; returns the end, the private data to keep, and the person as the
        per-person rule compares people (sealed: keyed hashes, see `domain.rules.Person`)."""
        end = check_slot(self.view, cmd.product, cmd.location, cmd.start, now)
        product = self.view.products[cmd.product]
        private: dict[str, Any] = {}
        birth = cmd.birth_date
        if cmd.national_number:
            number = parse_national_number(cmd.national_number)
            private["national_number"] = number.digits
            if birth is not None and number.birth_date is not None and birth != number.birth_date:
                raise RuleViolation("person.birth_date", tr("does not match the birth date in the national number"))
            birth = birth or number.birth_date
        if cmd.email:
            private["email"] = normalise_email(cmd.email, smtputf8=self.policy.smtputf8)
        if cmd.phone:
            private["phone"] = normalise_phone(cmd.phone)
        check_contact(cmd.email, cmd.phone, product.requires_confirmation)
        if birth is not None and birth > local_day(now):
            raise RuleViolation("person.birth_date", tr("lies in the future"))
        check_eligibility(
            product.name, product.eligibility, birth, local_day(cmd.start), cmd.location, cmd.applied_at_location
        )
        if birth is not None:
            private["birth_date"] = birth.isoformat()
        if cmd.nationality:
            private["nationality"] = cmd.nationality
        person = person_of(
            cmd.given_name,
            cmd.family_name,
            birth,
            private.get("national_number"),
            private.get("email"),
            private.get("phone"),
            contacts_normalised=True,
        )
        return end, private, person.sealed(self._secret)

    def _key(self, identity: str) -> str:
        return hmac.new(self._secret, identity.encode(), hashlib.sha256).hexdigest()

    def legacy_person_key(self, private: dict[str, Any]) -> str:
        """The key bookings made before the per-person rule had: the national number, otherwise the
        e-mail and phone as given. Such a booking has no sealed person; it is matched by this key."""
        return self._key(private.get("national_number") or f"{private.get('email', '')}|{private.get('phone', '')}")

    def person_key(self, person: Person, legacy_key: str, recent: list[tuple[str, Person]]) -> str:
        """One encryption key (`person_keys`) per person, so that erasure reaches all their bookings:
        the key of their latest booking the rule takes for theirs (`recent`: newest first); for
        someone new, the key of their national number (as before the rule), else one of their sealed
        name, birth date and contacts."""
        for key, other in recent:
            if same_person(person, other):
                return key
        if person.national:
            return legacy_key
        return self._key(f"person:{person.name}|{person.birth}|{sorted(person.contacts)}")

    async def check_person_limit(
        self, conn: asyncpg.Connection | asyncpg.Pool, cmd: NewBooking, private: dict[str, Any], person: Person
    ) -> Namesakes:
        """The per-person rule: RuleViolation("person") when this person has as many active bookings
        of the product as it allows; else the namesakes read (for `person_key`). Called under the
        person's advisory locks (`request`), so the answer holds until the transaction ends."""
        limit = self.policy.max_active_override or self.view.products[cmd.product].max_active_per_person
        namesakes = await self.repo.namesakes(conn, person, cmd.product, self.legacy_person_key(private))
        active = sum(1 for other in namesakes.active if same_person(person, other)) + namesakes.legacy_active
        if active >= limit:
            raise RuleViolation(
                "person",
                tr(
                    "this person already has an active booking for %(product)s; cancel or reschedule that one instead",
                    product=self.view.products[cmd.product].name,
                ),
            )
        return namesakes

    def known_full_refusal(self, cmd: NewBooking, now: datetime) -> list[ev.Slot] | None:
        """The alternatives to refuse a valid request with, at once, when the allocator has already
        declared its start full; None when the allocator is to decide (domain/known_full.py)."""
        if self.policy.known_full_ttl <= timedelta(0):
            return None
        return self.known_full.refusal(cmd.location, cmd.product, cmd.start, now, self.view.generation)

    async def request(
        self,
        conn: asyncpg.Connection,
        cmd: NewBooking,
        now: datetime,
        correlation_id: str | None,
        validated: Validated | None = None,
    ) -> tuple[Booking, str]:
        """Record a new booking (caller holds a transaction), validated here unless the caller did
        (`validate`); returns it and its token."""
        end, private, person = validated or self.validate(cmd, now)
        # Two requests the rule could take for one person share the name or the national number:
        # they queue here, so the per-person limit holds under concurrency.
        await self.repo.lock_people(conn, person.lock_keys)
        legacy_key = self.legacy_person_key(private)
        namesakes = await self.check_person_limit(conn, cmd, private, person)
        person_key = self.person_key(person, legacy_key, namesakes.recent)
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
        await self.repo.insert_read_model(conn, booking, person_key, token_hash(token), person)
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
            ev.SlotReserved.TYPE: self._on_reserved(lambda b, e: b.on_slot_reserved(e)),
            ev.RescheduleReserved.TYPE: self._on_reserved(lambda b, e: b.on_reschedule_reserved(e)),
            ev.SlotRejected.TYPE: self._on_slot_rejected,
            ev.SlotReleased.TYPE: self._on_slot_released,
            ev.HoldExpired.TYPE: self._react(lambda b, e: b.on_hold_expired(e)),
            ev.RescheduleRejected.TYPE: self._react(lambda b, e: b.on_reschedule_rejected(e)),
        }

    async def _on_slot_rejected(self, ctx: HandlerContext, delivery: Delivery) -> None:
        rejected = delivery.event
        assert isinstance(rejected, ev.SlotRejected)
        told = self.answered_in_request(rejected.booking_id)
        await self._react(lambda b, e: b.on_slot_rejected(e, told_in_response=told))(ctx, delivery)
        generation = self.view.generation
        ctx.after_commit.append(lambda: self.known_full.on_rejected(rejected, delivery.envelope.time, generation))

    def _on_reserved(self, decide: Any) -> Any:
        react = self._react(decide)

        async def handle(ctx: HandlerContext, delivery: Delivery) -> None:
            await react(ctx, delivery)
            taken = delivery.event
            assert isinstance(taken, ev.SlotReserved | ev.RescheduleReserved)
            ctx.after_commit.append(lambda: self.known_full.on_reserved(taken.location_id, taken.start, taken.end))

        return handle

    async def _on_slot_released(self, ctx: HandlerContext, delivery: Delivery) -> None:
        released = delivery.event
        assert isinstance(released, ev.SlotReleased)
        ctx.after_commit.append(lambda: self.known_full.on_released(released))

    def _react(self, decide: Any) -> Any:
        async def handle(ctx: HandlerContext, delivery: Delivery) -> None:
            booking_id = str(getattr(delivery.event, "booking_id"))  # noqa: B009
            booking = await self.booking_in_batch(ctx, booking_id)
            if booking is None:
                # Every booking is stored here before its request is published, so a decision
                # about one we do not have is forged or misrouted: kept for operations, not applied.
                raise PoisonMessage(f"{delivery.envelope.type} about booking {booking_id!r}, which does not exist")
            await self.record_decision(ctx, booking, decide(booking, delivery.event), delivery.envelope)

        return handle

    # A batch of decisions is applied with its bookings read in one query before it
    # (`load_decided_bookings`), their records written with the batch's outbox, and the waiting
    # requests told in one NOTIFY at its end (`announce_decided`). In the consumer's careful path
    # (a savepoint per record) each handler reads and notifies for itself.

    async def load_decided_bookings(self, ctx: HandlerContext, deliveries: list[Delivery]) -> None:
        """Batch hook (before): the bookings the batch's events are about."""
        if ctx.careful:
            return
        ids = {str(d.event.booking_id) for d in deliveries if hasattr(d.event, "booking_id")}
        ctx.batch_state[BATCH_BOOKINGS] = await self.repo.load_many(ctx.conn, ids)

    async def booking_in_batch(self, ctx: HandlerContext, booking_id: str) -> Booking | None:
        """The booking as this batch has left it so far (read before the batch, or now)."""
        loaded: dict[str, Booking] | None = ctx.batch_state.get(BATCH_BOOKINGS)
        if loaded is None:
            return await self.repo.load(ctx.conn, booking_id)
        return loaded.get(booking_id)

    async def record_decision(
        self, ctx: HandlerContext, booking: Booking, events: list[ev.Event], cause: Envelope
    ) -> None:
        """Record what a decision changes on the booking, and wake whoever waits for it."""
        if not await self.repo.record(ctx.conn, booking, events, cause=cause, outbox=ctx.outbox):
            return
        if BATCH_BOOKINGS in ctx.batch_state:
            ctx.batch_state.setdefault(BATCH_DECIDED, []).append(booking.id)
        else:
            await notify(ctx.conn, DECIDED_CHANNEL, booking.id)
        ctx.after_commit.append(lambda: self.decided(booking))

    async def announce_decided(self, ctx: HandlerContext, _done: list[Delivery]) -> None:
        """Batch hook (before the commit): one NOTIFY for every booking the batch decided."""
        await notify_many(ctx.conn, DECIDED_CHANNEL, ctx.batch_state.get(BATCH_DECIDED, []))

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
