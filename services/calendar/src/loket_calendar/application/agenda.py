"""The agenda projection: one row per booking as the counter sees it, plus its history.

It reads the booking and calendar topics, which Kafka does not order against each other, so
every change is a merge: a booking's status only moves forward (requested < held < confirmed <
checked_in < a final state), and fields arrive from whichever event knows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg

from loket_calendar.domain.schedule import local_day
from loket_contracts import events as ev
from loket_runtime.consumer import Delivery, HandlerContext

AGENDA_CHANNEL = "loket_agenda"
STATUS_RANK = {
    "requested": 0,
    "held": 1,
    "confirmed": 2,
    "checked_in": 3,
    "completed": 4,
    "no_show": 4,
    "cancelled": 4,
    "expired": 4,
    "rejected": 4,
}
VISIBLE = ("held", "confirmed", "checked_in", "completed", "no_show", "cancelled")


def changes_for(event: ev.Event) -> dict[str, Any] | None:
    """The agenda fields an event sets, or None when it does not touch the agenda."""
    match event:
        case ev.BookingRequested():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "status": "requested",
                "given_name": event.person.given_name,
                "family_name": event.person.family_name,
            }
        case ev.SlotReserved():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "desk_id": event.desk_id,
                "status": "held" if event.hold_expires_at else "confirmed",
            }
        case ev.BookingConfirmed():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "desk_id": event.desk_id,
                "status": "confirmed",
            }
        case ev.SlotRejected() | ev.BookingRejected():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.start,
                "status": "rejected",
            }
        case ev.BookingCancelled():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "status": "cancelled",
            }
        case ev.HoldExpired():
            return {"location_id": event.location_id, "start_at": event.start, "end_at": event.end, "status": "expired"}
        case ev.BookingExpired():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "status": "expired",
            }
        case ev.RescheduleReserved():
            return {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "desk_id": event.desk_id,
                "moved": True,
            }
        case ev.AttendanceRecorded():
            return {"location_id": event.location_id, "status": event.outcome}
    return None


async def apply_change(
    conn: asyncpg.Connection, booking_id: str, event_time: datetime, changes: dict[str, Any]
) -> str | None:
    """Merge `changes` into the booking's row; return the location whose agenda changed."""
    current = await conn.fetchrow("SELECT * FROM agenda WHERE booking_id = $1 FOR UPDATE", booking_id)
    row: dict[str, Any] = dict(current.items()) if current else {}
    moved = changes.pop("moved", False)
    old_day = row.get("day")
    for key, value in changes.items():
        if key == "status":
            status = row.get("status")
            if status is not None and (STATUS_RANK[value] < STATUS_RANK[status] or STATUS_RANK[status] == 4):
                continue  # statuses only move forward, and the first final state stands
            row[key] = value
        elif key in ("location_id", "given_name", "family_name") or moved or row.get(key) is None:
            row[key] = value  # times and desk change only by a reschedule
    if "start_at" not in row or "location_id" not in row or "product_id" not in row:
        return None  # wait for an event that knows when and what
    row.setdefault("status", "requested")
    row.setdefault("end_at", row["start_at"])
    row["day"] = local_day(row["start_at"])
    row["updated_at"] = event_time
    await conn.execute(
        "INSERT INTO agenda (booking_id, location_id, day, desk_id, product_id, start_at, end_at, status, given_name,"
        " family_name, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        " ON CONFLICT (booking_id) DO UPDATE SET location_id = EXCLUDED.location_id, day = EXCLUDED.day,"
        " desk_id = EXCLUDED.desk_id, product_id = EXCLUDED.product_id, start_at = EXCLUDED.start_at,"
        " end_at = EXCLUDED.end_at, status = EXCLUDED.status, given_name = EXCLUDED.given_name,"
        " family_name = EXCLUDED.family_name, updated_at = EXCLUDED.updated_at",
        booking_id,
        row["location_id"],
        row["day"],
        row.get("desk_id"),
        row["product_id"],
        row["start_at"],
        row["end_at"],
        row["status"],
        row.get("given_name"),
        row.get("family_name"),
        event_time,
    )
    snapshot = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()}
    if old_day is not None and old_day != row["day"]:
        await conn.execute(
            "INSERT INTO agenda_history (booking_id, location_id, day, event_time, row_data) VALUES ($1,$2,$3,$4,$5)",
            booking_id,
            row["location_id"],
            old_day,
            event_time,
            snapshot | {"status": "moved-away"},
        )
    await conn.execute(
        "INSERT INTO agenda_history (booking_id, location_id, day, event_time, row_data) VALUES ($1, $2, $3, $4, $5)",
        booking_id,
        row["location_id"],
        row["day"],
        event_time,
        snapshot,
    )
    return str(row["location_id"])


class AgendaProjection:
    TABLES = ("agenda", "agenda_history")

    def handlers(self) -> dict[str, object]:
        types = (
            ev.BookingRequested,
            ev.SlotReserved,
            ev.BookingConfirmed,
            ev.SlotRejected,
            ev.BookingRejected,
            ev.BookingCancelled,
            ev.HoldExpired,
            ev.BookingExpired,
            ev.RescheduleReserved,
            ev.AttendanceRecorded,
        )
        return {t.TYPE: self.on_event for t in types}

    async def on_event(self, ctx: HandlerContext, delivery: Delivery) -> None:
        changes = changes_for(delivery.event)
        if changes is None:
            return
        booking_id = str(getattr(delivery.event, "booking_id"))  # noqa: B009
        location = await apply_change(ctx.conn, booking_id, delivery.envelope.time, changes)
        if location is not None:
            await ctx.conn.execute("SELECT pg_notify($1, $2)", AGENDA_CHANNEL, location)


async def agenda_rows(
    conn: asyncpg.Pool | asyncpg.Connection, location_id: str, day: Any, as_of: datetime | None
) -> list[dict[str, Any]]:
    if as_of is None:
        rows = await conn.fetch(
            "SELECT * FROM agenda WHERE location_id = $1 AND day = $2 AND status = ANY($3::text[]) ORDER BY start_at",
            location_id,
            day,
            list(VISIBLE),
        )
        return [dict(r.items()) for r in rows]
    rows = await conn.fetch(
        "SELECT DISTINCT ON (booking_id) booking_id, row_data FROM agenda_history"
        " WHERE location_id = $1 AND day = $2 AND event_time <= $3 ORDER BY booking_id, event_time DESC, id DESC",
        location_id,
        day,
        as_of,
    )
    result = []
    for r in rows:
        data = dict(r["row_data"])
        if data.get("status") in VISIBLE:
            for key in ("start_at", "end_at", "updated_at"):
                data[key] = datetime.fromisoformat(data[key])
            data["booking_id"] = r["booking_id"]
            result.append(data)
    return sorted(result, key=lambda d: d["start_at"])
