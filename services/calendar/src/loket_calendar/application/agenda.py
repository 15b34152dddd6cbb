"""The agenda projection: one row per booking as the counter sees it, plus every change, for `as_of`.

Tables (see migrations/002): `agenda` (the folded state and the row it shows), `agenda_changes`
(each event's changes, by event id, with the event's time) and `agenda_days` (every location and
day a booking was ever placed on). The fold is pure (`domain/agenda.py`) and order-independent,
so the incremental consumer, a rebuild from offset zero and an `as_of` query all agree.

The consumer applies a whole batch at once (`before_commit`): one read of the touched rows, the
merge in memory, and bulk writes, in the batch's transaction.
"""

from __future__ import annotations

import gc
import json
from collections.abc import AsyncIterable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

import asyncpg
import orjson

from loket_calendar.domain.agenda import (
    VISIBLE,
    AgendaFold,
    State,
    changes_for,
    days_touched,
    fold,
    merge,
    row_of,
    version,
)
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope, EnvelopeError
from loket_contracts.upcasting import parse_event
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
    ev.ReservationMoved,  # a catalogue change moved it to another desk
)
AGENDA_MODELS: dict[str, type[ev.Event]] = {t.TYPE: t for t in AGENDA_TYPES}
TABLES = ("agenda", "agenda_changes", "agenda_days")
AGENDA_COLUMNS = (
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
)

Change = tuple[str, str, datetime, dict[str, Any]]  # booking id, event id, event time, changes


def change_of(envelope_id: str, event_time: datetime, event: ev.Event) -> Change | None:
    changes = changes_for(event)
    booking_id = getattr(event, "booking_id", None)
    if changes is None or booking_id is None:
        return None
    return str(booking_id), envelope_id, event_time, changes


def change_of_record(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> Change | None:
    """The agenda change a Kafka record carries, or None: not an agenda event, or unreadable (the
    live consumer dead-lettered those, so a rebuild skips them the same way).

    A rebuild decodes every event of the log, and this is most of its time. So a record of the
    current schema version is read without building its envelope, its body validated straight
    from the JSON bytes; anything else, and whatever that refuses, is judged by the envelope's own
    reading, as the live consumer reads it (a unit test holds the two to the same answers)."""
    try:
        attrs = {name: raw.decode() for name, raw in headers or ()}  # all UTF-8, as for the envelope
        model = AGENDA_MODELS.get(attrs.get("ce_type", ""))
        if model is None:
            return None
        if (
            value is not None
            and {"ce_id", "ce_source", "ce_time"} <= attrs.keys()
            and attrs.get("ce_schemaversion", "1") == str(model.VERSION)
        ):
            event = model.model_validate_json(value)
            return change_of(attrs["ce_id"], datetime.fromisoformat(attrs["ce_time"]), event)
    except (ValueError, AttributeError):  # pydantic's ValidationError is a ValueError
        pass
    return _change_of_envelope(headers, value)


def _change_of_envelope(headers: Sequence[tuple[str, bytes]] | None, value: bytes | None) -> Change | None:
    try:
        envelope = Envelope.from_kafka(headers, value)
        if envelope.type not in AGENDA_MODELS:
            return None
        event = parse_event(envelope.type, envelope.schemaversion, envelope.data)
    except (EnvelopeError, ValueError, LookupError):
        return None
    return change_of(envelope.id, envelope.time, event)


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


def agenda_record(booking_id: str, state: State, row: dict[str, Any] | None) -> tuple[Any, ...]:
    """The `agenda` table's columns (AGENDA_COLUMNS) of a booking's state and the row it shows."""
    if row is None:
        return (booking_id, state, *(None,) * 6, state.get("status") or "requested", None, None, None)
    return (
        booking_id,
        state,
        row["location_id"],
        row["day"],
        row["desk_id"],
        row["product_id"],
        row["start_at"],
        row["end_at"],
        row["status"],
        row["given_name"],
        row["family_name"],
        row["updated_at"],
    )


async def write_rows(conn: asyncpg.Connection, rows: Iterable[tuple[str, State, dict[str, Any] | None]]) -> None:
    records = [agenda_record(booking_id, state, row) for booking_id, state, row in rows]
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


async def load_rebuilt(conn: asyncpg.Connection, batches: AsyncIterable[Iterable[Change]]) -> int:
    """Fold every change into the (empty) agenda tables, each event once; what a rebuild uses, with
    the same fold as `apply_changes`. Returns the agenda rows written.

    Each event's changes are COPYed while the batches still arrive, so PostgreSQL stores and indexes
    them on its own core while this one decodes; the folded rows follow, once per booking."""
    # COPY speaks PostgreSQL's binary format: jsonb is a version byte and the JSON text.
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + orjson.dumps(value),
        decoder=lambda raw: orjson.loads(raw[1:]),
        schema="pg_catalog",
        format="binary",
    )
    try:
        with _collector_paused():
            return await _copy_folded(conn, batches)  # the fold is freed before the collector is back
    finally:
        await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _copy_folded(conn: asyncpg.Connection, batches: AsyncIterable[Iterable[Change]]) -> int:
    folded = AgendaFold()

    async def fresh_changes() -> AsyncIterable[tuple[Any, ...]]:
        async for changes in batches:
            for booking_id, event_id, event_time, change in changes:
                if folded.add(booking_id, event_id, event_time, change):
                    yield event_id, booking_id, event_time, change

    await conn.copy_records_to_table(
        "agenda_changes", records=fresh_changes(), columns=["event_id", "booking_id", "event_time", "changes"]
    )
    await conn.copy_records_to_table(
        "agenda",
        records=(agenda_record(b, state, row_of(state)) for b, state in folded.states.items()),  # sent as made
        columns=AGENDA_COLUMNS,
    )
    await conn.copy_records_to_table(
        "agenda_days", records=list(folded.days), columns=["booking_id", "location_id", "day"]
    )
    return len(folded.states)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection meanwhile: a rebuild allocates a million objects that all live
    until it ends and form no cycles, and the collector would walk them again and again (a third of
    the fold's time). Reference counting frees everything else as usual."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


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
    """The visible appointments of a location on a day, now or as they stood at `as_of`.

    Only bookings whose own request (`booking-requested`, the one event that names the person) has
    been seen are shown: a decision about a booking nobody asked for (forged, or misrouted) never
    appears as an appointment, whatever order the two topics arrive in."""
    if as_of is None:
        rows = await conn.fetch(
            "SELECT * FROM agenda WHERE location_id = $1 AND day = $2 AND status = ANY($3::text[])"
            " AND given_name IS NOT NULL ORDER BY start_at, booking_id",
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
        if (
            row
            and row["location_id"] == location_id
            and row["day"] == day
            and row["status"] in VISIBLE
            and row["given_name"] is not None
        ):
            result.append(row | {"booking_id": booking_id})
    return sorted(result, key=lambda r: (r["start_at"], r["booking_id"]))
