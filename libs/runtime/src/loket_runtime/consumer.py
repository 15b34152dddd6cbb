"""Kafka consumers whose progress lives in PostgreSQL, in the same transaction as their work.

One batch = the records fetched from one partition, applied in one transaction together with
the partition's next offset (`consumer_offsets`, locked FOR UPDATE) and the ids of the events
applied (`processed_events`). So a crash anywhere loses nothing and applies nothing twice; a
record the relay published twice (same event id) is skipped; and during a rebalance two
instances that briefly hold one partition serialise on the offset row.

A record this consumer cannot handle (not a CloudEvent, bad JSON, unknown type, fails
validation, a NUL in a header or key, or its handler raises `PoisonMessage` or any non-transient
error) is stored whole in `dead_letters`, queued for the dead-letter topic through the outbox as a
copy that always fits (`outbox.bounded_copy`: a body too large is cut, the copy names the row that
keeps it), and skipped.

A consumer group splits its topics between the instances that share it: right for work that is
done once per database. State every process needs whole (a read model kept in memory, such as
the catalogue view) is read by a `WholeTopicConsumer` instead: no group, every partition, in
every process, whatever the instances are called.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord
from prometheus_client import Counter, Histogram
from pydantic import ValidationError

from loket_contracts.envelope import Envelope, EnvelopeError
from loket_contracts.events import EVENT_TYPES, Event
from loket_contracts.topics import DEAD_LETTERS
from loket_contracts.upcasting import UnknownEventType, parse_event
from loket_runtime.eventstore import ConcurrencyError
from loket_runtime.logging import bound, get_logger
from loket_runtime.outbox import BufferedOutbox, Outbox, bounded_copy, pg_text

log = get_logger(__name__)

RECORDS_APPLIED = Counter("loket_consumer_records_total", "Records applied by a consumer group", ["group", "topic"])
DEAD_LETTERED = Counter("loket_consumer_dead_letters_total", "Records sent to the dead letters", ["group", "topic"])
BATCH_SECONDS = Histogram("loket_consumer_batch_seconds", "Time to apply one batch", ["group"])

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    ConcurrencyError,
    ConnectionError,
    TimeoutError,
    OSError,
)


class _PoisonInFastPath(Exception):
    """A handler failed in the fast path: replay the batch with a savepoint per record."""


class RetryCarefully(Exception):
    """Raised by a batch hook or handler in the fast path when the batch should be rolled back and
    replayed carefully (a savepoint per record, `HandlerContext.careful` set): for example a
    write-behind buffer that found, at flush, that another writer got there first."""


class PoisonMessage(Exception):
    """Raised by a handler for a message that will never succeed: it goes to the dead letters."""


@dataclass(frozen=True)
class Delivery:
    envelope: Envelope
    event: Event
    topic: str
    partition: int
    offset: int
    key: str | None


@dataclass
class HandlerContext:
    """What a handler may use: the batch's connection (inside its transaction) and the outbox."""

    conn: asyncpg.Connection
    outbox: Outbox
    after_commit: list[Callable[[], Any]] = field(default_factory=list)
    # True when the batch is replayed with a savepoint per record: handlers must then write
    # through at once (a record rolled back to its savepoint leaves nothing behind in memory).
    careful: bool = False
    # Whatever a consumer's batch hooks keep for the length of one batch.
    batch_state: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[HandlerContext, Delivery], Awaitable[None]]
BatchHook = Callable[[HandlerContext, list[Delivery]], Awaitable[None]]


def as_record(
    envelope: Envelope, topic: str, offset: int, key: str, partition: int = 0
) -> ConsumerRecord[bytes, bytes]:
    """An envelope as a consumer receives it from the broker, to hand to `process_batch` without
    one (benchmarks and tests of a consumer's own work)."""
    value = envelope.kafka_value()
    return ConsumerRecord(
        topic=topic,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=key.encode(),
        value=value,
        checksum=None,
        serialized_key_size=len(key),
        serialized_value_size=len(value),
        headers=envelope.kafka_headers(),
    )


class PartitionBatchConsumer:
    def __init__(
        self,
        *,
        pool: asyncpg.Pool,
        bootstrap: str,
        group_id: str,
        topics: Sequence[str],
        handlers: dict[str, Handler],
        batch_size: int = 500,
        before_batch: BatchHook | None = None,
        before_commit: BatchHook | None = None,
        client_id: str | None = None,
        fetch_max_wait_ms: int = 50,
    ) -> None:
        self.pool = pool
        self.group_id = group_id
        self.topics = list(topics)
        self.handlers = handlers
        self.batch_size = batch_size
        self.before_batch = before_batch
        self.before_commit = before_commit
        self.outbox = Outbox()
        self.assigned: set[TopicPartition] = set()
        self.processed = 0
        self.dead_lettered = 0
        self._bootstrap = bootstrap
        self._client_id = client_id or group_id
        # How long the broker may hold an empty fetch: short on a decision path, longer elsewhere
        # (fewer idle round trips for the broker).
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._consumer: AIOKafkaConsumer | None = None

    # --- running against Kafka -------------------------------------------------------------

    def kafka_group(self) -> str | None:
        """The Kafka consumer group this consumer joins (None: it assigns partitions itself)."""
        return self.group_id

    async def join(self, consumer: AIOKafkaConsumer) -> None:
        """Take partitions: join the group, which hands this instance its share."""
        consumer.subscribe(topics=self.topics, listener=_SeekToStoredOffsets(self))

    async def between_fetches(self, consumer: AIOKafkaConsumer) -> None:
        """Called before each fetch is started (no fetch is in flight then)."""

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.kafka_group(),
            client_id=self._client_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=self.batch_size,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            # Room for a whole batch in one fetch (a record with its headers is about 1 KB).
            max_partition_fetch_bytes=max(1024 * 1024, self.batch_size * 2048),
        )
        self._consumer = consumer
        await consumer.start()
        await self.join(consumer)
        # The next fetch runs while this batch is applied, so the broker round trip and the
        # records' unpacking do not wait for the database (and the other way round). Safe with
        # PostgreSQL's offsets: a batch applies only what lies at or after the stored offset, and
        # every batch is applied (retried until it is) before the next one is looked at.
        fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=500, max_records=self.batch_size))
        try:
            while True:
                batches = await fetch
                await self.between_fetches(consumer)
                fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=500, max_records=self.batch_size))
                for tp, records in batches.items():
                    await self._process_with_retry(consumer, tp, records)
        finally:
            fetch.cancel()
            with contextlib.suppress(BaseException):
                await fetch
            with contextlib.suppress(Exception):
                await asyncio.shield(consumer.stop())

    async def _process_with_retry(
        self, consumer: AIOKafkaConsumer, tp: TopicPartition, records: list[ConsumerRecord[Any, Any]]
    ) -> None:
        delay = 0.2
        while True:
            try:
                next_offset = await self.process_batch(tp.topic, tp.partition, records)
                break
            except TRANSIENT_ERRORS as exc:
                log.warning("batch failed, retrying", topic=tp.topic, partition=tp.partition, error=str(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self.kafka_group() is not None and tp in consumer.assignment():
            with contextlib.suppress(Exception):  # Kafka's copy is informational (lag); PostgreSQL's rules
                await consumer.commit({tp: next_offset})

    async def stored_offset(self, topic: str, partition: int) -> int | None:
        value: int | None = await self.pool.fetchval(
            "SELECT next_offset FROM consumer_offsets WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            self.group_id,
            topic,
            partition,
        )
        return value

    # --- one batch, one transaction ----------------------------------------------------------

    async def process_batch(self, topic: str, partition: int, records: Sequence[ConsumerRecord[Any, Any]]) -> int:
        """Apply the records not applied yet; return the partition's next offset.

        Fast path: the whole batch in one transaction without a savepoint per record. Should a
        handler fail for good, the batch is rolled back and replayed with a savepoint around each
        record, so only the poison message is dead-lettered."""
        with BATCH_SECONDS.labels(self.group_id).time():
            try:
                return await self._process_batch(topic, partition, records, careful=False)
            except (_PoisonInFastPath, RetryCarefully):
                return await self._process_batch(topic, partition, records, careful=True)

    async def _process_batch(
        self, topic: str, partition: int, records: Sequence[ConsumerRecord[Any, Any]], careful: bool
    ) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            next_offset = await self.lock_offset(conn, topic, partition)
            fresh = [r for r in records if r.offset >= next_offset]
            if not fresh:
                return next_offset
            # Fast path: the handlers' records are written in one statement at the end of the batch.
            outbox = self.outbox if careful else BufferedOutbox()
            ctx = HandlerContext(conn=conn, outbox=outbox, careful=careful)
            deliveries = await self._decode_all(ctx, fresh)
            applied_ids = await self._already_processed(conn, [d.envelope.id for d in deliveries])
            todo: list[Delivery] = []
            for delivery in deliveries:
                if delivery.envelope.id in applied_ids:
                    continue  # a duplicate from the relay: applied once already
                applied_ids.add(delivery.envelope.id)
                todo.append(delivery)
            if self.before_batch is not None:
                await self.before_batch(ctx, todo)
            done: list[Delivery] = []
            for delivery in todo:
                if await self._apply(ctx, delivery, careful):
                    done.append(delivery)
            if self.before_commit is not None:
                await self.before_commit(ctx, done)
            if isinstance(outbox, BufferedOutbox):
                await outbox.flush(conn)
            if done:
                await conn.execute(
                    "INSERT INTO processed_events (consumer_group, event_id)"
                    " SELECT $1, e FROM unnest($2::text[]) AS e ON CONFLICT DO NOTHING",
                    self.group_id,
                    [d.envelope.id for d in done],
                )
            next_offset = int(fresh[-1].offset) + 1
            await self.save_offset(conn, topic, partition, next_offset)
        self.processed += len(fresh)
        RECORDS_APPLIED.labels(self.group_id, topic).inc(len(fresh))
        for callback in ctx.after_commit:
            result = callback()
            if asyncio.iscoroutine(result):
                await result
        return next_offset

    async def lock_offset(self, conn: asyncpg.Connection, topic: str, partition: int) -> int:
        """The partition's next offset, locked for this transaction: two instances that both
        think they own the partition (a rebalance) take turns here and skip what the other did."""
        await conn.execute(
            "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
            " VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
            self.group_id,
            topic,
            partition,
        )
        next_offset: int = await conn.fetchval(
            "SELECT next_offset FROM consumer_offsets"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = $3 FOR UPDATE",
            self.group_id,
            topic,
            partition,
        )
        return next_offset

    async def save_offset(self, conn: asyncpg.Connection, topic: str, partition: int, next_offset: int) -> None:
        await conn.execute(
            "UPDATE consumer_offsets SET next_offset = $4, updated_at = now()"
            " WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
            self.group_id,
            topic,
            partition,
            next_offset,
        )

    async def _decode_all(self, ctx: HandlerContext, records: Sequence[ConsumerRecord[Any, Any]]) -> list[Delivery]:
        deliveries = []
        for record in records:
            key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else record.key
            try:
                # PostgreSQL stores no NUL in text: such an id or key would fail the whole batch.
                if "\x00" in (key or "") or any(b"\x00" in (raw or b"") for _, raw in record.headers or ()):
                    raise EnvelopeError("a header or the key contains a NUL character")
                envelope = Envelope.from_kafka(record.headers, record.value)
                if envelope.type not in EVENT_TYPES:
                    raise UnknownEventType(envelope.type)
                if envelope.type not in self.handlers:
                    continue  # a known event that this consumer has no interest in
                event = parse_event(envelope.type, envelope.schemaversion, envelope.data)
            except (EnvelopeError, UnknownEventType, ValidationError) as exc:
                reason = f"unknown event type: {exc}" if isinstance(exc, UnknownEventType) else str(exc)
                await self._dead_letter(ctx.conn, record, reason)
                continue
            deliveries.append(Delivery(envelope, event, record.topic, record.partition, record.offset, key))
        return deliveries

    async def _already_processed(self, conn: asyncpg.Connection, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        rows = await conn.fetch(
            "SELECT event_id FROM processed_events WHERE consumer_group = $1 AND event_id = ANY($2::text[])",
            self.group_id,
            event_ids,
        )
        return {row["event_id"] for row in rows}

    async def _apply(self, ctx: HandlerContext, delivery: Delivery, careful: bool) -> bool:
        env = delivery.envelope
        handler = self.handlers[env.type]
        with bound(event_id=env.id, event_type=env.type, correlation_id=env.correlationid):
            if not careful:
                try:
                    await handler(ctx, delivery)
                    return True
                except RetryCarefully:
                    raise
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:
                    raise _PoisonInFastPath from exc
            try:
                async with ctx.conn.transaction():  # savepoint: a poison message undoes only itself
                    await handler(ctx, delivery)
                return True
            except TRANSIENT_ERRORS:
                raise
            except Exception as exc:
                log.error("message dead-lettered", error=repr(exc), topic=delivery.topic, offset=delivery.offset)
                await self._dead_letter_delivery(ctx.conn, delivery, repr(exc))
                return False

    # --- dead letters ------------------------------------------------------------------------

    async def _dead_letter(self, conn: asyncpg.Connection, record: ConsumerRecord[Any, Any], error: str) -> None:
        key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else record.key
        await self._store_dead_letter(
            conn, record.topic, record.partition, record.offset, key, list(record.headers or ()), record.value, error
        )

    async def _dead_letter_delivery(self, conn: asyncpg.Connection, delivery: Delivery, error: str) -> None:
        env = delivery.envelope
        await self._store_dead_letter(
            conn,
            delivery.topic,
            delivery.partition,
            delivery.offset,
            delivery.key,
            env.kafka_headers(),
            env.kafka_value(),
            error,
        )

    async def _store_dead_letter(
        self,
        conn: asyncpg.Connection,
        topic: str,
        partition: int,
        offset: int,
        key: str | None,
        headers: list[tuple[str, bytes]],
        value: bytes | None,
        error: str,
    ) -> None:
        self.dead_lettered += 1
        DEAD_LETTERED.labels(self.group_id, topic).inc()
        key = pg_text(key) if key is not None else None
        error = pg_text(error)[:2000]
        text_headers = [[pg_text(name), pg_text(raw)] for name, raw in headers]
        # The whole original stays here; the copy for the dead-letter topic always fits a record.
        letter_id = await conn.fetchval(
            'INSERT INTO dead_letters (consumer_group, topic, partition, "offset", key, headers, value, error)'
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING RETURNING id",
            self.group_id,
            topic,
            partition,
            offset,
            key,
            text_headers,
            value,
            error,
        )
        copy_headers, copy_value, cut = bounded_copy(headers, value or b"")
        dlq_headers = [
            *copy_headers,
            *[
                ("dlq_group", self.group_id.encode()),
                ("dlq_key", (key or "").encode()),
                ("dlq_topic", topic.encode()),
                ("dlq_partition", str(partition).encode()),
                ("dlq_offset", str(offset).encode()),
                ("dlq_error", error.encode()),
            ],
        ]
        if cut is not None:
            where = (
                f"dead_letters/{letter_id}" if letter_id is not None else f"dead_letters {topic}/{partition}@{offset}"
            )
            dlq_headers += [("dlq_truncated", str(cut).encode()), ("dlq_ref", f"{self.group_id}:{where}".encode())]
        await self.outbox.add_raw(conn, DEAD_LETTERS.name, self.group_id, dlq_headers, copy_value)


class WholeTopicConsumer(PartitionBatchConsumer):
    """State every process needs whole (a read model kept in memory, such as the catalogue view):
    every instance reads every partition of its topics, without a Kafka consumer group, so no
    setting (two processes given one instance id, or none) can split the topics between them.

    What a record does in the database (`handlers`) is done once per database: the progress is the
    `group_id`'s rows in `consumer_offsets`, shared by the processes of that database, and locked
    per batch as for any consumer. What it does in this process (`on_record`, after the commit, in
    order) is done in every process, from positions of its own: `positions` starts where the
    snapshot the process loaded stood (`consumer_offsets` read with the table, in one
    transaction), or at the beginning.

    `lag_group`, if given, is a Kafka group this process commits its positions to, only so that
    the standard tools and the ops API show the read model's lag: partitions are assigned, never
    handed out by that group, so its name cannot split anything."""

    def __init__(
        self,
        *,
        on_record: Callable[[Delivery], None],
        positions: dict[TopicPartition, int] | None = None,
        lag_group: str | None = None,
        refresh_seconds: float = 30.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.on_record = on_record
        self.positions: dict[TopicPartition, int] = positions if positions is not None else {}
        self.lag_group = lag_group
        self._refresh_seconds = refresh_seconds
        self._refreshed_at = 0.0

    def kafka_group(self) -> str | None:
        return self.lag_group

    async def join(self, consumer: AIOKafkaConsumer) -> None:
        partitions: set[TopicPartition] = set()
        while True:
            partitions = await self._partitions(consumer)
            if {tp.topic for tp in partitions} >= set(self.topics):
                break
            log.warning("waiting for topics", topics=sorted(set(self.topics) - {tp.topic for tp in partitions}))
            await asyncio.sleep(1.0)
        await self._assign(consumer, partitions)

    async def between_fetches(self, consumer: AIOKafkaConsumer) -> None:
        """A topic given more partitions is read whole too (checked every `refresh_seconds`)."""
        if time.monotonic() - self._refreshed_at < self._refresh_seconds:
            return
        with contextlib.suppress(Exception):
            partitions = await self._partitions(consumer)
            if not partitions <= self.assigned:
                await self._assign(consumer, partitions | self.assigned)

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[TopicPartition]:
        self._refreshed_at = time.monotonic()
        cluster = await consumer._client.fetch_all_metadata()
        return {TopicPartition(t, p) for t in self.topics for p in cluster.partitions_for_topic(t) or ()}

    async def _assign(self, consumer: AIOKafkaConsumer, partitions: set[TopicPartition]) -> None:
        consumer.assign(sorted(partitions))
        for tp in partitions:
            if tp in self.positions:
                consumer.seek(tp, self.positions[tp])
            else:
                await consumer.seek_to_beginning(tp)
        self.assigned = set(partitions)

    async def process_batch(self, topic: str, partition: int, records: Sequence[ConsumerRecord[Any, Any]]) -> int:
        tp = TopicPartition(topic, partition)
        unseen = [r for r in records if r.offset >= self.positions.get(tp, 0)]
        if not unseen:
            return self.positions.get(tp, 0)
        # The database's part, for what no process of this database has applied yet ...
        next_offset = await super().process_batch(topic, partition, unseen)
        # ... and this process's part, for everything it has not seen itself.
        for record in unseen:
            delivery = self._readable(record)
            if delivery is not None:
                self.on_record(delivery)
        self.positions[tp] = int(unseen[-1].offset) + 1
        return next_offset

    def _readable(self, record: ConsumerRecord[Any, Any]) -> Delivery | None:
        """The record as a delivery, or None for what the database's part dead-letters or ignores."""
        key = record.key.decode(errors="replace") if isinstance(record.key, bytes) else record.key
        if any(b"\x00" in (raw or b"") for _, raw in record.headers or ()):
            return None
        try:
            envelope = Envelope.from_kafka(record.headers, record.value)
            if envelope.type not in self.handlers:
                return None
            event = parse_event(envelope.type, envelope.schemaversion, envelope.data)
        except (EnvelopeError, UnknownEventType, ValidationError):
            return None
        return Delivery(envelope, event, record.topic, record.partition, record.offset, key)


class _SeekToStoredOffsets(ConsumerRebalanceListener):  # type: ignore[misc]
    """On assignment, continue each partition from the offset stored in PostgreSQL."""

    def __init__(self, owner: PartitionBatchConsumer) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.owner.assigned -= set(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        consumer = self.owner._consumer
        assert consumer is not None
        for tp in assigned:
            stored = await self.owner.stored_offset(tp.topic, tp.partition)
            if stored is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, stored)
        self.owner.assigned |= set(assigned)
