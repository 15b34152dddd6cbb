"""Faults of issue 15, parts 1 and 2, on the whole running stack (HTTP, Kafka, PostgreSQL).

- A record of almost a mebibyte on `loket.bookings` is dead-lettered by every consumer of the
  topic; before, the dead-letter copy (the record plus the dead-letter headers) was larger than
  the producer takes, the calendar's outbox retried it forever at the head of its queue, and no
  booking was decided again. Now the copy is cut to fit (the original stays in the consumer's
  database, named by the copy) and decisions keep flowing.
- A request body above the bound gets 413 problem+json.
- A decision about a booking that does not exist is dead-lettered by booking, and never shown on
  the agenda as an appointment.
- Booking processes started the way the README says (no instance id) each read the whole
  catalogue: each refuses bookings on every closed day (before, they shared one consumer group,
  split the catalogue topic, and each let some closed days through).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from loket_runtime import clock
from loket_stack.runner import REPO
from tests.conftest import RunningStack
from tests.e2e import helpers
from tests.e2e.helpers import wait_until

PRODUCER_LIMIT = 1024 * 1024  # aiokafka's max_request_size, as the producer measures a record


def produce(live: RunningStack, topic: str, key: str, headers: list[tuple[str, bytes]], value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=live.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
        finally:
            await producer.stop()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, away from the test session's
        pool.submit(asyncio.run, send()).result()


def ce_headers(event_id: str, event_type: str, subject: str) -> list[tuple[str, bytes]]:
    return [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", event_type.encode()),
        ("ce_source", b"tests/faults"),
        ("ce_subject", subject.encode()),
        ("ce_time", datetime.now(UTC).isoformat().encode()),
        ("content-type", b"application/json"),
    ]


def free_by_day(client: httpx.Client, product: str, location: str, days: int = 45) -> dict[date, list[str]]:
    """The free starts from the day after tomorrow on, by Brussels day (tests.e2e.helpers.free_by_day)."""
    first = clock.today() + timedelta(days=2)
    by_day = helpers.free_by_day(client, product, location, first, first + timedelta(days=days))
    return {day: [slot["start"] for slot in slots] for day, slots in by_day.items()}


def booking_body(product: str, location: str, start: str) -> dict[str, Any]:
    return helpers.booking_body(product, location, start, language="en")


def ops_letters(ops: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = ops.get("/api/v1/ops/dead-letters", params={"limit": 1000, **params})
    r.raise_for_status()
    letters: list[dict[str, Any]] = r.json()["dead_letters"]
    return letters


def test_a_record_of_almost_a_mebibyte_does_not_stop_decisions(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    ops = httpx.Client(base_url=live.base_url, timeout=30, headers={"Authorization": f"Bearer {live.token('ops')}"})
    location = "sc-mariakerke"
    event_id = str(uuid.uuid4())
    headers = ce_headers(event_id, "booking-requested", f"huge-{event_id[:8]}")
    # A body the producer just takes (150 bytes under its limit): not a valid booking-requested.
    overhead = DefaultRecordBatchBuilder.estimate_size_in_bytes(location.encode(), b'{"pad":""}', headers)
    value = json.dumps({"pad": "h" * (PRODUCER_LIMIT - 150 - overhead)}, separators=(",", ":")).encode()
    assert len(value) > 1_040_000
    produce(live, "loket.bookings", location, headers, value)

    # Every consumer of the topic dead-letters it; the calendar's outbox publishes the copies.
    def allocator_letter() -> list[dict[str, Any]]:
        return [d for d in ops_letters(ops, topic="loket.bookings") if d["event_id"] == event_id]

    letters = wait_until(lambda: [d for d in allocator_letter() if d["group"] == "calendar-allocator"], timeout=30)
    assert letters, "the allocator's dead letter never reached the operations API"
    letter = letters[0]
    assert letter["original_bytes"] == len(value) and letter["replayable"] is False
    assert letter["reference"].startswith("calendar-allocator:dead_letters/")
    refused = ops.post(f"/api/v1/ops/dead-letters/{letter['id']}/replay")
    assert refused.status_code == 409 and refused.headers["content-type"].startswith("application/problem+json")

    # ... and bookings are decided again, within seconds.
    by_day = free_by_day(client, "residence-card", location)
    start = next(iter(by_day.values()))[0]
    began = time.monotonic()
    r = client.post(
        "/api/v1/bookings", json=booking_body("residence-card", location, start), headers={"Prefer": "wait=10"}
    )
    assert r.status_code in (201, 409), f"no decision after a record of {len(value)} bytes: {r.status_code} {r.text}"
    assert time.monotonic() - began < 10


def test_a_request_body_above_the_bound_gets_413(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    body = booking_body("residence-card", "sc-mariakerke", "2030-01-07T09:00:00+01:00")
    body["person"]["family_name"] = "x" * 200_000
    r = client.post("/api/v1/bookings", json=body)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["status"] == 413 and r.json()["type"].endswith("payload-too-large")


def test_a_decision_about_a_booking_that_does_not_exist_is_dead_lettered_never_shown(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    ops = httpx.Client(base_url=live.base_url, timeout=30, headers={"Authorization": f"Bearer {live.token('ops')}"})
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    location, desk = "sc-zwijnaarde", "zw-1"
    day, starts = next(iter(free_by_day(client, "residence-card", location).items()))
    start = datetime.fromisoformat(starts[0])
    ghost = f"ghost-{uuid.uuid4().hex[:10]}"
    event_id = str(uuid.uuid4())
    forged = {
        "booking_id": ghost,
        "location_id": location,
        "product_id": "residence-card",
        "desk_id": desk,
        "start": start.isoformat(),
        "end": (start + timedelta(minutes=20)).isoformat(),
    }
    produce(live, "loket.calendar", location, ce_headers(event_id, "slot-reserved", ghost), json.dumps(forged).encode())

    letters = wait_until(
        lambda: [d for d in ops_letters(ops, topic="loket.calendar") if d["event_id"] == event_id], timeout=30
    )
    assert [d["group"] for d in letters] == ["booking-decisions"], letters
    assert "does not exist" in letters[0]["error"]

    # The agenda projection has folded it (its table knows the booking) ...
    def folded() -> bool:
        async def look() -> bool:
            import asyncpg

            conn = await asyncpg.connect(live.dsn("calendar"))
            try:
                return bool(await conn.fetchval("SELECT count(*) FROM agenda WHERE booking_id = $1", ghost))
            finally:
                await conn.close()

        with ThreadPoolExecutor(1) as pool:
            return bool(pool.submit(asyncio.run, look()).result())

    assert wait_until(folded, timeout=20), "the agenda projection never read the forged decision"
    # ... and shows no appointment for it, now or as of any time.
    for params in ({"date": day.isoformat()}, {"date": day.isoformat(), "as_of": datetime.now(UTC).isoformat()}):
        agenda = client.get(f"/api/v1/agenda/{location}", params=params, headers=admin)
        assert agenda.status_code == 200, agenda.text
        shown = [a["booking"] for d in agenda.json()["desks"] for a in d["appointments"]]
        assert ghost not in shown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def more_bookings(live: RunningStack) -> Iterator[list[str]]:
    """Two more booking processes, started as the README says to run a service alone: the stack's
    settings, a port of their own, and no LOKET_INSTANCE_ID. With the stack's own, three processes
    share one catalogue topic of three partitions."""
    processes: list[tuple[subprocess.Popen[bytes], Any]] = []
    urls = []
    try:
        for n in (2, 3):
            port = free_port()
            env = {**os.environ, **live.stack.service_env("booking"), "LOKET_HTTP_PORT": str(port)}
            env.pop("LOKET_INSTANCE_ID", None)
            log = (live.config.data / "logs" / f"booking-{n}.log").open("ab")
            process = subprocess.Popen(
                [sys.executable, "-m", "loket_booking"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
            processes.append((process, log))
            urls.append(f"http://127.0.0.1:{port}")

        def ready(url: str) -> bool:
            try:
                checks = httpx.get(f"{url}/readyz", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            return bool(checks.get("ready")) and all(checks.get("consumers", {}).values())

        for url in urls:
            assert wait_until(lambda url=url: ready(url), timeout=60), f"booking at {url} never became ready"
        time.sleep(8)  # room for consumer groups to rebalance over the three processes
        yield urls
    finally:
        for process, log in processes:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
            log.close()


def test_booking_processes_started_alike_each_refuse_every_closed_day(
    live: RunningStack, more_bookings: list[str]
) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    first_booking = f"http://127.0.0.1:{live.config.booking}"
    location, product = "sc-drongen", "residence-card"
    days = list(free_by_day(client, product, location).items())[:15]
    assert len(days) >= 8, "not enough open days to close"
    closures = []
    try:
        for day, _ in days:
            r = client.post(
                "/api/v1/admin/closures",
                json={"location_id": location, "day": day.isoformat(), "reason": "issue 15 part 2"},
                headers=admin,
            )
            assert r.status_code in (200, 201), r.text
            closures.append(r.json()["id"])
        # The calendar (one process) has them all once availability shows the days closed.
        closed = {day for day, _ in days}
        assert wait_until(lambda: not closed & set(free_by_day(client, product, location)), timeout=30)
        time.sleep(2)  # the booking processes read the same topic
        accepted = []
        for base in (first_booking, *more_bookings):
            for day, starts in days:
                r = httpx.post(f"{base}/api/v1/bookings", json=booking_body(product, location, starts[0]), timeout=30)
                if r.status_code != 422 or "closed" not in r.text:
                    accepted.append((base, day.isoformat(), r.status_code))
        assert accepted == [], f"bookings accepted on closed days: {accepted}"
    finally:
        for closure_id in closures:
            client.delete(f"/api/v1/admin/closures/{closure_id}", headers=admin)
