"""The calendar's own figures (issue 5): allocator decisions/s from a pre-filled topic, availability
over all locations at 50 concurrent clients, and the agenda projection rebuild."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import math
import resource
import time
import uuid
from collections.abc import Iterator
from typing import Any

import aiohttp
import asyncpg
import httpx
from aiokafka import AIOKafkaProducer

from bench.loket import PRODUCT, READS_PER_CLIENT, Loket, client_address
from bench.procs import Watch, listening_pid
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import BOOKINGS, CALENDAR


def percentiles(xs: list[float]) -> dict[str, float]:
    xs = sorted(xs)
    if not xs:
        return {}

    def at(q: float) -> float:
        return round(1000 * xs[max(0, math.ceil(q * len(xs)) - 1)], 1)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": at(1)}


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def free_starts(loket: Loket, location: str) -> list[dict[str, str]]:
    today = dt.date.today()
    r = httpx.get(
        f"{loket.url}/api/v1/availability",
        params={"product": PRODUCT, "location": location, "from": str(today), "to": str(today + dt.timedelta(61))},
        timeout=30,
    )
    r.raise_for_status()
    slots: list[dict[str, str]] = r.json()["slots"]
    return slots


async def produce(bootstrap: str, location: str, starts: list[dict[str, str]], n: int) -> tuple[int, int, int]:
    """n booking-requested events for one location, as the booking service would publish them.
    Returns (partition, first offset, end offset)."""
    now = dt.datetime.now(dt.UTC)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_batch_size=512 * 1024, acks="all")
    await producer.start()
    try:
        futures = []
        for i in range(n):
            slot = starts[i % len(starts)]
            booking_id = str(uuid.uuid4())
            event = ev.BookingRequested(
                booking_id=booking_id,
                location_id=location,
                product_id=PRODUCT,
                start=dt.datetime.fromisoformat(slot["start"]),
                end=dt.datetime.fromisoformat(slot["end"]),
                person=ev.PersonName(given_name="Bench", family_name=f"Allocator-{i}"),
                language="en",
                requested_at=now,
            )
            env = Envelope(
                type=event.TYPE, source="loket/booking", subject=booking_id, data=event.model_dump(mode="json")
            )
            futures.append(
                await producer.send(
                    BOOKINGS.name, value=env.kafka_value(), key=location.encode(), headers=env.kafka_headers()
                )
            )
        metas = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    partitions = {m.partition for m in metas}
    assert len(partitions) == 1, partitions
    return metas[0].partition, metas[0].offset, metas[-1].offset + 1


def batch_seconds(url: str) -> float:
    """The allocator's time spent applying batches so far (its `loket_consumer_batch_seconds`)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("loket_consumer_batch_seconds_sum") and 'group="calendar-allocator"' in line
    )


async def poll_offset(dsn: str, partition: int, first: int, end: int, timeout: float) -> dict[str, Any]:
    """Follow calendar-allocator's committed offset in PostgreSQL until it reaches `end`."""
    conn = await asyncpg.connect(dsn)
    try:
        t0 = time.perf_counter()
        seen: list[tuple[float, int]] = []
        while True:
            off = await conn.fetchval(
                "SELECT next_offset FROM consumer_offsets WHERE consumer_group = 'calendar-allocator'"
                " AND topic = $1 AND partition = $2",
                BOOKINGS.name,
                partition,
            )
            t = time.perf_counter() - t0
            if off is not None and off > first and (not seen or off != seen[-1][1]):
                seen.append((t, off))
            if off is not None and off >= end:
                break
            if t > timeout:
                break
            await asyncio.sleep(0.02)
    finally:
        await conn.close()
    return {"samples": seen, "elapsed": time.perf_counter() - t0}


def allocator(loket: Loket, n: int, over_slots: int | None, label: str, timeout: float = 600) -> dict[str, Any]:
    """Stop the calendar, fill loket.bookings with n requests for one fresh location, start the calendar
    and time how fast its allocator's offset (in PostgreSQL) reaches the end of the topic."""
    assert loket.stack is not None
    location = loket.take_location()
    starts = free_starts(loket, location)
    if over_slots:
        starts = starts[:over_slots]
    bootstrap = f"127.0.0.1:{loket.config.kafka}"
    # Both calendar processes: the allocator, and the projections (which would otherwise fold the
    # requests meanwhile). Both start again together, as after a deployment.
    for name in ("calendar-allocator", "calendar"):
        loket.stack.stop_process(name)
    t = time.perf_counter()
    partition, first, end = asyncio.run(produce(bootstrap, location, starts, n))
    produce_s = time.perf_counter() - t
    dsn = loket.dsn("calendar")
    t_spawn = time.perf_counter()
    loket.stack.up_services(timeout=120)  # starts only what is not running: the calendar
    ready_s = time.perf_counter() - t_spawn
    pids = loket.pids()
    pg = listening_pid(loket.config.postgres)
    groups = {
        "calendar": pids.get("calendar-allocator", pids["calendar"]),
        **({"calendar-projections": pids["calendar"]} if "calendar-allocator" in pids else {}),
        **({"postgres": pg} if pg else {}),
    }
    allocator_url = f"http://127.0.0.1:{loket.config.calendar_allocator}" if "calendar-allocator" in pids else None
    in_batches = batch_seconds(allocator_url) if allocator_url else None
    with Watch(groups, with_children={"postgres"}) as watch:
        polled = asyncio.run(poll_offset(dsn, partition, first, end, timeout))
    if allocator_url and in_batches is not None:
        in_batches = round(batch_seconds(allocator_url) - in_batches, 2)
    total_s = ready_s + polled["elapsed"]
    samples = polled["samples"]
    done = samples[-1][1] if samples else first
    # steady state: from the first committed batch to the end (start-up and the first fetch excluded)
    if len(samples) >= 2:
        (t1, o1), (t2, o2) = samples[0], samples[-1]
        steady = (o2 - o1) / (t2 - t1) if t2 > t1 else None
    else:
        steady = None

    async def outcomes() -> dict[str, int]:
        conn = await asyncpg.connect(dsn)
        try:
            reserved = await conn.fetchval("SELECT count(*) FROM reservations WHERE location_id = $1", location)
        finally:
            await conn.close()
        return {"reserved": reserved, "rejected": n - reserved}

    return {
        "label": label,
        "location": location,
        "requests": n,
        "distinct_starts": len(starts),
        "partition": partition,
        "produce_s": round(produce_s, 2),
        "calendar_ready_s": round(ready_s, 2),
        "decided": done - first,
        "complete": done >= end,
        "drain_s_after_ready": round(polled["elapsed"], 2),
        "decisions_per_s_including_startup": round(n / total_s, 1),
        "decisions_per_s_after_ready": round((done - first) / polled["elapsed"], 1) if polled["elapsed"] else None,
        "decisions_per_s_steady": round(steady, 1) if steady else None,
        "batches_seen": len(samples),
        # the allocator's time inside its batches (the rest: fetching from Kafka, waiting for a core)
        "seconds_in_batches": in_batches,
        # (seconds after the calendar was ready, decisions committed so far), one per batch seen
        "commits": [(round(t, 3), off - first) for t, off in samples],
        **asyncio.run(outcomes()),
        "processes": watch.summary(),
    }


# How the availability client reads the answer. A browser sends Accept-Encoding: gzip and inflates;
# "raw" takes the same gzip bytes but does not inflate them (aiohttp auto_decompress=False), which
# shows how much of the latency is the client's own inflating; "identity" asks for plain JSON.
CLIENT_MODES: dict[str, dict[str, Any]] = {
    "inflate": {"auto_decompress": True, "headers": {}},
    "raw": {"auto_decompress": False, "headers": {}},
    "identity": {"auto_decompress": True, "headers": {"Accept-Encoding": "identity"}},
}


def availability_query(days: int, view: str = "slots") -> dict[str, str]:
    """residence-card at every location, from today for `days` days (`view=days`: counts per day)."""
    today = dt.date.today()
    params = {"product": "residence-card", "from": str(today), "to": str(today + dt.timedelta(days=days - 1))}
    return params | ({"view": view} if view != "slots" else {})


async def _availability(
    url: str, concurrency: int, requests: int, days: int, mode: str = "inflate", warmup: int = 100, view: str = "slots"
) -> dict[str, Any]:
    params = availability_query(days, view)
    client = CLIENT_MODES[mode]
    lat: list[float] = []
    status: dict[str, int] = {}
    sizes: list[int] = []
    encodings: dict[str, int] = {}
    addresses = itertools.count()

    def session(n: int) -> aiohttp.ClientSession:
        # Each client sends READS_PER_CLIENT requests from one loopback address, then moves to the next.
        return aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1, local_addr=(client_address(n), 0)),
            timeout=aiohttp.ClientTimeout(total=60),
            auto_decompress=client["auto_decompress"],
            headers=client["headers"],
        )

    async with session(next(addresses)) as s:
        # the answer's size (plain and as sent), from a request of its own
        async with s.get(url + "/api/v1/availability", params=params, headers={"Accept-Encoding": "identity"}) as r:
            body = await r.read()
            warm_status = r.status

        async def worker(todo: Iterator[int], record: bool) -> None:
            s, sent = session(next(addresses)), 0
            for _ in todo:
                if sent == READS_PER_CLIENT:
                    await s.close()
                    s, sent = session(next(addresses)), 0
                sent += 1
                t = time.perf_counter()
                try:
                    async with s.get(url + "/api/v1/availability", params=params) as r:
                        data = await r.read()
                        st = str(r.status)
                        enc = r.headers.get("Content-Encoding", "identity")
                except (aiohttp.ClientError, TimeoutError) as e:
                    st, data, enc = type(e).__name__, b"", "-"
                if record:
                    lat.append(time.perf_counter() - t)
                    status[st] = status.get(st, 0) + 1
                    sizes.append(len(data))
                    encodings[enc] = encodings.get(enc, 0) + 1
            await s.close()

        # warm-up: every connection opened and the caches filled before the clock starts
        warm = iter(range(warmup))
        await asyncio.gather(*(worker(warm, False) for _ in range(concurrency)))
        todo = iter(range(requests))
        c0, t0 = cpu(), time.perf_counter()
        await asyncio.gather(*(worker(todo, True) for _ in range(concurrency)))
        wall, cpu_s = time.perf_counter() - t0, cpu() - c0
    import json

    listed = json.loads(body)[view] if warm_status == 200 else None
    return {
        "query": params,
        "client": mode,
        "view": view,
        f"{view}_in_answer": len(listed) if listed is not None else None,
        "answer_bytes": len(body),
        "bytes_read_per_answer": round(sum(sizes) / len(sizes)) if sizes else None,
        "content_encoding": encodings,
        "requests": requests,
        "concurrency": concurrency,
        "rps": round(requests / wall, 1),
        "status": status,
        "latency_ms": percentiles(lat),
        "client_cpu_pct": round(100 * cpu_s / wall),
    }


def availability(
    loket: Loket, concurrency: int, requests: int, days: int = 60, modes: tuple[str, ...] = ("inflate", "raw")
) -> dict[str, Any]:
    """Every free start (`view=slots`) in each client mode, then the days summary a calendar page
    shows first (`view=days`), inflated as a browser does."""
    out: dict[str, Any] = {}
    pids = loket.pids()
    for name, url in (
        ("via_gateway", loket.url),
        ("calendar_direct", f"http://127.0.0.1:{loket.config.calendar}"),
    ):
        for view, mode in [*(("slots", m) for m in modes), ("days", "inflate")]:
            key = name + ("" if mode == "inflate" else f"_{mode}") + ("" if view == "slots" else f"_{view}")
            groups = {k: pids[k] for k in ("gateway", "calendar") if k in pids}
            with Watch(groups, with_children={"gateway"}) as watch:
                out[key] = asyncio.run(_availability(url, concurrency, requests, days, mode, view=view))
            out[key]["processes"] = watch.summary()
    return out


# Address ranges of their own (loket.client_address), away from the availability scenario's.
FLOOD_FIRST_ADDRESS = 200_000
PROBE_FIRST_ADDRESS = 400_000


def _flood(url: str, clients: int, days: int, ready: Any, stop: Any, results: Any) -> None:
    """In a process of its own (the probe's timings must not wait behind the flood's client work):
    `clients` closed-loop clients asking the same availability until `stop` is set, gzip not inflated.
    `ready` is set once every client has had an answer (only those after it are counted)."""

    async def run() -> dict[str, Any]:
        params = availability_query(days)
        lat: list[float] = []
        status: dict[str, int] = {}
        addresses = itertools.count(FLOOD_FIRST_ADDRESS)

        def session() -> aiohttp.ClientSession:
            # Each client moves to a new address every READS_PER_CLIENT requests (the edge's budget).
            connector = aiohttp.TCPConnector(limit=1, local_addr=(client_address(next(addresses)), 0))
            return aiohttp.ClientSession(connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(60))

        started: list[float] = []
        waiting = asyncio.Barrier(clients + 1)

        async def client() -> None:
            first = True
            s, sent = session(), 0
            while not stop.is_set():
                if sent == READS_PER_CLIENT:
                    await s.close()
                    s, sent = session(), 0
                t = time.perf_counter()
                async with s.get(url + "/api/v1/availability", params=params) as r:
                    await r.read()
                    sent += 1
                    if not first:
                        status[str(r.status)] = status.get(str(r.status), 0) + 1
                if first:
                    await waiting.wait()
                    first = False
                else:
                    lat.append(time.perf_counter() - t)
            await s.close()

        async def start() -> None:
            await waiting.wait()
            started.append(time.perf_counter())
            ready.set()

        await asyncio.gather(start(), *(client() for _ in range(clients)))
        wall = time.perf_counter() - started[0]
        return {
            "requests": len(lat),
            "rps": round(len(lat) / wall, 1),
            "status": status,
            "latency_ms": percentiles(lat),
        }

    results.put(asyncio.run(run()))


def _busiest_day(loket: Loket) -> tuple[str, dt.date, int]:
    """The location and day with the most reservations (a fill's, when one ran), else the demo's."""

    async def find() -> asyncpg.Record | None:
        conn = await asyncpg.connect(loket.dsn("calendar"))
        try:
            row: asyncpg.Record | None = await conn.fetchrow(
                "SELECT location_id, (lower(during) AT TIME ZONE 'Europe/Brussels')::date AS day, count(*) AS n"
                " FROM reservations GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2 LIMIT 1"
            )
            return row
        finally:
            await conn.close()

    row = asyncio.run(find())
    if row is None:
        return "migration-counter", dt.date.today() + dt.timedelta(days=7), 0
    return row["location_id"], row["day"], row["n"]


def agenda_under_flood(
    loket: Loket, flood_clients: int = 40, probes: int = 300, days: int = 92, agenda_clients: int = 1
) -> dict[str, Any]:
    """The staff agenda (`GET /api/v1/agenda/{location}?date=`, through the gateway, admin token)
    timed alone, then while `flood_clients` hammer availability over `days` days at every location
    (the longest range the API allows). The flood runs in a process of its own."""
    import multiprocessing

    location, day, appointments = _busiest_day(loket)
    headers = {"Authorization": f"Bearer {loket.token('admin')}"}
    path = f"/api/v1/agenda/{location}"

    probe_addresses = itertools.count(PROBE_FIRST_ADDRESS)

    def probe(n: int) -> dict[str, Any]:
        """`n` agenda requests in a row, from a new client address every READS_PER_CLIENT (within the
        edge's budget for one client: a clerk's screen asks far less often)."""
        lat: list[float] = []
        status: dict[str, int] = {}
        done = 0
        while done < n:
            transport = httpx.HTTPTransport(local_address=client_address(next(probe_addresses)))
            with httpx.Client(base_url=loket.url, headers=headers, timeout=30, transport=transport) as client:
                client.get(path, params={"date": str(day)})  # connection and key cache warm
                for _ in range(min(READS_PER_CLIENT - 1, n - done)):
                    t = time.perf_counter()
                    r = client.get(path, params={"date": str(day)})
                    lat.append(time.perf_counter() - t)
                    status[str(r.status_code)] = status.get(str(r.status_code), 0) + 1
                    done += 1
        return {"requests": n, "status": status, "latency_ms": percentiles(lat)}

    alone = probe(probes)
    pids = loket.pids()
    groups = {k: pids[k] for k in ("gateway", "calendar") if k in pids}
    context = multiprocessing.get_context("spawn")
    results, ready, stop = context.Queue(), context.Event(), context.Event()
    flood = context.Process(target=_flood, args=(loket.url, flood_clients, days, ready, stop, results), daemon=True)
    flood.start()
    try:
        if not ready.wait(120):  # every flood client connected and answered
            raise RuntimeError("the availability flood did not start")
        with Watch(groups) as watch:
            during = probe(probes)
        stop.set()
        flooded = results.get(timeout=60)
    finally:
        stop.set()
        flood.join(10)
        if flood.is_alive():
            flood.terminate()
    return {
        "agenda": {"location": location, "date": str(day), "appointments": appointments},
        "flood": {"clients": flood_clients, "query": availability_query(days), **flooded},
        "agenda_alone": alone,
        "agenda_during_flood": during,
        "processes": watch.summary(),
    }


def availability_once(loket: Loket, concurrency: int, requests: int, days: int = 60) -> dict[str, Any]:
    return asyncio.run(_availability(loket.url, concurrency, requests, days))


def topic_events(bootstrap: str) -> int:
    async def count() -> int:
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
        await consumer.start()
        try:
            total = 0
            for topic in (BOOKINGS, CALENDAR):
                tps = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
                ends = await consumer.end_offsets(tps)
                begins = await consumer.beginning_offsets(tps)
                total += sum(ends[tp] - begins[tp] for tp in tps)
            return total
        finally:
            await consumer.stop()

    return asyncio.run(count())


def rebuild(loket: Loket, timeout: float = 600) -> dict[str, Any]:
    """POST /api/v1/ops/projections/agenda/rebuild (role ops); skipped with a note when absent."""
    token = loket.token("ops")
    headers = {"Authorization": f"Bearer {token}"}
    path = "/api/v1/ops/projections/agenda/rebuild"
    from bench.loket import wait_drained

    # The live agenda consumer first applies what the previous scenario left (its backlog would be
    # timed too, as the rebuild waits for its batch, and the comparison would only show the lag).
    drained = wait_drained(loket, timeout=120)
    events_in_topics = topic_events(f"127.0.0.1:{loket.config.kafka}")
    pids = loket.pids()
    pg = listening_pid(loket.config.postgres)
    groups = {"calendar": pids["calendar"], **({"postgres": pg} if pg else {})}
    with httpx.Client(base_url=loket.url, headers=headers, timeout=timeout) as client:
        # A freshly started calendar fetches the issuer's keys on its first authenticated call.
        client.get("/api/v1/ops/dead-letters", params={"limit": 1})
        with Watch(groups, with_children={"postgres"}) as watch:
            t0 = time.perf_counter()
            r = client.post(path)
            if r.status_code in (404, 405, 501):
                return {
                    "skipped": f"{path} answered {r.status_code}: not built yet",
                    "events_in_topics": events_in_topics,
                }
            body: Any = r.json() if r.headers.get("content-type", "").endswith("json") else r.text
            # an asynchronous rebuild (202): poll its status until it says it is done
            while r.status_code == 202 and time.perf_counter() - t0 < timeout:
                time.sleep(0.2)
                r = client.get(path)
                body = r.json() if r.headers.get("content-type", "").endswith("json") else r.text
                if isinstance(body, dict) and str(body.get("status", "")).lower() in (
                    "done",
                    "finished",
                    "complete",
                    "completed",
                ):
                    break
            wall = time.perf_counter() - t0
    counted = None
    if isinstance(body, dict):
        for key in ("events", "events_applied", "applied", "replayed", "count", "processed"):
            if isinstance(body.get(key), int):
                counted = body[key]
                break
    events = counted if counted is not None else events_in_topics
    return {
        "status": r.status_code,
        "response": body,
        "wall_s": round(wall, 3),
        "events": events,
        "events_counted_by": "response" if counted is not None else "end offsets of loket.bookings + loket.calendar",
        "events_per_s": round(events / wall, 1) if wall else None,
        "drained_before": drained,
        "processes": watch.summary(),
    }
