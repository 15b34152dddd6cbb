"""Operations: the cluster's dead letters, their replay, rebuilding the agenda, and event tails.

- `DeadLetterCollector` reads `loket.dead-letters` (records any consumer of any service could
  not handle) into `ops_dead_letters`, with its offsets in PostgreSQL in the same transaction.
  Among them are records an outbox relay parked (it could not publish them: too large, refused,
  unknown topic), and copies whose body was cut to fit (`original_bytes`, `reference`: the
  service's table that keeps the whole original).
- `replay` republishes a dead letter's original record (headers and body, under its original
  key) to its original topic through the outbox, and marks it replayed, in one transaction. A
  copy whose body was cut cannot be replayed (`NotReplayable`).
- `rebuild_agenda` folds `loket.bookings` and `loket.calendar` from offset zero into empty
  agenda tables in one transaction, compares the result with the incremental one, and moves the
  live consumer to where the rebuild stopped.
- `events_of` reads every topic for the events of one booking or one correlation id.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from loket_calendar.adapters import kafka_ops
from loket_calendar.application.agenda import TABLES, Change, change_of_record, load_rebuilt
from loket_contracts.topics import ALL_TOPICS, BOOKINGS, CALENDAR, DEAD_LETTERS, NOTIFICATIONS
from loket_runtime.consumer import PartitionBatchConsumer
from loket_runtime.logging import get_logger
from loket_runtime.outbox import Outbox

log = get_logger(__name__)

AGENDA_GROUP = "calendar-agenda"
DEAD_LETTER_GROUP = "calendar-ops-dead-letters"
EVENT_TOPICS = (BOOKINGS.name, CALENDAR.name, NOTIFICATIONS.name, DEAD_LETTERS.name)


class NotFound(LookupError):
    pass


class AlreadyReplayed(RuntimeError):
    pass


class NotReplayable(RuntimeError):
    """Only part of the original body travelled with the dead letter."""


# --- dead letters ------------------------------------------------------------------------------


def _text(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw is not None else ""


def original_key(topic: str | None, headers: dict[str, str], value: bytes | None) -> str:
    """The key the original record had: the `dlq_key` header when the dead-lettering consumer
    kept it, else the body field the topic is keyed by (see the topic registry)."""
    if "dlq_key" in headers:
        return headers["dlq_key"]
    registry = {t.name: t for t in ALL_TOPICS}
    field = registry[topic].key if topic in registry else ""
    try:
        body = json.loads(value or b"")
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get(field), str):
        return str(body[field])
    return headers.get("ce_subject", "")


def dead_letter_row(dlq_partition: int, record: kafka_ops.Record) -> tuple[Any, ...]:
    headers = [(name, _text(raw)) for name, raw in (record.headers or ())]
    named = dict(headers)
    original = [[name, value] for name, value in headers if not name.startswith("dlq_")]

    def as_int(name: str) -> int | None:
        try:
            return int(named[name])
        except (KeyError, ValueError):
            return None

    topic = named.get("dlq_topic")
    return (
        dlq_partition,
        record.offset,
        named.get("dlq_group"),
        topic,
        as_int("dlq_partition"),
        as_int("dlq_offset"),
        original_key(topic, named, record.value),
        original,
        record.value,
        named.get("dlq_error"),
        named.get("ce_id"),
        named.get("ce_type"),
        datetime.fromtimestamp(record.timestamp / 1000, UTC),
        as_int("dlq_truncated"),
        named.get("dlq_ref"),
        "dlq_parked" in named,
    )


class DeadLetterCollector(PartitionBatchConsumer):
    """Collects the dead-letter topic into `ops_dead_letters`; the records are not CloudEvents of
    ours (they may be anything a consumer choked on), so the batch is stored raw."""

    async def process_batch(self, topic: str, partition: int, records: Sequence[kafka_ops.Record]) -> int:
        async with self.pool.acquire() as conn, conn.transaction():
            next_offset = await self.lock_offset(conn, topic, partition)
            fresh = [r for r in records if r.offset >= next_offset]
            if not fresh:
                return next_offset
            await conn.executemany(
                'INSERT INTO ops_dead_letters (dlq_partition, dlq_offset, consumer_group, topic, partition, "offset",'
                " key, headers, value, error, event_id, event_type, dead_lettered_at,"
                " original_bytes, reference, parked)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
                " ON CONFLICT DO NOTHING",
                [dead_letter_row(partition, r) for r in fresh],
            )
            next_offset = fresh[-1].offset + 1
            await self.save_offset(conn, topic, partition, next_offset)
        self.processed += len(fresh)
        return next_offset


def dead_letter_out(row: asyncpg.Record) -> dict[str, Any]:
    value: bytes | None = row["value"]
    body: Any = None
    if value is not None:
        try:
            body = json.loads(value)
        except ValueError:
            body = _text(value)
    return {
        "id": row["id"],
        "group": row["consumer_group"],
        "topic": row["topic"],
        "partition": row["partition"],
        "offset": row["offset"],
        "key": row["key"],
        "error": row["error"],
        "event_id": row["event_id"],
        "event_type": row["event_type"],
        "dead_lettered_at": row["dead_lettered_at"],
        "replayed_at": row["replayed_at"],
        "replay_count": row["replay_count"],
        "parked": row["parked"],
        "original_bytes": row["original_bytes"],
        "reference": row["reference"],
        "replayable": row["original_bytes"] is None and row["topic"] is not None,
        "headers": dict(row["headers"]),
        "body": body,
    }


async def list_dead_letters(
    pool: asyncpg.Pool,
    *,
    replayed: bool | None,
    group: str | None,
    topic: str | None,
    limit: int,
    parked: bool | None = None,
) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT * FROM ops_dead_letters WHERE ($1::boolean IS NULL OR (replayed_at IS NOT NULL) = $1)"
        " AND ($2::text IS NULL OR consumer_group = $2) AND ($3::text IS NULL OR topic = $3)"
        " AND ($5::boolean IS NULL OR parked = $5)"
        " ORDER BY dead_lettered_at DESC, id DESC LIMIT $4",
        replayed,
        group,
        topic,
        limit,
        parked,
    )
    return [dead_letter_out(r) for r in rows]


async def get_dead_letter(pool: asyncpg.Pool, letter_id: int) -> dict[str, Any]:
    row = await pool.fetchrow("SELECT * FROM ops_dead_letters WHERE id = $1", letter_id)
    if row is None:
        raise NotFound(letter_id)
    return dead_letter_out(row)


async def replay(pool: asyncpg.Pool, letter_id: int, force: bool = False) -> dict[str, Any]:
    """Queue the original record for its original topic (the outbox relay publishes it) and mark
    the dead letter replayed, in one transaction."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT * FROM ops_dead_letters WHERE id = $1 FOR UPDATE", letter_id)
        if row is None:
            raise NotFound(letter_id)
        if row["topic"] is None:
            raise NotFound(f"dead letter {letter_id} does not name its original topic")
        if row["original_bytes"] is not None:
            raise NotReplayable(row["reference"], row["original_bytes"])
        if row["replayed_at"] is not None and not force:
            raise AlreadyReplayed(row["replayed_at"])
        headers = [(name, value.encode()) for name, value in row["headers"]]
        await Outbox().add_raw(conn, row["topic"], row["key"] or "", headers, row["value"] or b"")
        updated = await conn.fetchrow(
            "UPDATE ops_dead_letters SET replayed_at = now(), replay_count = replay_count + 1"
            " WHERE id = $1 RETURNING *",
            letter_id,
        )
    log.info("dead letter replayed", dead_letter=letter_id, topic=row["topic"], key=row["key"])
    return dead_letter_out(updated)


# --- projections -------------------------------------------------------------------------------


async def rebuild_agenda(pool: asyncpg.Pool, bootstrap: str, verify_only: bool = False) -> dict[str, Any]:
    """Rebuild the agenda from offset zero in one transaction; compare it with the incremental one.

    The live consumer's offset rows are locked first, so it pauses (between batches) while the
    rebuild runs. A verification (`verify_only`) folds exactly what the live consumer had applied
    and rolls back; a rebuild folds up to the end offsets captured at the start, keeps the result
    and moves the live consumer there: it goes on from the next event, nothing twice or lost."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    mark = started

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = round(now - mark, 4)
        mark = now

    topics = [BOOKINGS.name, CALENDAR.name]
    events = 0

    async def decoded(batches: AsyncIterator[list[kafka_ops.Record]]) -> AsyncIterator[list[Change]]:
        nonlocal events
        async for batch in batches:
            events += len(batch)
            yield [c for r in batch if (c := change_of_record(r.headers, r.value)) is not None]

    async with kafka_ops.TopicReader(bootstrap) as kafka, pool.acquire() as conn:
        partitions = await kafka.partitions(topics)
        tx = conn.transaction()
        await tx.start()
        open_ = True
        try:
            await conn.executemany(
                "INSERT INTO consumer_offsets (consumer_group, topic, partition, next_offset)"
                " VALUES ($1, $2, $3, 0) ON CONFLICT DO NOTHING",
                [(AGENDA_GROUP, tp.topic, tp.partition) for tp in sorted(partitions)],
            )
            live = {
                TopicPartition(r["topic"], r["partition"]): int(r["next_offset"])
                for r in await conn.fetch(
                    "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = $1"
                    " AND topic = ANY($2::text[]) ORDER BY topic, partition FOR UPDATE",
                    AGENDA_GROUP,
                    topics,
                )
            }
            # Captured after the lock: the live consumer cannot move past these while we run.
            ends = await kafka.end_offsets(partitions)
            stop_at = {tp: live.get(tp, 0) for tp in ends} if verify_only else ends
            await kafka.seek(stop_at)  # the first records are fetched while the tables are emptied
            phase("lock_and_end_offsets")
            for table in TABLES:
                await conn.execute(f"CREATE TEMP TABLE old_{table} ON COMMIT DROP AS SELECT * FROM {table}")
                await conn.execute(f"DELETE FROM {table}")
            phase("empty_tables")
            read_started = time.perf_counter()
            rows = await load_rebuilt(conn, decoded(kafka.batches()))
            seconds = time.perf_counter() - read_started
            phase("read_fold_and_copy")
            differences = await _compare(conn)
            phase("compare")
            if verify_only:
                open_ = False
                await tx.rollback()
            else:
                await conn.executemany(
                    "UPDATE consumer_offsets SET next_offset = $4, updated_at = now()"
                    " WHERE consumer_group = $1 AND topic = $2 AND partition = $3",
                    [(AGENDA_GROUP, tp.topic, tp.partition, offset) for tp, offset in sorted(stop_at.items())],
                )
                await conn.execute("SELECT pg_notify('loket_agenda', $1)", json.dumps({"rebuilt": True}))
                open_ = False
                await tx.commit()
            phase("commit")
        except BaseException:
            if open_:
                await tx.rollback()
            raise
    lag_at_start = sum(max(ends[tp] - live.get(tp, 0), 0) for tp in ends)
    report: dict[str, Any] = {
        "projection": "agenda",
        "mode": "verify" if verify_only else "rebuild",
        "events": events,
        "seconds": round(seconds, 4),
        "events_per_second": round(events / seconds) if seconds > 0 else None,
        "total_seconds": round(time.perf_counter() - started, 4),
        "phases": phases,
        "up_to": {f"{tp.topic}/{tp.partition}": offset for tp, offset in sorted(stop_at.items())},
        "live_consumer_lag_at_start": lag_at_start,
        "equal_to_incremental": not any(differences.values()),
        "differences": differences,
    }
    if not verify_only:
        report["rows"] = rows
    log.info("agenda rebuilt" if not verify_only else "agenda verified", **{k: report[k] for k in ("events",)})
    return report


async def _compare(conn: asyncpg.Connection) -> dict[str, Any]:
    """Rows that differ between the incremental tables (old_*) and the rebuilt ones, by key.

    A hash join on the key, comparing whole rows only where the keys meet: cheaper than EXCEPT both
    ways, which hashes or sorts every column (jsonb included) of both tables twice. Memory enough
    for the hash tables keeps them off disk."""
    # each table's key, and the column a difference is reported by
    keys = {
        "agenda": (("booking_id",), "booking_id"),
        "agenda_changes": (("event_id",), "event_id"),
        "agenda_days": (("location_id", "day", "booking_id"), "booking_id"),
    }
    await conn.execute("SET LOCAL work_mem = '64MB'")
    result: dict[str, Any] = {}
    for table in TABLES:
        key, shown = keys[table]
        on = " AND ".join(f"o.{k} = n.{k}" for k in key)
        differing = await conn.fetch(
            f"SELECT DISTINCT coalesce(o.{shown}, n.{shown}) AS k FROM old_{table} o FULL JOIN {table} n ON {on}"
            " WHERE o IS DISTINCT FROM n ORDER BY 1 LIMIT 20"
        )
        result[table] = [r["k"] for r in differing]
    return result


# --- event tail --------------------------------------------------------------------------------


async def events_of(
    bootstrap: str,
    booking: str | None,
    correlation: str | None,
    limit: int = 1000,
    location: str | None = None,
) -> list[dict[str, Any]]:
    """The events of one booking (subject, or `booking_id` in the body) or of one correlation id,
    across the topics, in time order.

    With the booking's `location` known (the agenda knows it), only the partitions its records
    are keyed to are read: the location's partition of the booking and calendar topics and the
    booking's partition of the notifications topic (Kafka's default murmur2 partitioner)."""
    ends = await kafka_ops.end_offsets(bootstrap, EVENT_TOPICS)
    if booking is not None and location is not None:
        keys = {BOOKINGS.name: location, CALENDAR.name: location, NOTIFICATIONS.name: booking}
        counts: dict[str, list[int]] = {}
        for tp in ends:
            counts.setdefault(tp.topic, []).append(tp.partition)
        partitioner = DefaultPartitioner()
        wanted = {
            topic: partitioner(key.encode(), sorted(counts[topic]), sorted(counts[topic]))
            for topic, key in keys.items()
            if topic in counts
        }
        ends = {tp: end for tp, end in ends.items() if wanted.get(tp.topic, tp.partition) == tp.partition}
    found: list[dict[str, Any]] = []
    async for batch in kafka_ops.read(bootstrap, ends):
        for record in batch:
            headers = {name: _text(raw) for name, raw in (record.headers or ())}
            subject = headers.get("ce_subject")
            matched = correlation is not None and headers.get("ce_correlationid") == correlation
            body: Any = None
            if booking is not None and not matched:
                matched = subject == booking
                if not matched and record.value and booking.encode() in record.value:
                    body = _json(record.value)
                    matched = isinstance(body, dict) and body.get("booking_id") == booking
            if not matched:
                continue
            if body is None:
                body = _json(record.value)
            found.append(
                {
                    "topic": record.topic,
                    "partition": record.partition,
                    "offset": record.offset,
                    "key": _text(record.key) if record.key is not None else None,
                    "id": headers.get("ce_id"),
                    "type": headers.get("ce_type"),
                    "source": headers.get("ce_source"),
                    "subject": subject,
                    "time": headers.get("ce_time") or datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(),
                    "correlationid": headers.get("ce_correlationid"),
                    "causationid": headers.get("ce_causationid"),
                    "dead_letter": {k: v for k, v in headers.items() if k.startswith("dlq_")} or None,
                    "data": body,
                }
            )
    found.sort(key=lambda e: (_instant(e["time"]), e["id"] or "", e["topic"], e["offset"]))
    return found[:limit]


def _json(value: bytes | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except ValueError:
        return _text(value)


def _instant(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
