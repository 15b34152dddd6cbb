"""The allocator's fast path (a batch decided in memory over a `BatchLedger`, written once) gives
exactly the decisions of the careful path (a statement per step), for any sequence of requests,
confirmations, cancellations, reschedules and passing time at two locations, cut into batches
anywhere. Checked against the real PostgreSQL: the same events in the outbox, in the same order,
and the same reservations, hold-backs and decisions in the tables. Also: a flush that meets a
desk-time another writer took replays the batch carefully, and the timer waits for a batch."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import pytest
from aiokafka.structs import ConsumerRecord
from asyncpg import Range
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from loket_calendar.application.allocator import Allocator, AllocatorPolicy
from loket_calendar.domain.schedule import CatalogueView
from loket_calendar.entrypoints.app import MIGRATIONS
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import BOOKINGS
from loket_runtime.consumer import HandlerContext, PartitionBatchConsumer, as_record
from loket_runtime.db import create_pool, migrate
from tests.conftest import RunningStack
from tests.unit.calendar.model import at, make_view

WEEK = [date(2027, 1, 11) + timedelta(days=n) for n in range(5)]  # Monday .. Friday
T0 = datetime.fromisoformat("2027-01-01T08:00:00+01:00")
LOCATIONS = ("loc", "loc2")
DURATION = {"short": 10, "card": 20, "long": 45}
TABLES = "reservations, held_back, decisions, outbox, processed_events, consumer_offsets, dead_letters"


def two_locations() -> CatalogueView:
    """The model's location "loc" (desks d1-d3) and a copy "loc2" (desks e1-e3, same hours)."""
    view = make_view(closed=(date(2027, 1, 13),))
    view.apply(view.locations["loc"].model_copy(update={"location_id": "loc2", "name": "Loc 2"}))
    for desk_id in ("d1", "d2", "d3"):
        twin = "e" + desk_id[1:]
        view.apply(view.desks[desk_id].model_copy(update={"desk_id": twin, "location_id": "loc2"}))
        schedule = view.schedules[f"s-{desk_id}"]
        view.apply(schedule.model_copy(update={"schedule_id": f"s-{twin}", "desk_id": twin, "location_id": "loc2"}))
    return view


step = st.one_of(
    st.tuples(
        st.just("request"),
        st.sampled_from(LOCATIONS),
        st.sampled_from(["short", "card", "long"]),
        st.sampled_from(WEEK),
        st.integers(8, 17),
        st.sampled_from([0, 10, 20, 30, 40, 50]),
    ),
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("confirm"), st.integers(0, 60)),
    st.tuples(
        st.just("reschedule"),
        st.integers(0, 60),
        st.sampled_from(WEEK),
        st.integers(8, 17),
        st.sampled_from([0, 20, 40]),
    ),
    st.tuples(st.just("wait"), st.integers(1, 50)),  # minutes pass: holds (30 min) run out
    st.tuples(st.just("again"), st.integers(0, 60)),  # the same request delivered twice
)


# A release storm: most requests ask for a few starts that are full after the first ones. The batch
# remembers a start found full until its location frees something (`BatchLedger.known_full`).
HOT = [(WEEK[0], 9, 0), (WEEK[0], 9, 20), (WEEK[0], 13, 0)]
hot_request = st.tuples(st.sampled_from(["card", "long"]), st.sampled_from(HOT)).map(
    lambda pick: ("request", "loc", pick[0], *pick[1])
)
hot_step = st.one_of(
    hot_request,
    hot_request,
    hot_request,
    st.tuples(st.just("cancel"), st.integers(0, 60)),
    st.tuples(st.just("confirm"), st.integers(0, 60)),
    st.tuples(st.sampled_from(HOT), st.integers(0, 60)).map(lambda pick: ("reschedule", pick[1], *pick[0])),
    st.tuples(st.just("wait"), st.integers(1, 50)),
    st.tuples(st.just("again"), st.integers(0, 60)),
)


def requested(booking_id: str, location: str, product: str, start: datetime, now: datetime) -> ev.BookingRequested:
    return ev.BookingRequested(
        booking_id=booking_id,
        location_id=location,
        product_id=product,
        start=start,
        end=start + timedelta(minutes=DURATION[product]),
        person=ev.PersonName(given_name="G", family_name=booking_id),
        requested_at=now,
    )


def events_of(steps: list[tuple[Any, ...]]) -> list[ev.Event]:
    """The booking service's events for the steps (cancels and confirms name any earlier booking,
    whatever became of it: the allocator must cope)."""
    out: list[ev.Event] = []
    requests: list[ev.BookingRequested] = []
    now = T0
    for n, s in enumerate(steps):
        now += timedelta(seconds=7)
        match s:
            case ("request", location, product, day, hour, minute):
                start = at(day, hour, minute)
                req = requested(f"b{n:03d}", location, product, start, now)
                requests.append(req)
                out.append(req)
            case ("again", pick) if requests:
                out.append(requests[pick % len(requests)])
            case ("cancel", pick) if requests:
                r = requests[pick % len(requests)]
                out.append(
                    ev.BookingCancelled(
                        booking_id=r.booking_id,
                        location_id=r.location_id,
                        product_id=r.product_id,
                        desk_id=None,
                        start=r.start,
                        end=r.end,
                        cancelled_by="resident",
                        reason="-",
                        cancelled_at=now,
                    )
                )
            case ("confirm", pick) if requests:
                r = requests[pick % len(requests)]
                out.append(
                    ev.BookingConfirmed(
                        booking_id=r.booking_id,
                        location_id=r.location_id,
                        product_id=r.product_id,
                        desk_id="-",
                        start=r.start,
                        end=r.end,
                        confirmed_by="resident",
                    )
                )
            case ("reschedule", pick, day, hour, minute) if requests:
                r = requests[pick % len(requests)]
                new_start = at(day, hour, minute)
                out.append(
                    ev.RescheduleRequested(
                        booking_id=r.booking_id,
                        request_id=f"r{n:03d}",
                        location_id=r.location_id,
                        product_id=r.product_id,
                        old_start=r.start,
                        new_start=new_start,
                        new_end=new_start + timedelta(minutes=DURATION[r.product_id]),
                        requested_at=now,
                    )
                )
            case ("wait", minutes):
                now += timedelta(minutes=minutes)
    return out


def records(events: list[ev.Event]) -> list[ConsumerRecord[bytes, bytes]]:
    """As the booking service publishes them: one partition, keyed by location."""
    out = []
    for offset, event in enumerate(events):
        env = Envelope(
            type=event.TYPE,
            source="tests",
            subject=getattr(event, "booking_id", None),
            data=event.model_dump(mode="json"),
        )
        out.append(as_record(env, BOOKINGS.name, offset, event.location_id))  # type: ignore[attr-defined]
    return out


def consumer(pool: asyncpg.Pool, allocator: Allocator, fast: bool) -> PartitionBatchConsumer:
    return PartitionBatchConsumer(
        pool=pool,
        bootstrap="unused:9092",
        group_id="calendar-allocator",
        topics=[BOOKINGS.name],
        handlers=allocator.handlers(),  # type: ignore[arg-type]
        before_batch=allocator.before_batch if fast else None,
        before_commit=allocator.before_commit if fast else None,
    )


async def state(pool: asyncpg.Pool) -> dict[str, Any]:
    outbox = await pool.fetch("SELECT key, headers, value FROM outbox ORDER BY id")
    return {
        "emitted": [(r["key"], dict(r["headers"])["ce_type"], json.loads(r["value"])) for r in outbox],
        "reservations": [
            dict(r.items())
            for r in await pool.fetch(
                "SELECT booking_id, location_id, desk_id, product_id, lower(during) AS s, upper(during) AS e,"
                " status, hold_expires_at, language FROM reservations ORDER BY booking_id"
            )
        ],
        "held_back": [
            dict(r.items()) for r in await pool.fetch("SELECT * FROM held_back ORDER BY desk_id, lower(during)")
        ],
        "decisions": [r["booking_id"] for r in await pool.fetch("SELECT booking_id FROM decisions ORDER BY 1")],
        "dead_letters": await pool.fetchval("SELECT count(*) FROM dead_letters"),
    }


async def run_both(dsn: str, events: list[ev.Event], cuts: list[int], holdback: int) -> tuple[Any, Any]:
    pool = await create_pool(dsn)
    try:
        results = []
        for fast in (False, True):
            await pool.execute(f"TRUNCATE {TABLES}")
            allocator = Allocator(two_locations(), AllocatorPolicy(release_holdback=timedelta(minutes=holdback)))
            recs = records(events)
            if not fast:  # as the careful path decides: a statement per step, a record at a time
                c = consumer(pool, allocator, fast=False)
                for r in recs:
                    await c.process_batch(r.topic, r.partition, [r])
            else:
                c = consumer(pool, allocator, fast=True)
                i = 0
                for size in [*cuts, len(recs)]:
                    if i >= len(recs):
                        break
                    await c.process_batch(BOOKINGS.name, 0, recs[i : i + max(1, size)])
                    i += max(1, size)
            results.append(await state(pool))
        return results[0], results[1]
    finally:
        await pool.close()


EXAMPLES = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="session")
async def batches_db(infra: RunningStack) -> AsyncIterator[str]:
    infra.stack.postgres.create_databases(["loket_calendar_batches"])
    dsn = infra.stack.postgres.dsn("loket_calendar_batches")
    await migrate(dsn, MIGRATIONS)
    yield dsn


@EXAMPLES
@given(
    st.lists(step, min_size=1, max_size=70),
    st.lists(st.integers(1, 40), max_size=6),
    st.sampled_from([0, 15]),
)
def test_a_batch_decided_in_memory_equals_one_decided_step_by_step(
    batches_db: str, steps: list[tuple[Any, ...]], cuts: list[int], holdback: int
) -> None:
    assert_same_outcome(*asyncio.run(run_both(batches_db, events_of(steps), cuts, holdback)))


@EXAMPLES
@given(
    st.lists(hot_step, min_size=1, max_size=80),
    st.lists(st.integers(1, 40), max_size=4),
    st.sampled_from([0, 15]),
)
# Found full, then freed in the same batch: by a cancellation, by a hold running out, by a move.
@example([*[("request", "loc", "card", *HOT[0])] * 3, ("cancel", 0), ("request", "loc", "card", *HOT[0])], [], 0)
@example([*[("request", "loc", "long", *HOT[2])] * 3, ("wait", 31), ("request", "loc", "long", *HOT[2])], [], 0)
@example(
    [*[("request", "loc", "card", *HOT[0])] * 3, ("reschedule", 0, *HOT[1]), ("request", "loc", "card", *HOT[0])], [], 0
)
def test_a_storm_on_a_few_starts_is_decided_in_memory_as_step_by_step(
    batches_db: str, steps: list[tuple[Any, ...]], cuts: list[int], holdback: int
) -> None:
    """Starts found full earlier in a batch are rejected without looking again, unless a
    cancellation, an expired hold or a move freed something at the location since."""
    careful, fast = asyncio.run(run_both(batches_db, events_of(steps), cuts, holdback))
    assert_same_outcome(careful, fast)


def assert_same_outcome(careful: dict[str, Any], fast: dict[str, Any]) -> None:
    assert fast["emitted"] == careful["emitted"]
    assert fast["reservations"] == careful["reservations"]
    assert fast["held_back"] == careful["held_back"]
    assert fast["decisions"] == careful["decisions"]
    assert fast["dead_letters"] == careful["dead_letters"] == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_a_flush_that_meets_another_writer_replays_the_batch_carefully(batches_db: str) -> None:
    """A rebalance: another allocator reserved d1 at 09:00 after this batch read the day. The
    constraint refuses the flush; the batch is replayed a record at a time and the request gets
    the next desk instead. Nothing is lost and nothing is double-booked."""
    pool = await create_pool(batches_db)
    try:
        await pool.execute(f"TRUNCATE {TABLES}")
        allocator = Allocator(two_locations(), AllocatorPolicy())
        original = allocator.before_batch

        async def read_then_lose_the_race(ctx: HandlerContext, deliveries: list[Any]) -> None:
            await original(ctx, deliveries)
            if not ctx.careful:  # what another writer committed meanwhile (no lock held here in tests)
                async with pool.acquire() as other:
                    await other.execute(
                        "INSERT INTO reservations (booking_id, location_id, desk_id, product_id, during, status)"
                        " VALUES ('rival', 'loc2', 'e2', 'card', $1, 'confirmed')",
                        Range(at(WEEK[0], 9, 0), at(WEEK[0], 9, 20)),
                    )

        allocator.before_batch = read_then_lose_the_race  # type: ignore[method-assign]
        start = at(WEEK[0], 9, 0)
        request = requested("mine", "loc2", "card", start, T0)
        c = consumer(pool, allocator, fast=True)
        await c.process_batch(BOOKINGS.name, 0, records([request]))
        rows = await pool.fetch("SELECT booking_id, desk_id FROM reservations ORDER BY booking_id")
        assert [(r["booking_id"], r["desk_id"]) for r in rows] == [("mine", "e1"), ("rival", "e2")]
        emitted = (await state(pool))["emitted"]
        assert [(t, d["booking_id"], d["desk_id"]) for _, t, d in emitted] == [("slot-reserved", "mine", "e1")]
    finally:
        await pool.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_hold_timer_waits_for_a_batch_of_the_same_location(batches_db: str) -> None:
    """The timer and a batch never both expire one hold: the timer takes the location's lock."""
    pool = await create_pool(batches_db)
    try:
        await pool.execute(f"TRUNCATE {TABLES}")
        allocator = Allocator(two_locations(), AllocatorPolicy())
        start = at(WEEK[0], 13, 0)
        hold = requested("held", "loc", "long", start, T0)
        later = hold.model_copy(update={"booking_id": "later", "requested_at": T0 + timedelta(hours=1)})
        c = consumer(pool, allocator, fast=True)
        await c.process_batch(BOOKINGS.name, 0, records([hold]))
        gate = asyncio.Event()
        original = allocator.before_commit
        assert c.before_commit is not None

        async def slow_commit(ctx: HandlerContext, done: list[Any]) -> None:
            gate.set()
            await asyncio.sleep(0.5)  # the timer runs meanwhile
            await original(ctx, done)

        c.before_commit = slow_commit
        batch = asyncio.create_task(c.process_batch(BOOKINGS.name, 0, records([hold, later])[1:]))
        await gate.wait()
        # Due for "held" (T0 + 30 min), not yet for "later" (T0 + 1 h 30 min).
        expired = await allocator.expire_holds(pool, T0 + timedelta(hours=1), timedelta(0))
        await batch
        assert expired == 0  # the batch expired it first, under the lock
        assert await pool.fetchval("SELECT string_agg(booking_id, ',') FROM reservations") == "later"
        types = [(t, d.get("booking_id")) for _, t, d in (await state(pool))["emitted"]]
        assert types.count(("hold-expired", "held")) == 1
        assert ("slot-reserved", "later") in types
    finally:
        await pool.close()
