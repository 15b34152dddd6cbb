"""What the chaos run checks, each from the place that holds the truth: the booking service's store
(its API, with each resident's manage token), the calendar's `reservations` and the agendas, the
SMTP sink's `.eml` files, the consumer groups' lag and the dead letters (the operations API), and
each service's own `dead_letters` and `outbox_parked` tables.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from loket_notifications.domain.keys import booking_key, message_id
from loket_runtime import clock
from tests.conftest import RunningStack
from tools.chaos.load import Booking

# Statuses a booking ends in once decided (API.md): anything but `requested`.
DECIDED = {"held", "confirmed", "rejected", "expired", "cancelled", "checked_in", "no_show", "completed"}
ON_THE_AGENDA = {"held", "confirmed", "checked_in"}
MESSAGE_DOMAIN = "loket.gent"  # notifications' default right-hand side of Message-IDs
MAX_BOOKING_VERSION = 40  # a confirmation's Message-ID names the booking version it was sent at
SERVICES = ("catalogue", "booking", "calendar", "notifications")


def ops_client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30, headers={"Authorization": f"Bearer {live.token('ops')}"})


# --- bookings --------------------------------------------------------------------------------


def booking_states(live: RunningStack, bookings: list[Booking], timeout: float) -> dict[str, dict[str, Any]]:
    """Each accepted booking as its resident sees it (GET with the manage token), waiting up to
    `timeout` seconds for the undecided ones; a booking the store does not have maps to its answer."""
    seen: dict[str, dict[str, Any]] = {}
    pending = {b.id: b for b in bookings}
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        while pending:
            for booking in list(pending.values()):
                try:
                    r = client.get(f"/api/v1/bookings/{booking.id}", params={"token": booking.manage_token})
                    seen[booking.id] = r.json() if r.status_code == 200 else {"status": f"HTTP {r.status_code}"}
                except httpx.HTTPError as exc:
                    seen[booking.id] = {"status": type(exc).__name__}
                if seen[booking.id].get("status") in DECIDED:
                    del pending[booking.id]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(2)
    return seen


def ever_confirmed(state: dict[str, Any]) -> bool:
    return any(step.get("event") == "booking-confirmed" for step in state.get("history", []))


# --- desk-times ------------------------------------------------------------------------------


def overlapping_reservations(live: RunningStack) -> int:
    """Pairs of the calendar's reservations on one desk whose times overlap."""

    async def count() -> int:
        conn = await asyncpg.connect(live.dsn("calendar"))
        try:
            pairs = await conn.fetchval(
                "SELECT count(*) FROM reservations a JOIN reservations b ON a.desk_id = b.desk_id"
                " AND a.location_id = b.location_id AND a.booking_id < b.booking_id AND a.during && b.during"
            )
            return int(pairs)
        finally:
            await conn.close()

    return asyncio.run(count())


def overlapping_on_agendas(live: RunningStack, days: set[tuple[str, date]]) -> int:
    """Pairs of appointments on one desk whose times overlap, on the agenda of each (location, day)."""
    pairs = 0
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    with httpx.Client(base_url=live.base_url, timeout=30, headers=admin) as client:
        for location, day in sorted(days):
            r = client.get(f"/api/v1/agenda/{location}", params={"date": day.isoformat()})
            r.raise_for_status()
            for desk in r.json()["desks"]:
                shown = sorted(
                    (datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"]))
                    for a in desk["appointments"]
                    if a["status"] in ON_THE_AGENDA
                )
                pairs += sum(1 for i, (_, end) in enumerate(shown) for start, _ in shown[i + 1 :] if start < end)
    return pairs


def booked_days(bookings: list[Booking]) -> set[tuple[str, date]]:
    starts = [(b.location, b.start) for b in bookings] + [(b.location, b.rescheduled_to) for b in bookings]
    return {
        (location, datetime.fromisoformat(start).astimezone(clock.BRUSSELS).date())
        for location, start in starts
        if start is not None
    }


# --- confirmations ---------------------------------------------------------------------------


def mail_by_message_id(mail_dir: Path) -> Counter[str]:
    """How many `.eml` files the SMTP sink kept per Message-ID (its file names: `<stamp>-<id>.eml`)."""
    return Counter(path.stem.split("-", 1)[1] for path in mail_dir.glob("*.eml"))


def mails_of(booking_id: str, kind: str, mail: Counter[str]) -> list[int]:
    """The `.eml` files per message of one kind for the booking, whatever booking version each was
    planned at (a Message-ID names the booking, the kind and the version: notifications' keys)."""
    ids = (message_id(booking_key(booking_id, kind, v), MESSAGE_DOMAIN) for v in range(MAX_BOOKING_VERSION))
    return [n for n in (mail[mid.strip("<>")] for mid in ids) if n]


def untold(mail_dir: Path, states: dict[str, dict[str, Any]], timeout: float) -> tuple[list[str], list[str], int]:
    """Residents of a booking ever confirmed who were not told where it stands, those told twice,
    and how many confirmations a later message replaced before they went out.

    Told: a booking confirmed now has its confirmation or, when it was moved before that went out,
    the message of its new time (`rescheduled`); a cancelled one has its cancellation (which voids
    a confirmation not sent yet: notifications' planning). Twice: two files of one message (one
    Message-ID), or two confirmations. Waits up to `timeout` s for the last e-mails."""
    confirmed = {booking_id: state["status"] for booking_id, state in states.items() if ever_confirmed(state)}
    deadline = time.monotonic() + timeout
    while True:
        mail = mail_by_message_id(mail_dir)
        missing, twice, replaced = [], [], 0
        for booking_id, status in confirmed.items():
            sent = {kind: mails_of(booking_id, kind, mail) for kind in ("confirmation", "rescheduled", "cancellation")}
            if status == "cancelled":
                told = bool(sent["cancellation"])
            else:
                told = bool(sent["confirmation"] or sent["rescheduled"])
            replaced += not sent["confirmation"]
            if not told:
                missing.append(booking_id)
            if len(sent["confirmation"]) > 1 or any(n > 1 for files in sent.values() for n in files):
                twice.append(booking_id)
        if not missing or time.monotonic() > deadline:
            return missing, twice, replaced
        time.sleep(1)


def messages_waiting(live: RunningStack) -> set[str]:
    """The messages notifications should have sent by now and has not (its `deliveries` due, pending
    or sending; reminders planned for later do not count)."""

    async def read() -> set[str]:
        conn = await asyncpg.connect(live.dsn("notifications"))
        try:
            rows = await conn.fetch(
                "SELECT id FROM deliveries WHERE status IN ('pending', 'sending') AND due_at <= now()"
            )
            return {str(row["id"]) for row in rows}
        finally:
            await conn.close()

    return asyncio.run(read())


def messages_sent_after(live: RunningStack, waiting: set[str], since: float, timeout: float) -> float | None:
    """Seconds from `since` (time.monotonic()) until every message of `waiting` has gone (sent, or
    finished otherwise); None if some still wait after `timeout`."""
    while time.monotonic() - since < timeout:
        if not waiting & messages_waiting(live):
            return time.monotonic() - since
        time.sleep(0.5)
    return None


def failed_notifications(ops: httpx.Client) -> list[dict[str, Any]]:
    r = ops.get("/api/v1/ops/notifications/failed", params={"limit": 500})
    r.raise_for_status()
    failed: list[dict[str, Any]] = r.json()["notifications"]
    return failed


# --- consumer groups -------------------------------------------------------------------------


def consumer_groups(ops: httpx.Client) -> list[dict[str, Any]] | None:
    """Every consumer group, members or not, from `GET /api/v1/ops/consumers`; None while the
    operations API cannot say (the calendar down, Kafka down)."""
    try:
        r = ops.get("/api/v1/ops/consumers")
        if r.status_code != 200:
            return None
        report = r.json()
        groups: list[dict[str, Any]] = report["groups"] + report["groups_without_members"]
        return groups
    except (httpx.HTTPError, ValueError, KeyError):
        return None


@dataclass
class Convergence:
    """How the consumer groups caught up after a fault (seconds from its end; None: not seen)."""

    backlog_applied_s: float | None = None  # every record there was at the end of the fault applied
    lag_zero_s: float | None = None  # a moment when no group had a record left to apply
    behind_at_bound: dict[str, int] | None = None  # records of the backlog each group still had


def converge(ops: httpx.Client, since: float, bound: float) -> Convergence:
    """Watch the groups from `since` (time.monotonic(), the end of a fault) for up to twice `bound`.

    Under a load that goes on, lag 0 is a moment between two requests that a busy machine may not
    offer; what the fault left behind is the records there were when it ended. So the backlog is
    measured against the partitions' ends as first read after `since`, and lag 0 is noted when seen."""
    seen = Convergence()
    ends: dict[tuple[str, int], int] | None = None
    while time.monotonic() - since < 2 * bound:
        groups = consumer_groups(ops)
        elapsed = time.monotonic() - since
        if groups is not None:
            parts = [(g["group"], p) for g in groups for p in g["partitions"]]
            if ends is None:
                ends = {(p["topic"], p["partition"]): p["end"] for _, p in parts}
            behind: Counter[str] = Counter()
            for group, p in parts:
                behind[group] += max(0, ends.get((p["topic"], p["partition"]), 0) - (p["committed"] or 0))
            behind = +behind  # only the groups still behind
            if seen.lag_zero_s is None and not any(g["lag"] for g in groups):
                seen.lag_zero_s = elapsed
            if seen.backlog_applied_s is None and not behind:
                seen.backlog_applied_s = elapsed
            if seen.behind_at_bound is None and elapsed > bound:
                seen.behind_at_bound = dict(behind)
        if seen.backlog_applied_s is not None and (seen.lag_zero_s is not None or elapsed > bound):
            break
        time.sleep(0.5)
    return seen


# --- dead letters ----------------------------------------------------------------------------


def stored_letters(live: RunningStack) -> tuple[set[tuple[Any, ...]], set[str]]:
    """Every record a consumer dead-lettered, as (group, topic, partition, offset), and every record
    an outbox relay parked, as the reference its notice carries (`<service>-outbox:outbox_parked/<id>`)."""

    async def read() -> tuple[set[tuple[Any, ...]], set[str]]:
        letters: set[tuple[Any, ...]] = set()
        parked: set[str] = set()
        for service in SERVICES:
            conn = await asyncpg.connect(live.dsn(service))
            try:
                rows = await conn.fetch('SELECT consumer_group, topic, partition, "offset" FROM dead_letters')
                letters |= {tuple(row) for row in rows}
                ids = await conn.fetch("SELECT id FROM outbox_parked")
                parked |= {f"{service}-outbox:outbox_parked/{row['id']}" for row in ids}
            finally:
                await conn.close()
        return letters, parked

    return asyncio.run(read())


def invisible_letters(live: RunningStack, ops: httpx.Client, timeout: float) -> tuple[int, int, list[str]]:
    """(dead letters stored, parked records stored, those of either not in /api/v1/ops/dead-letters
    after up to `timeout` s)."""
    letters, parked = stored_letters(live)
    deadline = time.monotonic() + timeout
    while True:
        r = ops.get("/api/v1/ops/dead-letters", params={"limit": 1000})
        r.raise_for_status()
        listed = r.json()["dead_letters"]
        shown = {(d["group"], d["topic"], d["partition"], d["offset"]) for d in listed}
        references = {d["reference"] for d in listed if d["parked"]}
        missing = [f"{g} {t}/{p}@{o}" for g, t, p, o in sorted(letters - shown)] + sorted(parked - references)
        if not missing or time.monotonic() > deadline:
            return len(letters), len(parked), missing
        time.sleep(1)
