"""The allocator's own work, without Kafka and without the other processes of the stack.

The same code the `calendar-allocator` process runs (the consumer's batch path, the allocator, the
ledger, the outbox) against a real PostgreSQL of its own, fed with `booking-requested` records built
in memory, one location, batches of the allocator's size. What `bench --scenarios allocator` measures
on top of this is the broker, the records' unpacking and the sharing of two cores with PostgreSQL,
Kafka and the projections.

    uv run python -m bench.allocator_alone                 # fill (3,360 over 640 starts) and storm (20,000 on 100)
    uv run python -m bench.allocator_alone --profile       # the same under cProfile, top 30 by own time
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import os
import pstats
import shutil
import time
import uuid
from typing import Any

from aiokafka.structs import ConsumerRecord

from bench import REPO
from bench.procs import cpu_seconds, tree
from loket_calendar.application.allocator import Allocator, AllocatorPolicy
from loket_calendar.application.availability import AvailabilityCache
from loket_calendar.domain.schedule import CatalogueView, free_starts
from loket_calendar.entrypoints.app import MIGRATIONS, CalendarSettings
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import BOOKINGS
from loket_runtime.consumer import PartitionBatchConsumer, as_record
from loket_runtime.db import create_pool, migrate
from loket_stack.postgres import EmbeddedPostgres

LOCATION = "bench-counter-01"
PRODUCT = "bench-card"
NAMES = {"nl": "x", "en": "x", "fr": "x"}


def bench_view() -> CatalogueView:
    """The shape of bench/seed_bench.yaml: ten locations, five desks each, 16 starts a weekday."""
    view = CatalogueView()
    view.apply(
        ev.ProductDefined(product_id=PRODUCT, name=NAMES, description=NAMES, duration_minutes=20, max_days_ahead=60)  # type: ignore[arg-type]
    )
    blocks = [ev.TimeBlock(start="09:00", end="12:30"), ev.TimeBlock(start="14:00", end="16:00")]
    for n in range(1, 11):
        location = f"bench-counter-{n:02d}"
        view.apply(
            ev.LocationDefined(
                location_id=location, name=location, address="-", products=[PRODUCT], slot_grid_minutes=20
            )
        )
        for d in range(1, 6):
            desk = f"{location}-d{d}"
            view.apply(ev.DeskDefined(desk_id=desk, location_id=location, name=desk, products=[PRODUCT]))
            view.apply(
                ev.SchedulePublished(
                    schedule_id=f"s-{desk}",
                    desk_id=desk,
                    location_id=location,
                    effective_from=dt.date(2026, 1, 1),
                    weekly={str(w): blocks for w in range(1, 6)},
                )
            )
    return view


def requests(view: CatalogueView, n: int, distinct: int) -> list[ConsumerRecord[bytes, bytes]]:
    now = dt.datetime.now(dt.UTC)
    starts: list[dt.datetime] = []
    day = dt.date.today() + dt.timedelta(days=2)
    while len(starts) < distinct:
        starts += [i.start for i in free_starts(view, LOCATION, PRODUCT, day, [], None)]
        day += dt.timedelta(days=1)
    out = []
    for i in range(n):
        start = starts[i % distinct]
        event = ev.BookingRequested(
            booking_id=str(uuid.uuid4()),
            location_id=LOCATION,
            product_id=PRODUCT,
            start=start,
            end=start + dt.timedelta(minutes=20),
            person=ev.PersonName(given_name="Bench", family_name=f"Alone-{i}"),
            requested_at=now,
        )
        env = Envelope(type=event.TYPE, source="bench", subject=event.booking_id, data=event.model_dump(mode="json"))
        out.append(as_record(env, BOOKINGS.name, i, LOCATION))
    return out


async def run(dsn: str, label: str, n: int, distinct: int, profile: bool, postgres_pid: int | None) -> dict[str, Any]:
    pool = await create_pool(dsn)
    try:
        await pool.execute(
            "TRUNCATE reservations, held_back, decisions, outbox, processed_events, consumer_offsets, dead_letters"
        )
        view = bench_view()
        settings = CalendarSettings()
        # as the calendar-allocator process keeps its cache (entrypoints/app.py)
        cache = AvailabilityCache(view, ttl_seconds=settings.allocator_cache_seconds)
        allocator = Allocator(view, AllocatorPolicy(), cache)
        batch = settings.allocator_batch_size
        consumer = PartitionBatchConsumer(
            pool=pool,
            bootstrap="unused:9092",
            group_id="calendar-allocator",
            topics=[BOOKINGS.name],
            handlers=allocator.handlers(),  # type: ignore[arg-type]
            before_batch=allocator.before_batch,
            before_commit=allocator.before_commit,
            batch_size=batch,
        )
        records = requests(view, n, distinct)
        profiler = cProfile.Profile() if profile else None
        seconds: list[float] = []
        # CPU seconds (ours, and PostgreSQL's with its backends): a figure a busy machine moves
        # less than the wall clock's.
        postgres = tree(postgres_pid) if postgres_pid else []
        cpu_before, pg_before = time.process_time(), cpu_seconds(postgres)
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        for i in range(0, n, batch):
            t = time.perf_counter()
            await consumer.process_batch(BOOKINGS.name, 0, records[i : i + batch])
            seconds.append(round(time.perf_counter() - t, 3))
        if profiler:
            profiler.disable()
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
        wall = time.perf_counter() - started
        cpu, pg = time.process_time() - cpu_before, cpu_seconds(postgres) - pg_before
        reserved = await pool.fetchval("SELECT count(*) FROM reservations")
        return {
            "run": label,
            "requests": n,
            "distinct_starts": distinct,
            "reserved": reserved,
            "batch_seconds": seconds,
            "decisions_per_s": round(n / wall),
            "cpu_us_per_decision": {"allocator": round(1e6 * cpu / n), "postgres": round(1e6 * pg / n)},
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--port", type=int, default=23900, help="PostgreSQL of its own (data in .data/bench-alone)")
    a = parser.parse_args()
    root = REPO / ".data" / "bench-alone"
    shutil.rmtree(root, ignore_errors=True)
    postgres = EmbeddedPostgres(root / "pg", a.port)
    postgres.start()
    try:
        postgres.create_databases(["loket_calendar"])
        dsn = postgres.dsn("loket_calendar")
        asyncio.run(migrate(dsn, MIGRATIONS))
        for label, n, distinct in (("fill", 3360, 640), ("storm", 20_000, 100)):
            print(asyncio.run(run(dsn, label, n, distinct, a.profile, postgres.pid())))
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
