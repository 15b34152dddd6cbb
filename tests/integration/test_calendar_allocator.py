"""The allocator against the real PostgreSQL: the exclusion-constraint backstop (also with two
allocators deciding at once, as in a rebalance), holds that expire on time, and freed slots that
come back only after the hold-back, with `slot-released` saying from when."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from asyncpg import Range

from loket_calendar.application.allocator import Allocator, AllocatorPolicy
from loket_calendar.entrypoints.app import MIGRATIONS
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_runtime.consumer import Delivery, HandlerContext
from loket_runtime.db import create_pool, migrate
from loket_runtime.outbox import Outbox
from tests.conftest import RunningStack
from tests.unit.calendar.model import at, make_view

pytestmark = pytest.mark.asyncio(loop_scope="session")

MONDAY = date(2027, 1, 11)
T0 = datetime.fromisoformat("2027-01-01T08:00:00+01:00")


@pytest.fixture(scope="session")
async def calendar_db(infra: RunningStack) -> AsyncIterator[str]:
    infra.stack.postgres.create_databases(["loket_calendar_it"])
    dsn = infra.stack.postgres.dsn("loket_calendar_it")
    await migrate(dsn, MIGRATIONS)
    yield dsn


@pytest.fixture
async def pool(calendar_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(calendar_db)
    await pool.execute("TRUNCATE reservations, held_back, decisions, outbox")
    yield pool
    await pool.close()


def delivery(event: ev.Event) -> Delivery:
    envelope = Envelope(type=event.TYPE, source="tests", subject=getattr(event, "booking_id", None), data={})
    return Delivery(envelope, event, "loket.bookings", 0, 0, "loc")


def request(booking_id: str, product: str, start: datetime, now: datetime) -> Delivery:
    minutes = {"short": 10, "card": 20, "long": 45}[product]
    return delivery(
        ev.BookingRequested(
            booking_id=booking_id,
            location_id="loc",
            product_id=product,
            start=start,
            end=start + timedelta(minutes=minutes),
            person=ev.PersonName(given_name="G", family_name=booking_id),
            requested_at=now,
        )
    )


async def decide(pool: asyncpg.Pool, allocator: Allocator, d: Delivery) -> None:
    async with pool.acquire() as conn, conn.transaction():
        await allocator.handlers()[d.envelope.type](HandlerContext(conn, Outbox()), d)  # type: ignore[operator]


async def emitted(pool: asyncpg.Pool) -> list[tuple[str, dict[str, Any]]]:
    rows = await pool.fetch("SELECT headers, value FROM outbox ORDER BY id")
    return [(dict(r["headers"])["ce_type"], json.loads(r["value"])) for r in rows]


async def test_the_exclusion_constraint_refuses_two_bookings_on_one_desk_time(pool: asyncpg.Pool) -> None:
    insert = (
        "INSERT INTO reservations (booking_id, location_id, desk_id, product_id, during, status)"
        " VALUES ($1, 'loc', $2, 'card', $3, 'confirmed')"
    )
    nine, twenty_past = at(MONDAY, 9, 0), at(MONDAY, 9, 20)
    await pool.execute(insert, "a", "d1", Range(nine, twenty_past))
    with pytest.raises(asyncpg.ExclusionViolationError):
        await pool.execute(insert, "b", "d1", Range(at(MONDAY, 9, 10), at(MONDAY, 9, 30)))
    await pool.execute(insert, "c", "d1", Range(twenty_past, at(MONDAY, 9, 40)))  # touching is fine
    await pool.execute(insert, "d", "d2", Range(nine, twenty_past))  # another desk is fine


async def test_two_allocators_at_once_never_double_book(pool: asyncpg.Pool) -> None:
    """A rebalance: two allocators decide for one location in overlapping transactions."""
    first, second = Allocator(make_view(), AllocatorPolicy()), Allocator(make_view(), AllocatorPolicy())
    start = at(MONDAY, 9, 0)  # d1 and d2 serve cards at 09:00
    conn_a, conn_b = await pool.acquire(), await pool.acquire()
    try:
        tx_a = conn_a.transaction()
        await tx_a.start()
        await first.on_requested(HandlerContext(conn_a, Outbox()), request("a", "card", start, T0))
        tx_b = conn_b.transaction()
        await tx_b.start()
        # B does not see A's uncommitted reservation, picks the same desk and waits on the constraint.
        b = asyncio.create_task(second.on_requested(HandlerContext(conn_b, Outbox()), request("b", "card", start, T0)))
        await asyncio.sleep(0.3)
        assert not b.done()
        await tx_a.commit()
        await b  # the constraint refused B's first choice: B took the other desk
        await tx_b.commit()
        tx_c = conn_b.transaction()
        await tx_c.start()
        await second.on_requested(HandlerContext(conn_b, Outbox()), request("c", "card", start, T0))
        await tx_c.commit()
    finally:
        await pool.release(conn_a)
        await pool.release(conn_b)
    desks = await pool.fetch("SELECT booking_id, desk_id FROM reservations ORDER BY booking_id")
    assert [(r["booking_id"], r["desk_id"]) for r in desks][:1] == [("a", "d2")]
    assert {r["desk_id"] for r in desks} == {"d1", "d2"} and len(desks) == 2
    decisions = [(t, d["booking_id"]) for t, d in await emitted(pool)]
    assert decisions == [("slot-reserved", "a"), ("slot-reserved", "b"), ("slot-rejected", "c")]


async def test_a_hold_expires_on_time_and_the_slot_returns_after_the_holdback(pool: asyncpg.Pool) -> None:
    allocator = Allocator(make_view(), AllocatorPolicy(release_holdback=timedelta(minutes=10)))
    start = at(MONDAY, 13, 0)  # only d3 serves long appointments at 13:00
    await decide(pool, allocator, request("held", "long", start, T0))
    expires = T0 + timedelta(minutes=30)
    assert await pool.fetchval("SELECT hold_expires_at FROM reservations WHERE booking_id = 'held'") == expires

    assert await allocator.expire_holds(pool, expires - timedelta(seconds=1), timedelta(0)) == 0
    assert await allocator.expire_holds(pool, expires, timedelta(0)) == 1
    types = [(t, d) for t, d in await emitted(pool)]
    assert [t for t, _ in types] == ["slot-reserved", "hold-expired", "slot-released"]
    released = types[2][1]
    assert released["cause"] == "expired" and released["desk_id"] == "d3"
    assert datetime.fromisoformat(released["available_from"]) == expires + timedelta(minutes=10)

    await decide(pool, allocator, request("bot", "long", start, expires + timedelta(minutes=5)))
    await decide(pool, allocator, request("resident", "long", start, expires + timedelta(minutes=10)))
    decisions = [(t, d["booking_id"]) for t, d in await emitted(pool) if t.startswith("slot-r") and "booking_id" in d]
    assert decisions[-2:] == [("slot-rejected", "bot"), ("slot-reserved", "resident")]


async def test_a_request_expires_a_due_hold_itself_whatever_the_timer_did(pool: asyncpg.Pool) -> None:
    """Decisions depend on the events only: a request made after a hold ran out gets the desk,
    even when the timer has not run yet."""
    allocator = Allocator(make_view(), AllocatorPolicy())
    start = at(MONDAY, 13, 0)
    await decide(pool, allocator, request("held", "long", start, T0))
    await decide(pool, allocator, request("next", "long", start, T0 + timedelta(minutes=30)))
    types = [(t, d.get("booking_id")) for t, d in await emitted(pool)]
    assert types == [
        ("slot-reserved", "held"),
        ("hold-expired", "held"),
        ("slot-released", None),
        ("slot-reserved", "next"),
    ]


async def test_cancel_and_reschedule_release_what_they_free(pool: asyncpg.Pool) -> None:
    allocator = Allocator(make_view(), AllocatorPolicy())
    await decide(pool, allocator, request("a", "card", at(MONDAY, 9, 0), T0))
    reschedule = ev.RescheduleRequested(
        booking_id="a",
        request_id="r1",
        location_id="loc",
        product_id="card",
        old_start=at(MONDAY, 9, 0),
        new_start=at(MONDAY, 9, 10),
        new_end=at(MONDAY, 9, 30),
        requested_at=T0,
    )
    await decide(pool, allocator, delivery(reschedule))
    await decide(pool, allocator, delivery(reschedule))  # a redelivery decides nothing twice
    cancel = ev.BookingCancelled(
        booking_id="a",
        location_id="loc",
        product_id="card",
        desk_id="d2",
        start=at(MONDAY, 9, 10),
        end=at(MONDAY, 9, 30),
        cancelled_by="resident",
        reason="-",
        cancelled_at=T0,
    )
    await decide(pool, allocator, delivery(cancel))
    out = await emitted(pool)
    assert [t for t, _ in out] == ["slot-reserved", "reschedule-reserved", "slot-released", "slot-released"]
    moved, freed = out[2][1], out[3][1]

    def span(d: dict[str, Any]) -> tuple[datetime, datetime, str]:
        return datetime.fromisoformat(d["start"]), datetime.fromisoformat(d["end"]), d["cause"]

    # A 10-minute move on one desk frees only the 10 minutes it left; the cancel frees the rest.
    assert span(moved) == (at(MONDAY, 9, 0), at(MONDAY, 9, 10), "rescheduled")
    assert span(freed) == (at(MONDAY, 9, 10), at(MONDAY, 9, 30), "cancelled")
    assert await pool.fetchval("SELECT count(*) FROM reservations") == 0
