"""SQL of the calendar: catalogue view, reservations, hold-backs, decisions and the agenda."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
from asyncpg import Range

from loket_calendar.domain.schedule import Booked, Interval

Executor = asyncpg.Connection | asyncpg.Pool


async def expire_and_take(
    conn: asyncpg.Connection,
    location_id: str,
    start: datetime,
    end: datetime,
    now: datetime,
    ignore_booking: str | None = None,
) -> tuple[list[asyncpg.Record], list[Booked]]:
    """In one round trip: delete the location's holds that ran out by `now` (returned, so their
    expiry can be published), and list what stays taken around [start, end): reservations and
    still-held-back freed slots. The allocator calls this before every decision."""
    rows = await conn.fetch(
        "WITH expired AS (DELETE FROM reservations WHERE booking_id IN (SELECT booking_id FROM reservations"
        "  WHERE status = 'held' AND hold_expires_at <= $4 AND location_id = $1"
        "  ORDER BY hold_expires_at, booking_id FOR UPDATE)"
        "  RETURNING booking_id, location_id, desk_id, product_id, status, hold_expires_at, language, during)"
        " SELECT 'expired' AS kind, booking_id, location_id, desk_id, product_id, status, hold_expires_at, language,"
        "  lower(during) AS start_at, upper(during) AS end_at FROM expired"
        " UNION ALL SELECT 'taken', booking_id, location_id, desk_id, product_id, NULL, NULL, NULL,"
        "  lower(during), upper(during)"
        "  FROM reservations WHERE location_id = $1 AND during && tstzrange($2, $3)"
        "  AND booking_id IS DISTINCT FROM $5 AND booking_id NOT IN (SELECT booking_id FROM expired)"
        " UNION ALL SELECT 'held-back', NULL, location_id, desk_id, NULL, NULL, NULL, NULL,"
        "  lower(during), upper(during)"
        "  FROM held_back WHERE location_id = $1 AND during && tstzrange($2, $3) AND available_from > $4",
        location_id,
        start,
        end,
        now,
        ignore_booking,
    )
    expired = sorted((r for r in rows if r["kind"] == "expired"), key=lambda r: (r["hold_expires_at"], r["booking_id"]))
    taken = [Booked(r["desk_id"], Interval(r["start_at"], r["end_at"])) for r in rows if r["kind"] != "expired"]
    return expired, taken


async def insert_reservation(
    conn: asyncpg.Connection,
    booking_id: str,
    location_id: str,
    desk_id: str,
    product_id: str,
    start: datetime,
    end: datetime,
    status: str,
    hold_expires_at: datetime | None,
    language: str,
) -> bool:
    # DO NOTHING covers the exclusion constraint too: a desk-time another allocator took first
    # (during a rebalance) makes this answer False instead of aborting the transaction.
    status: str = await conn.execute(
        "INSERT INTO reservations (booking_id, location_id, desk_id, product_id, during, status, hold_expires_at,"
        " language) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING",
        booking_id,
        location_id,
        desk_id,
        product_id,
        Range(start, end),
        status,
        hold_expires_at,
        language,
    )
    return status.endswith(" 1")


async def reservation(conn: Executor, booking_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "SELECT *, lower(during) AS start_at, upper(during) AS end_at FROM reservations WHERE booking_id = $1",
        booking_id,
    )
    return row


async def record_decision(conn: asyncpg.Connection, booking_id: str, outcome: str) -> bool:
    """False when this booking was decided before (a redelivered request)."""
    status = await conn.execute(
        "INSERT INTO decisions (booking_id, outcome) VALUES ($1, $2) ON CONFLICT DO NOTHING", booking_id, outcome
    )
    return bool(status.endswith(" 1"))


async def hold_back(
    conn: asyncpg.Connection, desk_id: str, location_id: str, start: datetime, end: datetime, available_from: datetime
) -> None:
    await conn.execute(
        "INSERT INTO held_back (desk_id, location_id, during, available_from) VALUES ($1, $2, $3, $4)"
        " ON CONFLICT (desk_id, during) DO UPDATE SET available_from = EXCLUDED.available_from",
        desk_id,
        location_id,
        Range(start, end),
        available_from,
    )


async def taken_in_range(
    conn: Executor, location_ids: list[str], start: datetime, end: datetime, now: datetime
) -> tuple[dict[str, list[Booked]], dict[str, datetime]]:
    """What is taken at `now` per location around [start, end), and per location the first instant
    after `now` at which some of it becomes free by time alone (a hold running out, a held-back
    desk-time offered again): until then, and until a reservation changes, the answer holds."""
    rows = await conn.fetch(
        "SELECT location_id, desk_id, lower(during) AS s, upper(during) AS e,"
        " CASE WHEN status = 'held' THEN hold_expires_at END AS frees_at FROM reservations"
        " WHERE location_id = ANY($1::text[]) AND during && tstzrange($2, $3)"
        # a hold that ran out by `now` is free: a request now would expire it and take the desk
        " AND NOT (status = 'held' AND hold_expires_at <= $4)"
        " UNION ALL SELECT location_id, desk_id, lower(during), upper(during), available_from FROM held_back"
        " WHERE location_id = ANY($1::text[]) AND during && tstzrange($2, $3) AND available_from > $4",
        location_ids,
        start,
        end,
        now,
    )
    taken: dict[str, list[Booked]] = {}
    frees_at: dict[str, datetime] = {}
    for r in rows:
        location_id = r["location_id"]
        taken.setdefault(location_id, []).append(Booked(r["desk_id"], Interval(r["s"], r["e"])))
        if r["frees_at"] is not None and (location_id not in frees_at or r["frees_at"] < frees_at[location_id]):
            frees_at[location_id] = r["frees_at"]
    return taken, frees_at


@dataclass(frozen=True)
class Freed:
    desk_id: str
    location_id: str
    product_id: str
    start: datetime
    end: datetime


async def delete_reservation(conn: asyncpg.Connection, booking_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        "DELETE FROM reservations WHERE booking_id = $1"
        " RETURNING *, lower(during) AS start_at, upper(during) AS end_at",
        booking_id,
    )
    return row


async def move_reservation(
    conn: asyncpg.Connection, booking_id: str, desk_id: str, start: datetime, end: datetime
) -> None:
    await conn.execute(
        "UPDATE reservations SET desk_id = $2, during = $3 WHERE booking_id = $1",
        booking_id,
        desk_id,
        Range(start, end),
    )


async def confirm_hold(conn: asyncpg.Connection, booking_id: str) -> None:
    await conn.execute(
        "UPDATE reservations SET status = 'confirmed', hold_expires_at = NULL"
        " WHERE booking_id = $1 AND status = 'held'",
        booking_id,
    )


async def take_expired_holds(
    conn: asyncpg.Connection, deadline: datetime, location_id: str | None = None
) -> list[asyncpg.Record]:
    """Delete and return the holds (of one location, or all) that ran out by `deadline`.

    The timer (all locations) skips rows another transaction holds; the allocator (one location)
    waits for them, so its decision sees the hold either expired or still there, never half."""
    lock = "FOR UPDATE" if location_id is not None else "FOR UPDATE SKIP LOCKED"
    rows: list[asyncpg.Record] = await conn.fetch(
        "DELETE FROM reservations WHERE booking_id IN (SELECT booking_id FROM reservations"
        " WHERE status = 'held' AND hold_expires_at <= $1 AND ($2::text IS NULL OR location_id = $2)"
        f" ORDER BY hold_expires_at, booking_id {lock})"
        " RETURNING *, lower(during) AS start_at, upper(during) AS end_at",
        deadline,
        location_id,
    )
    return sorted(rows, key=lambda r: (r["hold_expires_at"], r["booking_id"]))


async def lock_locations(conn: asyncpg.Connection, location_ids: list[str]) -> None:
    """One writer per location: the allocator's batch and the hold timer take this lock (for the
    transaction) before they change a location's reservations. Taken in one order: no deadlock."""
    if location_ids:
        await conn.execute(
            "SELECT pg_advisory_xact_lock(hashtext('loket.calendar.location'), hashtext(loc))"
            " FROM (SELECT DISTINCT loc FROM unnest($1::text[]) AS loc ORDER BY loc) AS locations",
            location_ids,
        )


async def announce_changes(conn: asyncpg.Connection, channel: str, location_ids: list[str]) -> None:
    """NOTIFY each location on `channel`: delivered when (and only if) the transaction commits."""
    if location_ids:
        await conn.execute("SELECT pg_notify($1, loc) FROM unnest($2::text[]) AS loc", channel, location_ids)


async def locations_with_holds_due(conn: Executor, deadline: datetime) -> list[str]:
    rows = await conn.fetch(
        "SELECT DISTINCT location_id FROM reservations WHERE status = 'held' AND hold_expires_at <= $1"
        " ORDER BY location_id",
        deadline,
    )
    return [r["location_id"] for r in rows]


async def prune_held_back(conn: Executor, before: datetime) -> None:
    await conn.execute("DELETE FROM held_back WHERE available_from < $1", before)


async def active_reservations(conn: Executor, location_ids: list[str], now: datetime) -> list[asyncpg.Record]:
    """The reservations of these locations still standing at `now`: ending after it, and not a
    hold that ran out by then (the timer frees those)."""
    rows: list[asyncpg.Record] = await conn.fetch(
        "SELECT *, lower(during) AS start_at, upper(during) AS end_at FROM reservations"
        " WHERE location_id = ANY($1::text[]) AND upper(during) > $2"
        " AND NOT (status = 'held' AND hold_expires_at <= $2)"
        " ORDER BY lower(during), booking_id",
        location_ids,
        now,
    )
    return rows
