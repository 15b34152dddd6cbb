"""Nothing the outbox relay cannot publish holds up the records behind it, and sizes are bounded
where records are made: against the real Kafka and PostgreSQL.

A record too large for Kafka, one the broker refuses, one for a topic the cluster does not have:
each is parked (kept in `outbox_parked` with the reason, counted, announced on the dead-letter
topic) and the records behind it are published. A dead-letter copy of a record of almost a
mebibyte always fits. Forged records (a NUL where PostgreSQL stores text) are dead-lettered, and
consumption goes on.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import REGISTRY

from loket_contracts.envelope import Envelope
from loket_contracts.topics import DEAD_LETTERS
from loket_runtime.consumer import Delivery, HandlerContext, PartitionBatchConsumer
from loket_runtime.db import connect, create_pool, migrate
from loket_runtime.eventstore import EventStore
from loket_runtime.kafka import make_producer
from loket_runtime.outbox import Outbox, OutboxRelay
from tests.conftest import RunningStack

pytestmark = pytest.mark.asyncio(loop_scope="session")

NEAR_A_MEBIBYTE = 1_047_000  # fits the producer alone; a copy with more headers would not
MORE_THAN_A_MEBIBYTE = 1_100_000  # more than the producer and the broker take


@pytest.fixture(scope="session")
async def parking_db(infra: RunningStack) -> AsyncIterator[str]:
    infra.stack.postgres.create_databases(["loket_outbox_parking_test"])
    dsn = infra.stack.postgres.dsn("loket_outbox_parking_test")
    await migrate(dsn, None)
    yield dsn


@pytest.fixture
async def pool(parking_db: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(parking_db)
    await pool.execute("TRUNCATE events, outbox, outbox_parked, consumer_offsets, processed_events, dead_letters")
    yield pool
    await pool.close()


@pytest.fixture
async def relay(infra: RunningStack, parking_db: str) -> AsyncIterator[OutboxRelay]:
    def factory() -> AIOKafkaProducer:
        return make_producer(infra.kafka_bootstrap, f"test-parking-{uuid.uuid4().hex[:6]}")

    producer = factory()
    await producer.start()
    relay = OutboxRelay(parking_db, producer, name="test-outbox", producer_factory=factory)
    yield relay
    await relay.producer.stop()


async def new_topic(bootstrap: str, partitions: int = 1, **configs: str) -> str:
    name = f"test.park.{uuid.uuid4().hex[:10]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
    finally:
        await admin.close()
    return name


async def read_all(bootstrap: str, topic: str, expected: int, timeout: float = 20) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_partition_fetch_bytes=4 * 1024 * 1024,
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


def envelope(closure_id: str, **extra: Any) -> Envelope:
    return Envelope(
        type="closure-lifted",
        source="test",
        data={"closure_id": closure_id, "location_id": None, "day": "2026-12-24"} | extra,
    )


async def queue(pool: asyncpg.Pool, rows: list[tuple[str, str, Envelope | bytes]]) -> None:
    """Outbox rows as a service writes them: (topic, key, envelope or raw body)."""
    async with pool.acquire() as conn, conn.transaction():
        for topic, key, item in rows:
            if isinstance(item, Envelope):
                await Outbox().add(conn, topic, key, [item])
            else:
                headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"closure-lifted")]
                await Outbox().add_raw(conn, topic, key, headers, item)


async def publish_until(relay: OutboxRelay, dsn: str, done: Callable[[], Awaitable[bool]], timeout: float = 20) -> None:
    """Run the relay's rounds (as its loop does) until `done`; fail if it never gets there."""
    conn = await connect(dsn)
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not await done():
            assert loop.time() < deadline, "the relay did not get there in time"
            await asyncio.wait_for(relay.publish_batch(conn), timeout)
            await asyncio.sleep(0.05)
    finally:
        await conn.close()


def ids(records: list[Any]) -> list[str]:
    return [json.loads(r.value)["closure_id"] for r in records if r.value.startswith(b"{")]


def just_under_the_limit(room: int = 150) -> Envelope:
    """An envelope whose record is `room` bytes under the producer's limit (1 MiB, as the producer
    measures), about 1,048,000 bytes: a dead-letter copy with all its headers would not fit."""
    env = Envelope(type="closure-lifted", source="test", data={"pad": "z" * NEAR_A_MEBIBYTE})
    size = record_size(b"k", env.kafka_value(), env.kafka_headers())
    env = env.model_copy(update={"data": {"pad": "z" * (NEAR_A_MEBIBYTE + 1024 * 1024 - room - size)}})
    assert record_size(b"k", env.kafka_value(), env.kafka_headers()) == 1024 * 1024 - room
    return env


def record_size(key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> int:
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
    return size


async def _ignore(ctx: HandlerContext, delivery: Delivery) -> None:
    return None


def parked_count(topic: str, reason: str) -> float:
    return REGISTRY.get_sample_value("loket_outbox_parked_total", {"topic": topic, "reason": reason}) or 0.0


async def notices_for(bootstrap: str, topic: str) -> list[Any]:
    records = await read_all(bootstrap, DEAD_LETTERS.name, expected=10_000, timeout=3)
    return [r for r in records if dict(r.headers).get("dlq_topic", b"").decode() == topic]


async def test_a_record_too_large_is_parked_and_the_records_behind_it_go_on(
    pool: asyncpg.Pool, relay: OutboxRelay, parking_db: str, infra: RunningStack
) -> None:
    topic = await new_topic(infra.kafka_bootstrap)
    huge = b'{"closure_id":"huge","pad":"' + b"x" * MORE_THAN_A_MEBIBYTE + b'"}'
    await queue(pool, [(topic, "k", envelope("before")), (topic, "k", huge), (topic, "k", envelope("after"))])
    counted = parked_count(topic, "too-large")

    async def empty() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox") == 0

    await publish_until(relay, parking_db, empty)
    assert ids(await read_all(infra.kafka_bootstrap, topic, expected=2)) == ["before", "after"]
    parked = await pool.fetch("SELECT * FROM outbox_parked")
    assert len(parked) == 1 and parked[0]["topic"] == topic and parked[0]["value"] == huge  # kept whole
    assert parked[0]["reason"].startswith("too-large")
    assert parked_count(topic, "too-large") == counted + 1
    # Announced on the dead-letter topic with a copy that fits: the body cut, the original named.
    (notice,) = await notices_for(infra.kafka_bootstrap, topic)
    headers = {name: raw.decode() for name, raw in notice.headers}
    assert headers["dlq_parked"] == str(parked[0]["id"]) and "too-large" in headers["dlq_error"]
    assert headers["dlq_truncated"] == str(len(huge)) and len(notice.value) < 64 * 1024
    assert headers["dlq_ref"] == f"test-outbox:outbox_parked/{parked[0]['id']}"


async def test_a_record_the_broker_refuses_is_parked_and_the_producer_goes_on(
    pool: asyncpg.Pool, relay: OutboxRelay, parking_db: str, infra: RunningStack
) -> None:
    # The topic takes records of at most 4 KB: one of 20 KB passes the producer, not the broker.
    topic = await new_topic(infra.kafka_bootstrap, **{"max.message.bytes": "4096"})
    refused = envelope("refused", pad="y" * 20_000)
    rows: list[tuple[str, str, Envelope | bytes]] = [(topic, "k", envelope("one")), (topic, "k", refused)]
    rows += [(topic, "k", envelope(name)) for name in ("two", "three")]
    await queue(pool, rows)

    async def empty() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox") == 0

    await publish_until(relay, parking_db, empty)
    parked = await pool.fetch("SELECT * FROM outbox_parked")
    assert [p["reason"].split(":")[0] for p in parked] == ["refused"]
    assert "MessageSizeTooLarge" in parked[0]["reason"] or "RecordTooLarge" in parked[0]["reason"]
    assert json.loads(parked[0]["value"])["closure_id"] == "refused"
    # Later records, on the same partition, still go: the producer was not left out of step.
    await queue(pool, [(topic, "k", envelope("four"))])
    await publish_until(relay, parking_db, empty)
    assert ids(await read_all(infra.kafka_bootstrap, topic, expected=4)) == ["one", "two", "three", "four"]
    assert len(await notices_for(infra.kafka_bootstrap, topic)) == 1


async def test_a_record_for_a_missing_topic_waits_alone_then_is_parked(
    pool: asyncpg.Pool, relay: OutboxRelay, parking_db: str, infra: RunningStack
) -> None:
    topic = await new_topic(infra.kafka_bootstrap)
    missing = f"test.park.missing-{uuid.uuid4().hex[:8]}"
    relay.missing_topic_grace_seconds = 1.5
    await queue(pool, [(topic, "k", envelope("a")), (missing, "k", envelope("lost")), (topic, "k", envelope("b"))])

    async def others_out() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic) == 0

    await publish_until(relay, parking_db, others_out, timeout=10)
    # The records of other topics went at once; the missing topic's record waits its grace ...
    assert ids(await read_all(infra.kafka_bootstrap, topic, expected=2)) == ["a", "b"]
    assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", missing) == 1
    # ... and is then parked, with the reason.

    async def empty() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox") == 0

    await publish_until(relay, parking_db, empty, timeout=10)
    reason = await pool.fetchval("SELECT reason FROM outbox_parked WHERE topic = $1", missing)
    assert reason.startswith("unknown-topic") and missing in reason
    assert len(await notices_for(infra.kafka_bootstrap, missing)) == 1


async def test_a_dead_letter_copy_of_a_record_of_almost_a_mebibyte_fits(
    pool: asyncpg.Pool, relay: OutboxRelay, parking_db: str, infra: RunningStack
) -> None:
    topic = await new_topic(infra.kafka_bootstrap)
    big = just_under_the_limit()  # an invalid event the producer just takes; with dlq headers, it would not
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    await producer.send_and_wait(topic, big.kafka_value(), key=b"k", headers=big.kafka_headers())
    await producer.stop()
    consumer = PartitionBatchConsumer(
        pool=pool,
        bootstrap=infra.kafka_bootstrap,
        group_id="test-big-dlq",
        topics=[topic],
        handlers={"closure-lifted": _ignore},
    )
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(100):
            if await consumer.stored_offset(topic, 0) == 1:
                break
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    letter = await pool.fetchrow("SELECT * FROM dead_letters WHERE topic = $1", topic)
    assert letter is not None and letter["value"] == big.kafka_value()  # the original, whole, here
    # The copy for the dead-letter topic, and a record queued behind it, are both published.
    follower = await new_topic(infra.kafka_bootstrap)
    await queue(pool, [(follower, "k", envelope("behind"))])

    async def empty() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox") == 0

    await publish_until(relay, parking_db, empty)
    assert await pool.fetchval("SELECT count(*) FROM outbox_parked") == 0  # it fitted: nothing parked
    assert ids(await read_all(infra.kafka_bootstrap, follower, expected=1)) == ["behind"]
    (copy,) = await notices_for(infra.kafka_bootstrap, topic)
    headers = {name: raw.decode() for name, raw in copy.headers}
    assert headers["dlq_truncated"] == str(len(big.kafka_value()))
    assert headers["dlq_ref"] == f"test-big-dlq:dead_letters/{letter['id']}"
    assert headers["ce_id"] == big.id and len(copy.value) < 64 * 1024


async def test_forged_records_are_dead_lettered_and_consumption_goes_on(
    pool: asyncpg.Pool, infra: RunningStack
) -> None:
    seen: list[str] = []

    async def remember(ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        await ctx.conn.execute("SELECT $1::text", getattr(event, "closure_id", ""))
        seen.append(getattr(event, "closure_id", ""))

    topic = await new_topic(infra.kafka_bootstrap)
    good = envelope("good")
    nul_id = envelope("nul-id")
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap)
    await producer.start()
    headers = [(n, b"ev\x00il" if n == "ce_id" else v) for n, v in nul_id.kafka_headers()]
    await producer.send_and_wait(topic, nul_id.kafka_value(), key=b"k", headers=headers)  # a NUL in an id
    nul_key = envelope("nul-key")
    await producer.send_and_wait(topic, nul_key.kafka_value(), key=b"k\x00", headers=nul_key.kafka_headers())
    await producer.send_and_wait(topic, b"\xff\xfe not json", key=b"k", headers=good.kafka_headers())
    unknown = Envelope(type="booking-teleported", source="test", data={"booking_id": "ghost"})
    await producer.send_and_wait(topic, unknown.kafka_value(), key=b"k", headers=unknown.kafka_headers())
    await producer.send_and_wait(topic, good.kafka_value(), key=b"k", headers=good.kafka_headers())
    await producer.stop()
    consumer = PartitionBatchConsumer(
        pool=pool,
        bootstrap=infra.kafka_bootstrap,
        group_id="test-forged",
        topics=[topic],
        handlers={"closure-lifted": remember},
    )
    task = asyncio.create_task(consumer.run())
    try:
        for _ in range(100):
            if await consumer.stored_offset(topic, 0) == 5:
                break
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert await consumer.stored_offset(topic, 0) == 5, "a forged record stopped the consumer"
    assert seen == ["good"]
    errors = [r["error"] for r in await pool.fetch('SELECT error FROM dead_letters ORDER BY "offset"')]
    assert len(errors) == 4 and "NUL" in errors[0] and "NUL" in errors[1] and "unknown event type" in errors[3]


async def test_an_event_too_large_is_refused_before_it_is_stored(pool: asyncpg.Pool) -> None:
    from loket_runtime.outbox import MAX_EVENT_BYTES, PayloadTooLarge

    big = Envelope(type="closure-lifted", source="test", data={"pad": "p" * (MAX_EVENT_BYTES + 1)})
    async with pool.acquire() as conn:
        with pytest.raises(PayloadTooLarge):
            async with conn.transaction():
                await EventStore().append(conn, "s-1", 0, [big])
        with pytest.raises(PayloadTooLarge):
            async with conn.transaction():
                await Outbox().add(conn, "loket.catalogue", "k", [big])
    assert await pool.fetchval("SELECT count(*) FROM events") == 0
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
