"""Booking persistence: event-store streams, the read model, private data and idempotency keys."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from cryptography.fernet import Fernet

from loket_booking.domain.booking import Booking
from loket_booking.domain.rules import Person
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import BOOKINGS
from loket_runtime import clock
from loket_runtime.eventstore import EventStore, StoredEvent
from loket_runtime.outbox import Outbox

SOURCE = "loket/booking"
PUBLISHED_TYPES = {model.TYPE for model in BOOKINGS.events}


def stream_id(booking_id: str) -> str:
    return f"booking-{booking_id}"


@dataclass(frozen=True)
class Namesakes:
    active: list[Person]  # sealed persons of the active bookings of the product, same name or number
    legacy_active: int  # active bookings of the product made before the rule, under the legacy key
    recent: list[tuple[str, Person]]  # (person key, sealed person) of the latest, newest first


class BookingRepository:
    def __init__(self) -> None:
        self.events = EventStore()
        self.outbox = Outbox()

    async def load(self, conn: asyncpg.Connection | asyncpg.Pool, booking_id: str) -> Booking | None:
        stored = await self.events.load(conn, stream_id(booking_id))
        return _folded(booking_id, stored) if stored else None

    async def load_many(self, conn: asyncpg.Connection, booking_ids: Iterable[str]) -> dict[str, Booking]:
        """Several bookings in one query; an unknown id has no entry."""
        ids = {booking_id: stream_id(booking_id) for booking_id in booking_ids}
        streams = await self.events.load_many(conn, ids.values())
        return {booking_id: _folded(booking_id, streams[sid]) for booking_id, sid in ids.items() if sid in streams}

    async def record(
        self,
        conn: asyncpg.Connection,
        booking: Booking,
        new_events: Sequence[ev.Event],
        cause: Envelope | None = None,
        correlation_id: str | None = None,
        at: datetime | None = None,
        outbox: Outbox | None = None,
    ) -> list[Envelope]:
        """Append the events after the version loaded (ConcurrencyError if it moved), publish the
        booking's own events through the outbox (`outbox`: a consumer batch's, written with the
        batch), and update the read model: one transaction."""
        envelopes = [
            Envelope(
                type=e.TYPE,
                source=SOURCE,
                subject=booking.id,
                data=e.model_dump(mode="json"),
                correlationid=correlation_id or (cause.correlationid if cause else None) or booking.id,
                causationid=cause.id if cause else None,
                time=at or clock.now(),
            )
            for e in new_events
        ]
        if not envelopes:
            return []
        await self.events.append(conn, stream_id(booking.id), booking.version, envelopes)
        for event, envelope in zip(new_events, envelopes, strict=True):
            booking.apply(event, envelope.time)
        published = [e for e in envelopes if e.type in PUBLISHED_TYPES]
        await (outbox or self.outbox).add(conn, BOOKINGS.name, booking.location_id, published)
        await conn.execute(
            "UPDATE bookings SET status = $2, start_at = $3, end_at = $4, desk_id = $5, hold_expires_at = $6,"
            " version = $7, updated_at = now() WHERE id = $1",
            booking.id,
            booking.status,
            booking.start,
            booking.end,
            booking.desk_id,
            booking.hold_expires_at,
            booking.version,
        )
        return envelopes

    async def insert_read_model(
        self, conn: asyncpg.Connection, booking: Booking, person_key: str, token_hash: bytes, person: Person
    ) -> None:
        await conn.execute(
            "INSERT INTO bookings (id, status, product_id, location_id, start_at, end_at, language, given_name,"
            " family_name, person_key, token_hash, version, person_name, person_birth, person_national,"
            " person_email, person_phone) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,0,$12,$13,$14,$15,$16)",
            booking.id,
            "requested",
            booking.product_id,
            booking.location_id,
            booking.start,
            booking.end,
            booking.language,
            booking.given_name,
            booking.family_name,
            person_key,
            token_hash,
            person.name,
            person.birth,
            person.national,
            person.email,
            person.phone,
        )

    async def row(self, conn: asyncpg.Connection | asyncpg.Pool, booking_id: str) -> asyncpg.Record | None:
        row: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM bookings WHERE id = $1", booking_id)
        return row

    async def claim_idempotency_key(self, conn: asyncpg.Connection, key: str) -> asyncpg.Record | None:
        """What an earlier request with this `Idempotency-Key` left (`body_hash`, sealed `response`),
        or None. Concurrent repeats of one key queue here (a transaction-scoped advisory lock): the
        second finds the first's answer."""
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", "idem:" + key)
        earlier: asyncpg.Record | None = await conn.fetchrow("SELECT * FROM idempotency_keys WHERE key = $1", key)
        return earlier

    async def remember_idempotency_key(
        self, conn: asyncpg.Connection, key: str, body_hash: str, booking_id: str, sealed_response: bytes
    ) -> None:
        await conn.execute(
            "INSERT INTO idempotency_keys (key, body_hash, booking_id, response) VALUES ($1,$2,$3,$4)",
            key,
            body_hash,
            booking_id,
            sealed_response,
        )

    async def idempotent(self, conn: asyncpg.Connection | asyncpg.Pool, key: str) -> bool:
        """Whether a booking was made with this `Idempotency-Key` (its repeat must get that booking)."""
        return await conn.fetchval("SELECT EXISTS (SELECT 1 FROM idempotency_keys WHERE key = $1)", key)

    async def lock_people(self, conn: asyncpg.Connection, lock_keys: list[str]) -> None:
        """Transaction-scoped advisory locks on `lock_keys`, taken in their order, in one statement."""
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext(k)) FROM unnest($1::text[]) WITH ORDINALITY AS l(k, n) ORDER BY n",
            lock_keys,
        )

    async def namesakes(
        self, conn: asyncpg.Connection, person: Person, product_id: str, legacy_key: str, recent: int = 50
    ) -> Namesakes:
        """In one query, the bookings the per-person rule compares a request with (sealed persons):
        the active bookings of `product_id` that share the name or the national number of `person`
        (every booking `same_person` can match is among them); the active ones of `product_id` made
        before the rule (no sealed person) under the key they had then (the national number, or the
        e-mail and phone as given); and the latest `recent` bookings of any product and status that
        share the name or the number, newest first, with their person keys."""
        rows = await conn.fetch(
            f"SELECT 'active' AS kind, person_key, {_PERSON_COLUMNS} FROM bookings"
            " WHERE product_id = $3 AND status IN ('requested', 'held', 'confirmed')"
            " AND (person_name = $1 OR person_national = $2)"
            f" UNION ALL (SELECT 'recent', person_key, {_PERSON_COLUMNS} FROM bookings"
            " WHERE person_name = $1 OR person_national = $2 ORDER BY created_at DESC LIMIT $5)"
            f" UNION ALL SELECT 'legacy', person_key, {_PERSON_COLUMNS} FROM bookings"
            " WHERE person_key = $4 AND product_id = $3 AND person_name IS NULL"
            " AND status IN ('requested', 'held', 'confirmed')",
            person.name,
            person.national,
            product_id,
            legacy_key,
            recent,
        )
        return Namesakes(
            active=[_person(r) for r in rows if r["kind"] == "active"],
            legacy_active=sum(1 for r in rows if r["kind"] == "legacy"),
            recent=[(r["person_key"], _person(r)) for r in rows if r["kind"] == "recent"],
        )

    async def ids_on_day(
        self, conn: asyncpg.Connection, location_id: str | None, start: datetime, end: datetime
    ) -> list[str]:
        rows = await conn.fetch(
            "SELECT id FROM bookings WHERE ($1::text IS NULL OR location_id = $1) AND start_at >= $2"
            " AND start_at < $3 AND status IN ('requested', 'held', 'confirmed')",
            location_id,
            start,
            end,
        )
        return [r["id"] for r in rows]


class PrivateData:
    """Contact details, national number and manage token of a booking, encrypted with the
    person's own key. Erasing a person deletes the key: the ciphertext becomes unreadable."""

    async def save(self, conn: asyncpg.Connection, booking_id: str, person_key: str, data: dict[str, Any]) -> None:
        # One round trip: the person's existing key, or the new one if this is their first booking.
        secret = await conn.fetchval(
            "INSERT INTO person_keys (person_key, secret) VALUES ($1, $2)"
            " ON CONFLICT (person_key) DO UPDATE SET person_key = EXCLUDED.person_key RETURNING secret",
            person_key,
            Fernet.generate_key(),
        )
        ciphertext = Fernet(secret).encrypt(json.dumps(data).encode())
        await conn.execute(
            "INSERT INTO booking_private (booking_id, person_key, ciphertext) VALUES ($1, $2, $3)",
            booking_id,
            person_key,
            ciphertext,
        )

    async def load(self, conn: asyncpg.Connection | asyncpg.Pool, booking_id: str) -> dict[str, Any] | None:
        row = await conn.fetchrow(
            "SELECT p.ciphertext, k.secret FROM booking_private p LEFT JOIN person_keys k USING (person_key)"
            " WHERE p.booking_id = $1",
            booking_id,
        )
        if row is None or row["secret"] is None:
            return None  # erased
        data: dict[str, Any] = json.loads(Fernet(row["secret"]).decrypt(row["ciphertext"]))
        return data

    async def load_many(
        self, conn: asyncpg.Connection | asyncpg.Pool, booking_ids: Sequence[str]
    ) -> dict[str, tuple[asyncpg.Record, dict[str, Any]]]:
        """For each booking that exists and whose person is not erased: its read-model row (language
        and name) and its private data, in one query."""
        rows = await conn.fetch(
            "SELECT b.id, b.language, b.given_name, b.family_name, p.ciphertext, k.secret"
            " FROM bookings b JOIN booking_private p ON p.booking_id = b.id"
            " JOIN person_keys k ON k.person_key = p.person_key WHERE b.id = ANY($1::text[])",
            list(booking_ids),
        )
        return {r["id"]: (r, json.loads(Fernet(r["secret"]).decrypt(r["ciphertext"]))) for r in rows}

    async def erase_person(self, conn: asyncpg.Connection, person_key: str) -> bool:
        """Delete the person's key (their ciphertexts become unreadable) and unlink their bookings
        from the person: the key and the sealed person (name, birth date, number, contacts) go, so
        the per-person rule no longer counts them."""
        status = await conn.execute("DELETE FROM person_keys WHERE person_key = $1", person_key)
        await conn.execute(
            "UPDATE booking_private SET person_key = 'erased:' || booking_id WHERE person_key = $1", person_key
        )
        await conn.execute(
            "UPDATE bookings SET person_key = 'erased:' || id, person_name = NULL, person_birth = NULL,"
            " person_national = NULL, person_email = NULL, person_phone = NULL WHERE person_key = $1",
            person_key,
        )
        return bool(status.endswith(" 1"))


_PERSON_COLUMNS = "person_name, person_birth, person_national, person_email, person_phone"


def _folded(booking_id: str, stored: Sequence[StoredEvent]) -> Booking:
    booking = Booking(id=booking_id)
    for item in stored:
        booking.apply(item.event, item.envelope.time)
    return booking


def _person(row: asyncpg.Record) -> Person:
    return Person(
        name=row["person_name"],
        birth=row["person_birth"],
        national=row["person_national"],
        email=row["person_email"],
        phone=row["person_phone"],
    )


def body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
