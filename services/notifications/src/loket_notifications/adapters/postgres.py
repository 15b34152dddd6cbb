"""PostgreSQL: what we know of bookings, the deliveries (idempotency record and send queue), the waitlist."""

from __future__ import annotations

import json
import uuid
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg

from loket_contracts.envelope import Envelope
from loket_contracts.topics import NOTIFICATIONS
from loket_notifications.adapters.batching import Coalescing
from loket_notifications.application.ports import DeliveryRow, NewDelivery
from loket_notifications.domain.planning import BookingView
from loket_runtime.outbox import BufferedOutbox, Outbox

Conn = Any  # an asyncpg.Connection inside the caller's transaction, or the pool for a statement on its own

_ROW_COLUMNS = (
    "id, dedupe_key, booking_id, subscription_id, kind, version, channel, language, context, status, due_at,"
    " not_after, attempts, message_id, recipient, payload, last_error, faults"
)


def _row(record: asyncpg.Record) -> DeliveryRow:
    return DeliveryRow(
        id=str(record["id"]),
        dedupe_key=record["dedupe_key"],
        booking_id=record["booking_id"],
        subscription_id=str(record["subscription_id"]) if record["subscription_id"] else None,
        kind=record["kind"],
        version=record["version"],
        channel=record["channel"],
        language=record["language"],
        context=record["context"],
        status=record["status"],
        due_at=record["due_at"],
        not_after=record["not_after"],
        attempts=record["attempts"],
        message_id=record["message_id"],
        recipient=record["recipient"],
        payload=bytes(record["payload"]) if record["payload"] is not None else None,
        last_error=record["last_error"],
        faults=record["faults"],
    )


RESENDABLE = ("failed", "skipped", "sent")


# (pool, delivery id, status, finished at, error, event to publish, its key)
_Outcome = tuple[Any, str, str, datetime, str | None, Envelope | None, str]


class PostgresStore:
    """The sender's writes (rendered bytes before the send, the outcome after it) are made by many
    messages at once: `adapters.batching` turns those of one round of the event loop into one
    statement (rendered) and one transaction (outcomes and their events), each caller waiting for
    the commit of its own row as before."""

    def __init__(self) -> None:
        self.outbox = Outbox()
        self._rendered: Coalescing[tuple[Any, tuple[Any, ...]], None] = Coalescing(self._save_rendered_batch)
        # Outcomes come one by one (each after its own server reply): a short linger gathers them.
        self._outcomes: Coalescing[_Outcome, bool] = Coalescing(self._finish_batch, linger=0.02)

    # --- bookings ------------------------------------------------------------------------

    async def booking(self, conn: Conn, booking_id: str, lock: bool = False) -> BookingView | None:
        row = await conn.fetchrow(
            "SELECT * FROM bookings WHERE booking_id = $1" + (" FOR UPDATE" if lock else ""), booking_id
        )
        if row is None:
            return None
        return BookingView(
            booking_id=row["booking_id"],
            location_id=row["location_id"],
            product_id=row["product_id"],
            start=row["start_at"],
            end=row["end_at"],
            language=row["language"],
            status=row["status"],
            sequence=row["sequence"],
        )

    async def save_booking(self, conn: Conn, view: BookingView) -> None:
        await conn.execute(
            "INSERT INTO bookings (booking_id, location_id, product_id, start_at, end_at, language, status, sequence)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (booking_id) DO UPDATE SET location_id = EXCLUDED.location_id,"
            " product_id = EXCLUDED.product_id, start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at,"
            " language = EXCLUDED.language, status = EXCLUDED.status, sequence = EXCLUDED.sequence,"
            " updated_at = now()",
            view.booking_id,
            view.location_id,
            view.product_id,
            view.start,
            view.end,
            view.language,
            view.status,
            view.sequence,
        )

    async def void_pending(
        self, conn: Conn, booking_id: str, below_version: int, kinds: list[str], reason: str, now: datetime
    ) -> int:
        """Cancel the booking's messages of these kinds that are not being sent yet, finished at `now`
        (the service's clock, never PostgreSQL's: `forget` compares it with the same clock)."""
        result: str = await conn.execute(
            "UPDATE deliveries SET status = 'cancelled', last_error = $4, finished_at = $5, updated_at = now()"
            " WHERE booking_id = $1 AND version < $2 AND kind = ANY($3::text[]) AND status = 'pending'",
            booking_id,
            below_version,
            kinds,
            f"void: booking {reason}",
            now,
        )
        return int(result.split()[-1])

    # --- deliveries ----------------------------------------------------------------------

    async def add_deliveries(self, conn: Conn, deliveries: list[NewDelivery]) -> int:
        """Plan the messages (a known one is left as it is), in one statement; one planned as skipped
        is finished at its due time with the reason as its error. Returns how many were new."""
        if not deliveries:
            return 0
        status: str = await conn.execute(
            "INSERT INTO deliveries (id, dedupe_key, booking_id, subscription_id, kind, version, channel,"
            " language, context, due_at, not_after, next_attempt_at, status, last_error, finished_at)"
            " SELECT id, dedupe_key, booking_id, subscription_id, kind, version, channel, language, context::jsonb,"
            " due_at, not_after, due_at, CASE WHEN skipped IS NULL THEN 'pending' ELSE 'skipped' END, skipped,"
            " CASE WHEN skipped IS NULL THEN NULL ELSE due_at END"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::int[], $7::text[],"
            " $8::text[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::text[])"
            " AS u(id, dedupe_key, booking_id, subscription_id, kind, version, channel, language, context, due_at,"
            " not_after, skipped)"
            " ON CONFLICT DO NOTHING",
            [uuid.UUID(d.id) for d in deliveries],
            [d.dedupe_key for d in deliveries],
            [d.booking_id for d in deliveries],
            [uuid.UUID(d.subscription_id) if d.subscription_id else None for d in deliveries],
            [d.kind for d in deliveries],
            [d.version for d in deliveries],
            [d.channel for d in deliveries],
            [d.language for d in deliveries],
            [json.dumps(d.context) for d in deliveries],
            [d.due_at for d in deliveries],
            [d.not_after for d in deliveries],
            [d.skipped for d in deliveries],
        )
        return int(status.split()[-1])

    async def claim_due(
        self, pool: asyncpg.Pool, now: datetime, limit: int, lease: timedelta, claimer: str
    ) -> list[DeliveryRow]:
        """Take up to `limit` due messages: pending ones whose time has come, and 'sending' ones whose
        sender's lease ran out (it crashed mid-send). SKIP LOCKED lets several instances share the queue."""
        rows = await pool.fetch(
            "WITH due AS (SELECT id FROM deliveries"
            "  WHERE (status = 'pending' AND next_attempt_at <= $1) OR (status = 'sending' AND lease_until < $1)"
            "  ORDER BY next_attempt_at LIMIT $2 FOR UPDATE SKIP LOCKED)"
            " UPDATE deliveries d SET status = 'sending', lease_until = $1 + $3::interval, claimed_by = $4,"
            "  attempts = d.attempts + 1, updated_at = now()"
            f" FROM due WHERE d.id = due.id RETURNING {', '.join('d.' + c for c in _ROW_COLUMNS.split(', '))}",
            now,
            limit,
            lease,
            claimer,
        )
        return [_row(r) for r in rows]

    async def release(self, pool: Conn, delivery_ids: list[str]) -> None:
        """Undo claims that were never acted on (the attempt did not happen)."""
        await pool.execute(
            "UPDATE deliveries SET status = 'pending', attempts = attempts - 1, lease_until = NULL, updated_at = now()"
            " WHERE id = ANY($1::uuid[]) AND status = 'sending'",
            [uuid.UUID(i) for i in delivery_ids],
        )

    async def save_rendered(
        self, pool: Conn, delivery_id: str, recipient: str, subject: str, message_id: str | None, payload: bytes
    ) -> None:
        await self._rendered((pool, (uuid.UUID(delivery_id), recipient, subject, message_id, payload)))

    async def _save_rendered_batch(self, items: list[tuple[Any, tuple[Any, ...]]]) -> list[None]:
        rows = [args for _, args in items]
        await items[0][0].execute(
            "UPDATE deliveries d SET recipient = u.recipient, subject = u.subject, message_id = u.message_id,"
            " payload = u.payload, updated_at = now()"
            " FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bytea[])"
            " AS u(id, recipient, subject, message_id, payload) WHERE d.id = u.id",
            *([row[i] for row in rows] for i in range(5)),
        )
        return [None] * len(items)

    async def retry_later(self, pool: Conn, delivery_id: str, at: datetime, error: str, fault: bool = False) -> None:
        await pool.execute(
            "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, lease_until = NULL, last_error = $3,"
            " faults = faults + $4, updated_at = now() WHERE id = $1 AND status = 'sending'",
            uuid.UUID(delivery_id),
            at,
            error[:2000],
            1 if fault else 0,
        )

    async def finish(
        self,
        pool: asyncpg.Pool,
        delivery_id: str,
        status: str,
        at: datetime,
        error: str | None,
        event: Envelope | None,
        key: str,
    ) -> bool:
        """Record the outcome and, in the same transaction, queue its event. Only the first outcome
        counts: a second sender that finishes the same message changes nothing and publishes nothing."""
        return await self._outcomes((pool, delivery_id, status, at, error, event, key))

    async def _finish_batch(self, items: list[_Outcome]) -> list[bool]:
        ids = [uuid.UUID(item[1]) for item in items]
        async with items[0][0].acquire() as conn, conn.transaction():
            done = {
                str(r["id"])
                for r in await conn.fetch(
                    "UPDATE deliveries d SET status = u.status, last_error = COALESCE(u.error, d.last_error),"
                    " finished_at = u.at, sent_at = CASE WHEN u.status = 'sent' THEN u.at ELSE d.sent_at END,"
                    " lease_until = NULL, updated_at = now()"
                    " FROM unnest($1::uuid[], $2::text[], $3::timestamptz[], $4::text[]) AS u(id, status, at, error)"
                    " WHERE d.id = u.id AND d.status IN ('pending', 'sending') RETURNING d.id",
                    ids,
                    [item[2] for item in items],
                    [item[3] for item in items],
                    [item[4][:2000] if item[4] else None for item in items],
                )
            }
            events = BufferedOutbox()
            first: list[bool] = []
            for _, delivery_id, _, _, _, event, key in items:
                first.append(delivery_id in done)
                done.discard(delivery_id)  # the same message twice in one batch: the first outcome counts
                if first[-1] and event is not None:
                    await events.add(conn, NOTIFICATIONS.name, key, [event])
            await events.flush(conn)
        return first

    async def list_for_booking(self, pool: Conn, booking_id: str) -> list[dict[str, Any]]:
        rows = await pool.fetch(
            "SELECT id, kind, version, channel, status, attempts, recipient, message_id, due_at, created_at, sent_at,"
            " finished_at, last_error, next_attempt_at FROM deliveries WHERE booking_id = $1"
            " ORDER BY created_at, due_at, kind",
            booking_id,
        )
        return [dict(r) for r in rows]

    async def failed(self, pool: Conn, limit: int, before: tuple[datetime, uuid.UUID] | None) -> list[dict[str, Any]]:
        """Every failed message, newest first; `before` (finished_at, id) of the last row seen pages on."""
        rows = await pool.fetch(
            "SELECT id, booking_id, subscription_id, kind, version, channel, status, attempts, faults, recipient,"
            " message_id, due_at, created_at, sent_at, finished_at, last_error, next_attempt_at FROM deliveries"
            " WHERE status = 'failed' AND ($2::timestamptz IS NULL OR (finished_at, id) < ($2, $3::uuid))"
            " ORDER BY finished_at DESC, id DESC LIMIT $1",
            limit,
            before[0] if before else None,
            before[1] if before else None,
        )
        return [dict(r) for r in rows]

    async def resend(self, pool: Conn, delivery_id: uuid.UUID, now: datetime) -> str | None:
        """Send a finished message again (failed, skipped or sent): back to 'pending', due now, its
        counts reset, rendered afresh (the contact may have been corrected since). Returns the status
        it had, or None if there is no such message; one still open, or cancelled (the booking moved
        on, the subscriber left), is left as it is."""
        async with pool.acquire() as conn, conn.transaction():
            status: str | None = await conn.fetchval(
                "SELECT status FROM deliveries WHERE id = $1 FOR UPDATE", delivery_id
            )
            if status in RESENDABLE:
                await conn.execute(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, not_after = NULL,"
                    " attempts = 0, faults = 0, lease_until = NULL, payload = NULL, recipient = NULL,"
                    " subject = NULL, message_id = NULL, finished_at = NULL,"
                    " last_error = 'resent by ops after: ' || coalesce(last_error, status), updated_at = now()"
                    " WHERE id = $1",
                    delivery_id,
                    now,
                )
        return status

    async def delivery(self, pool: Conn, dedupe_key: str) -> dict[str, Any] | None:
        row = await pool.fetchrow("SELECT * FROM deliveries WHERE dedupe_key = $1", dedupe_key)
        return dict(row) if row else None

    # --- housekeeping --------------------------------------------------------------------

    async def backlog(self, pool: Conn, now: datetime, late: timedelta) -> tuple[int, int]:
        """(open messages, open messages due more than `late` ago): the second should stay 0."""
        row = await pool.fetchrow(
            "SELECT count(*) AS open,"
            " count(*) FILTER (WHERE next_attempt_at < $1::timestamptz - $2::interval) AS late"
            " FROM deliveries WHERE status IN ('pending', 'sending')",
            now,
            late,
        )
        return int(row["open"]), int(row["late"])

    async def forget(self, pool: Conn, now: datetime, retention: timedelta) -> int:
        """Drop the rendered bytes (names, addresses) of messages finished longer than `retention` ago,
        and waitlist subscriptions whose range is over; the delivery record itself stays."""
        result: str = await pool.execute(
            "UPDATE deliveries SET payload = NULL, recipient = NULL, context = context - 'email'"
            " WHERE finished_at < $1::timestamptz - $2::interval AND (payload IS NOT NULL OR recipient IS NOT NULL)",
            now,
            retention,
        )
        await pool.execute(
            "DELETE FROM waitlist w"
            " WHERE (w.to_date < ($1::timestamptz - $2::interval)::date"
            " OR w.unsubscribed_at < $1::timestamptz - $2::interval)"
            " AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.subscription_id = w.id"
            " AND d.status IN ('pending', 'sending'))",
            now,
            retention,
        )
        return int(result.split()[-1])

    # --- waitlist ------------------------------------------------------------------------

    async def subscribe(
        self,
        pool: Conn,
        subscription_id: str,
        product_id: str,
        location_id: str | None,
        from_date: date,
        to_date: date,
        email: str,
        language: str,
    ) -> None:
        await pool.execute(
            "INSERT INTO waitlist (id, product_id, location_id, from_date, to_date, email, language)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            uuid.UUID(subscription_id),
            product_id,
            location_id,
            from_date,
            to_date,
            email,
            language,
        )

    async def unsubscribe(self, pool: asyncpg.Pool, subscription_id: str, now: datetime) -> bool:
        """Unsubscribe at `now` (the service's clock, as `forget` reads it), and drop the messages not
        sent to them yet. False if there is no such subscription."""
        async with pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                "UPDATE waitlist SET unsubscribed_at = COALESCE(unsubscribed_at, $2) WHERE id = $1 RETURNING id",
                uuid.UUID(subscription_id),
                now,
            )
            if found is None:
                return False
            await conn.execute(
                "UPDATE deliveries SET status = 'cancelled', last_error = 'unsubscribed', finished_at = $2,"
                " updated_at = now() WHERE subscription_id = $1 AND status = 'pending'",
                uuid.UUID(subscription_id),
                now,
            )
        return True

    async def active_subscriptions(self, pool: Conn, email: str) -> int:
        count: int = await pool.fetchval(
            "SELECT count(*) FROM waitlist WHERE lower(email) = lower($1) AND unsubscribed_at IS NULL"
            " AND to_date >= current_date",
            email,
        )
        return count

    async def subscription_active(self, pool: Conn, subscription_id: str) -> bool:
        value = await pool.fetchval(
            "SELECT unsubscribed_at IS NULL FROM waitlist WHERE id = $1", uuid.UUID(subscription_id)
        )
        return bool(value)

    async def waitlist_matches(
        self, conn: Conn, products: list[str], location_id: str, day: date, limit: int
    ) -> list[dict[str, Any]]:
        """The first `limit` active subscribers (oldest first) waiting for this product, place and day."""
        rows = await conn.fetch(
            "SELECT id, product_id, location_id, email, language FROM waitlist"
            " WHERE unsubscribed_at IS NULL AND product_id = ANY($1::text[])"
            " AND (location_id IS NULL OR location_id = $2) AND $3::date BETWEEN from_date AND to_date"
            " ORDER BY created_at, id LIMIT $4",
            products,
            location_id,
            day,
            limit,
        )
        return [dict(r) | {"id": str(r["id"])} for r in rows]
