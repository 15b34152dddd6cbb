"""The agenda projection: one row per booking as the counter sees it, plus every change, for `as_of`.

Tables (see migrations/002): `agenda` (the folded state and the row it shows), `agenda_changes`
(each event's changes, by event id, with the event's time) and `agenda_days` (every location and
day a booking was ever placed on). The fold is pure (`domain/agenda.py`) and order-independent,
so the incremental consumer, a rebuild from offset zero and an `as_of` query all agree.

The consumer applies a whole batch at once (`before_commit`): one read of the touched rows, the
merge in memory, and bulk writes, in the batch's transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

import asyncpg

from loket_calendar.domain.agenda import (
    VISIBLE,
    State,
    changes_for,
    days_touched,
    fold,
    merge,
    row_of,
    version,
)
from loket_contracts import events as ev
from loket_runtime.consumer import Delivery, HandlerContext

AGENDA_CHANNEL = "loket_agenda"
AGENDA_TYPES: tuple[type[ev.Event], ...] = (
    ev.BookingRequested,
    ev.SlotReserved,
    ev.BookingConfirmed,
    ev.SlotRejected,
    ev.BookingRejected,
    ev.BookingCancelled,
    ev.HoldExpired,
    ev.BookingExpired,
    ev.RescheduleReserved,
    ev.BookingRescheduled,
    ev.AttendanceRecorded,
)
TABLES = ("agenda", "agenda_changes", "agenda_days")

Change = tuple[str, str, datetime, dict[str, Any]]  # booking id, event id, event time, changes


def change_of(envelope_id: str, event_time: datetime, event: ev.Event) -> Change | None:
    changes = changes_for(event)
    booking_id = getattr(event, "booking_id", None)
    if changes is None or booking_id is None:
        return None
    return str(booking_id), envelope_id, event_time, changes


async def apply_changes(conn: asyncpg.Connection, changes: Sequence[Change], notify: bool = True) -> int:
    """Fold a batch of changes into the agenda tables (in the caller's transaction); return rows written."""
    if not changes:
        return 0
    inserted = await conn.fetch(
        "INSERT INTO agenda_changes (event_id, booking_id, event_time, changes)"
        " SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::jsonb[])"
        " ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        [c[1] for c in changes],
        [c[0] for c in changes],
        [c[2] for c in changes],
        [c[3] for c in changes],  # jsonb codec of the pool encodes
    )
    fresh_ids = {r["event_id"] for r in inserted}
    fresh = [c for c in changes if c[1] in fresh_ids]
    if not fresh:
        return 0  # every change applied before (a redelivery): the fold is idempotent anyway
    bookings = sorted({c[0] for c in fresh})
    states: dict[str, State] = {
        r["booking_id"]: r["state"]
        for r in await conn.fetch(
            "SELECT booking_id, state FROM agenda WHERE booking_id = ANY($1::text[]) ORDER BY booking_id FOR UPDATE",
            bookings,
        )
    }
    days: set[tuple[str, str, date]] = set()
    for booking_id, event_id, event_time, change in fresh:
        states[booking_id] = merge(states.get(booking_id, {}), change, version(event_time, event_id))
        touched = days_touched(change)
        if touched is not None:
            days.add((booking_id, *touched))
    rows = []
    notices: set[str] = set()
    for booking_id in bookings:
        state = states[booking_id]
        row = row_of(state)
        rows.append((booking_id, state, row))
        if row is not None and notify:
            notices.add(
                json.dumps(
                    {
                        "location": row["location_id"],
                        "date": row["day"].isoformat(),
                        "booking": booking_id,
                        "status": row["status"],
                    }
                )
            )
    await write_rows(conn, rows)
    if days:
        ordered = sorted(days)
        await conn.execute(
            "INSERT INTO agenda_days (booking_id, location_id, day)"
            " SELECT * FROM unnest($1::text[], $2::text[], $3::date[]) ON CONFLICT DO NOTHING",
            [d[0] for d in ordered],
            [d[1] for d in ordered],
            [d[2] for d in ordered],
        )
    for notice in sorted(notices):
        await conn.execute("SELECT pg_notify($1, $2)", AGENDA_CHANNEL, notice)
    return len(rows)


async def write_rows(conn: asyncpg.Connection, rows: Iterable[tuple[str, State, dict[str, Any] | None]]) -> None:
    records = [
        (
            booking_id,
            state,
            row["location_id"] if row else None,
            row["day"] if row else None,
            row["desk_id"] if row else None,
            row["product_id"] if row else None,
            row["start_at"] if row else None,
            row["end_at"] if row else None,
            row["status"] if row else (state.get("status") or "requested"),
            row["given_name"] if row else None,
            row["family_name"] if row else None,
            row["updated_at"] if row else None,
        )
        for booking_id, state, row in rows
    ]
    await conn.execute(
        "INSERT INTO agenda (booking_id, state, location_id, day, desk_id, product_id, start_at, end_at, status,"
        " given_name, family_name, updated_at)"
        " SELECT * FROM unnest($1::text[], $2::jsonb[], $3::text[], $4::date[], $5::text[], $6::text[],"
        " $7::timestamptz[], $8::timestamptz[], $9::text[], $10::text[], $11::text[], $12::timestamptz[])"
        " ON CONFLICT (booking_id) DO UPDATE SET state = EXCLUDED.state, location_id = EXCLUDED.location_id,"
        " day = EXCLUDED.day, desk_id = EXCLUDED.desk_id, product_id = EXCLUDED.product_id,"
        " start_at = EXCLUDED.start_at, end_at = EXCLUDED.end_at, status = EXCLUDED.status,"
        " given_name = EXCLUDED.given_name, family_name = EXCLUDED.family_name, updated_at = EXCLUDED.updated_at",
        *[list(column) for column in zip(*records, strict=True)],
    )


async def load_folded(conn: asyncpg.Connection, changes: Iterable[Change]) -> int:
    """Fold every change in memory and COPY the result into the (empty) agenda tables: the same
    fold as `apply_changes`, written once per booking; what a rebuild uses. Returns the rows."""
    unique: dict[str, Change] = {}
    for change in changes:
        unique.setdefault(change[1], change)  # a duplicate from the relay: the same event once
    states: dict[str, State] = {}
    days: set[tuple[str, str, date]] = set()
    for booking_id, event_id, event_time, change in unique.values():
        states[booking_id] = merge(states.get(booking_id, {}), change, version(event_time, event_id))
        touched = days_touched(change)
        if touched is not None:
            days.add((booking_id, *touched))
    # COPY speaks PostgreSQL's binary format: jsonb is a version byte and the JSON text.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + json.dumps(value).encode(),
        decoder=lambda raw: json.loads(raw[1:]),
        schema="pg_catalog",
        format="binary",
    )
    try:
        return await _copy_folded(conn, unique, states, days)
    finally:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _copy_folded(
    conn: asyncpg.Connection,
    unique: dict[str, Change],
    states: dict[str, State],
    days: set[tuple[str, str, date]],
) -> int:
    await conn.copy_records_to_table(
        "agenda_changes",
        records=[(c[1], c[0], c[2], c[3]) for c in unique.values()],
        columns=["event_id", "booking_id", "event_time", "changes"],
    )
    rows = []
    for booking_id, state in states.items():
        row = row_of(state) or {}
        rows.append(
            (
                booking_id,
                state,
                row.get("location_id"),
                row.get("day"),
                row.get("desk_id"),
                row.get("product_id"),
                row.get("start_at"),
                row.get("end_at"),
                row.get("status", state.get("status") or "requested"),
                row.get("given_name"),
                row.get("family_name"),
                row.get("updated_at"),
            )
        )
    await conn.copy_records_to_table(
        "agenda",
        records=rows,
        columns=[
            "booking_id",
            "state",
            "location_id",
            "day",
            "desk_id",
            "product_id",
            "start_at",
            "end_at",
            "status",
            "given_name",
            "family_name",
            "updated_at",
        ],
    )
    await conn.copy_records_to_table("agenda_days", records=sorted(days), columns=["booking_id", "location_id", "day"])
    return len(rows)


class AgendaProjection:
    TABLES = TABLES

    def handlers(self) -> dict[str, Any]:
        return {t.TYPE: self.on_event for t in AGENDA_TYPES}

    async def on_event(self, ctx: HandlerContext, delivery: Delivery) -> None:
        """Nothing per event: the batch is folded at once in `before_commit`."""

    async def before_commit(self, ctx: HandlerContext, done: list[Delivery]) -> None:
        changes = [c for d in done if (c := change_of(d.envelope.id, d.envelope.time, d.event)) is not None]
        await apply_changes(ctx.conn, changes)


async def agenda_rows(
    conn: asyncpg.Pool | asyncpg.Connection, location_id: str, day: date, as_of: datetime | None
) -> list[dict[str, Any]]:
    """The visible appointments of a location on a day, now or as they stood at `as_of`."""
    if as_of is None:
        rows = await conn.fetch(
            "SELECT * FROM agenda WHERE location_id = $1 AND day = $2 AND status = ANY($3::text[])"
            " ORDER BY start_at, booking_id",
            location_id,
            day,
            list(VISIBLE),
        )
        return [dict(r.items()) for r in rows]
    changes = await conn.fetch(
        "SELECT c.booking_id, c.event_id, c.event_time, c.changes FROM agenda_changes c"
        " WHERE c.booking_id IN (SELECT booking_id FROM agenda_days WHERE location_id = $1 AND day = $2)"
        " AND c.event_time <= $3",
        location_id,
        day,
        as_of,
    )
    per_booking: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for c in changes:
        per_booking.setdefault(c["booking_id"], []).append((version(c["event_time"], c["event_id"]), c["changes"]))
    result = []
    for booking_id, booking_changes in per_booking.items():
        row = row_of(fold(booking_changes))
        if row and row["location_id"] == location_id and row["day"] == day and row["status"] in VISIBLE:
            result.append(row | {"booking_id": booking_id})
    return sorted(result, key=lambda r: (r["start_at"], r["booking_id"]))
