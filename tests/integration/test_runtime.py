"""The shared runtime against the real PostgreSQL and Kafka: event store, outbox relay, consumers."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import DEAD_LETTERS
from loket_runtime.consumer import Delivery, HandlerContext, PartitionBatchConsumer
from loket_runtime.db import connect, create_pool, migrate
from loket_runtime.eventstore import ConcurrencyError, EventStore
from loket_runtime.kafka import make_producer
from loket_runtime.outbox import Outbox, OutboxRelay
from tests.conftest import RunningStack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="session")
async def runtime_db(infra: RunningStack) -> AsyncIterator[str]:
    infra.stack.postgres.create_databases(["loket_runtime_test"])
    dsn = infra.stack.postgres.dsn("loket_runtime_test")
    await migrate(dsn, None)
    yield dsn


@pytest.fixture
async def pool(runtime_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(runtime_db)
    await pool.execute("TRUNCATE events, outbox, consumer_offsets, processed_events, dead_letters")
    yield pool
    await pool.close()


async def new_topic(bootstrap: str, partitions: int = 3) -> str:
    name = f"test.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    return name


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False, group_id=None
    )
    await consumer.start()
    records: list[Any] = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(records) < expected and loop.time() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
    finally:
        await consumer.stop()
    return records


def envelope(event_type: str = "closure-lifted", **data: Any) -> Envelope:
    payload = {"closure_id": "c1", "location_id": None, "day": "2026-12-24"} | data
    return Envelope(type=event_type, source="test", data=payload)


async def test_two_writers_on_one_stream_one_wins(pool: asyncpg.Pool) -> None:
    store = EventStore()
    async with pool.acquire() as conn:
        await store.append(conn, "booking-1", 0, [envelope()])

    async def write() -> str:
        try:
            async with pool.acquire() as conn, conn.transaction():
                await asyncio.sleep(0)
                await store.append(conn, "booking-1", 1, [envelope()])
                return "won"
        except ConcurrencyError:
            return "conflict"

    results = await asyncio.gather(write(), write())
    assert sorted(results) == ["conflict", "won"]
    assert [e.stream_version for e in await store.load(pool, "booking-1")] == [1, 2]


class CrashAfterPublish(OutboxRelay):
    """A relay that dies after Kafka acknowledged the batch but before the rows were deleted."""

    async def mark_published(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        raise ConnectionError("relay killed")


async def test_relay_killed_between_publish_and_mark_loses_nothing(
    pool: asyncpg.Pool, infra: RunningStack, runtime_db: str
) -> None:
    topic = await new_topic(infra.kafka_bootstrap)
    outbox = Outbox()
    sent: dict[str, list[str]] = {}
    async with pool.acquire() as conn, conn.transaction():
        for i in range(60):
            key = f"location-{i % 4}"
            env = envelope(closure_id=f"c{i}")
            sent.setdefault(key, []).append(env.id)
            await outbox.add(conn, topic, key, [env])
    producer = make_producer(infra.kafka_bootstrap, "test-relay")
    await producer.start()
    try:
        conn = await connect(runtime_db)
        with pytest.raises(ConnectionError):
            await CrashAfterPublish(runtime_db, producer, batch_size=25).publish_batch(conn)
        await conn.close()
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 60  # nothing marked
        conn = await connect(runtime_db)
        relay = OutboxRelay(runtime_db, producer, batch_size=25)
        while await relay.publish_batch(conn):
            pass
        await conn.close()
    finally:
        await producer.stop()
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    records = await read_all(infra.kafka_bootstrap, topic, expected=85)
    received: dict[str, list[str]] = {}
    for record in records:
        event_id = dict(record.headers)["ce_id"].decode()
        seen = received.setdefault(record.key.decode(), [])
        if event_id not in seen:
            seen.append(event_id)
    assert received == sent  # every event, in order per key; the 25 re-sent ones only as duplicates
    assert len(records) == 85


async def run_consumer(consumer: PartitionBatchConsumer, until: Any, timeout: float = 20) -> None:
    task = asyncio.create_task(consumer.run())
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await until() and loop.time() < deadline:
            await asyncio.sleep(0.2)
        assert await until(), "consumer did not get there in time"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_redelivered_message_changes_state_once(pool: asyncpg.Pool, infra: RunningStack) -> None:
    await pool.execute("CREATE TABLE IF NOT EXISTS lifted (closure_id text, n int)")
    await pool.execute("TRUNCATE lifted")

    async def count_it(ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, ev.ClosureLifted)
        await ctx.conn.execute("INSERT INTO lifted VALUES ($1, 1)", event.closure_id)

    topic = await new_topic(infra.kafka_bootstrap, partitions=1)
    first = envelope(closure_id="x1")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    for env in (first, first, envelope(closure_id="x2")):  # the relay published `first` twice
        await producer.send_and_wait(topic, env.kafka_value(), key=b"k", headers=env.kafka_headers())
    await producer.stop()
    consumer = PartitionBatchConsumer(
        pool=pool,
        bootstrap=infra.kafka_bootstrap,
        group_id="test-once",
        topics=[topic],
        handlers={"closure-lifted": count_it},
    )

    async def done() -> bool:
        return await consumer.stored_offset(topic, 0) == 3

    await run_consumer(consumer, done)
    # Kafka redelivers the whole partition (offsets lost on its side): PostgreSQL's offset rules.
    records = await read_all(infra.kafka_bootstrap, topic, expected=3)
    await consumer.process_batch(topic, 0, records)
    rows = await pool.fetch("SELECT closure_id, count(*) AS n FROM lifted GROUP BY closure_id ORDER BY 1")
    assert [(r["closure_id"], r["n"]) for r in rows] == [("x1", 1), ("x2", 1)]


async def test_poison_messages_go_to_dead_letters_and_consumption_goes_on(
    pool: asyncpg.Pool, infra: RunningStack, runtime_db: str
) -> None:
    seen: list[str] = []

    async def remember(ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, ev.ClosureLifted)
        if event.closure_id == "boom":
            raise ValueError("handler cannot process this one")
        seen.append(event.closure_id)

    topic = await new_topic(infra.kafka_bootstrap, partitions=1)
    good = envelope(closure_id="good")
    unknown = Envelope(type="booking-teleported", source="test", data={"x": 1})
    invalid = envelope(day="not-a-date")
    boom = envelope(closure_id="boom")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, b"{not json", key=b"k", headers=good.kafka_headers())
    for env in (unknown, invalid, boom, good):
        await producer.send_and_wait(topic, env.kafka_value(), key=b"k", headers=env.kafka_headers())
    await producer.stop()
    consumer = PartitionBatchConsumer(
        pool=pool,
        bootstrap=infra.kafka_bootstrap,
        group_id="test-dlq",
        topics=[topic],
        handlers={"closure-lifted": remember},
    )

    async def done() -> bool:
        return await consumer.stored_offset(topic, 0) == 5

    await run_consumer(consumer, done)
    assert seen == ["good"]
    errors = [r["error"] for r in await pool.fetch('SELECT error FROM dead_letters ORDER BY "offset"')]
    assert len(errors) == 4
    assert "not JSON" in errors[0]
    assert "unknown event type" in errors[1]
    assert "day" in errors[2]
    assert "handler cannot process" in errors[3]
    # ... and each is on the dead-letter topic, with the reason, once the relay has run.
    producer = make_producer(infra.kafka_bootstrap, "test-dlq-relay")
    await producer.start()
    conn = await connect(runtime_db)
    await OutboxRelay(runtime_db, producer).publish_batch(conn)
    await conn.close()
    await producer.stop()
    dead = [
        r
        for r in await read_all(infra.kafka_bootstrap, DEAD_LETTERS.name, expected=100, timeout=3)
        if dict(r.headers).get("dlq_topic", b"").decode() == topic
    ]
    assert len(dead) == 4
    assert all(dict(r.headers)["dlq_error"] for r in dead)
    assert json.loads(dead[-1].value)["closure_id"] == "boom"
