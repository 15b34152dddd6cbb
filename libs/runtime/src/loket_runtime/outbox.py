"""Transactional outbox and its relay to Kafka.

`Outbox.add` writes the record in the caller's transaction and wakes the relay with
pg_notify (delivered on commit). The relay publishes rows in id order with an idempotent
producer (so order per key holds), waits for every acknowledgement, then deletes the rows. A
crash between publish and delete re-publishes on restart: duplicates are possible, loss and
reordering are not; consumers skip duplicates by event id.

Only one relay per database publishes at a time (a PostgreSQL advisory lock), so several
instances of a service can run side by side without reordering.

Nothing the relay cannot publish holds up the records behind it. A record that is too large, that
the broker refuses for good (size, policy, authorisation, invalid record), or whose topic the
cluster does not have (after a grace period, during which only that topic's records wait) is
*parked*: moved to `outbox_parked` with the reason, counted in `loket_outbox_parked_total`, and
announced on the dead-letter topic by a small notice (so operations see it with the other dead
letters); the relay goes on with the next record.

Sizes are bounded where records are made: an event's JSON above `MAX_EVENT_BYTES` is refused
before it is stored or queued (`PayloadTooLarge`), and a dead-letter copy is cut to fit
(`bounded_copy`), the whole original staying in the database it came from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka import errors as kafka_errors
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from prometheus_client import Counter

from loket_contracts.envelope import Envelope
from loket_contracts.topics import DEAD_LETTERS
from loket_runtime.db import connect
from loket_runtime.logging import get_logger

NOTIFY_CHANNEL = "loket_outbox"
RELAY_LOCK = 7_400_002

KIB = 1024
# The largest event (its JSON body) a service may store or queue. Far above any event of ours
# (about 1 KiB), and far below Kafka's 1 MiB record limit, so a dead-letter copy of any event
# we make still fits whole.
MAX_EVENT_BYTES = 256 * KIB
# A dead-letter copy keeps the original body whole up to this, else only its first bytes.
DEAD_LETTER_VALUE_BYTES = MAX_EVENT_BYTES
DEAD_LETTER_PREFIX_BYTES = 16 * KIB
HEADER_VALUE_BYTES = 4 * KIB
HEADER_NAME_CHARS = 256
MAX_HEADERS = 64
# Below the producer's max_request_size and the broker's message.max.bytes (both about 1 MiB).
MAX_RECORD_BYTES = 1_000_000

PARKED = Counter(
    "loket_outbox_parked_total", "Outbox records the relay could not publish and parked", ["topic", "reason"]
)
PUBLISHED = Counter("loket_outbox_published_total", "Outbox records published to Kafka", ["topic"])

log = get_logger(__name__)


OutboxRow = tuple[str, str, list[list[str]], bytes]

INSERT_OUTBOX = "INSERT INTO outbox (topic, key, headers, value) VALUES ($1, $2, $3, $4)"


class PayloadTooLarge(ValueError):
    """An event or record larger than the bound where it enters (HTTP answers 413)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, more than the {limit} allowed")
        self.what = what
        self.size = size
        self.limit = limit


def check_event_size(event_type: str, value: bytes, limit: int = MAX_EVENT_BYTES) -> None:
    if len(value) > limit:
        raise PayloadTooLarge(f"event {event_type!r}", len(value), limit)


def pg_text(raw: bytes | str | None) -> str:
    """Text PostgreSQL can store: invalid UTF-8 and NUL (which text and jsonb refuse) replaced."""
    if raw is None:
        return ""
    text = raw if isinstance(raw, str) else raw.decode(errors="replace")
    return text.replace("\x00", "\ufffd")


def bounded_copy(
    headers: Sequence[tuple[str, bytes]], value: bytes, limit: int = DEAD_LETTER_VALUE_BYTES
) -> tuple[list[tuple[str, bytes]], bytes, int | None]:
    """A copy of a record that always fits in a Kafka record: at most `MAX_HEADERS` headers, each
    name and value cut to a bound, and the body whole up to `limit`, else its first bytes.
    Returns the headers, the body, and the original body's size when it was cut (else None)."""
    kept = [(str(name)[:HEADER_NAME_CHARS], bytes(raw or b"")[:HEADER_VALUE_BYTES]) for name, raw in headers]
    kept = kept[:MAX_HEADERS]
    if len(value) <= limit:
        return kept, value, None
    return kept, value[:DEAD_LETTER_PREFIX_BYTES], len(value)


def record_size(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes]]) -> int:
    """The record's size as the producer measures it against its limit."""
    size: int = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, list(headers))
    return size


class Outbox:
    """Writes records in the caller's transaction; the table's trigger wakes the relay on commit."""

    async def add(self, conn: asyncpg.Connection, topic: str, key: str, envelopes: Iterable[Envelope]) -> None:
        rows = []
        for env in envelopes:
            value = env.kafka_value()
            check_event_size(env.type, value)
            rows.append(_row(topic, key, env.kafka_headers(), value))
        if rows:
            await self.write(conn, rows)

    async def add_raw(
        self, conn: asyncpg.Connection, topic: str, key: str, headers: list[tuple[str, bytes]], value: bytes
    ) -> None:
        await self.write(conn, [_row(topic, key, headers, value)])

    async def write(self, conn: asyncpg.Connection, rows: list[OutboxRow]) -> None:
        await conn.executemany(INSERT_OUTBOX, rows)


class BufferedOutbox(Outbox):
    """Collects a whole consumer batch's records and writes them in one statement before the
    batch commits (`flush`): one round trip per batch instead of one per event. Order is kept."""

    def __init__(self) -> None:
        self.rows: list[OutboxRow] = []

    async def write(self, conn: asyncpg.Connection, rows: list[OutboxRow]) -> None:
        self.rows.extend(rows)

    async def flush(self, conn: asyncpg.Connection) -> None:
        """One statement for every row (ids in the rows' order): PostgreSQL plans, runs and
        fires the relay's trigger once, where `executemany` would do all three per row."""
        if self.rows:
            topics, keys, headers, values = zip(*self.rows, strict=True)
            await conn.execute(
                "INSERT INTO outbox (topic, key, headers, value) SELECT t, k, h::jsonb, v"
                " FROM unnest($1::text[], $2::text[], $3::text[], $4::bytea[]) WITH ORDINALITY AS r(t, k, h, v, n)"
                " ORDER BY n",
                topics,
                keys,
                [json.dumps(h) for h in headers],
                values,
            )
            self.rows.clear()


def _row(topic: str, key: str, headers: list[tuple[str, bytes]], value: bytes) -> OutboxRow:
    return (topic, pg_text(key), [[pg_text(name), pg_text(raw)] for name, raw in headers], value)


# --- what the relay makes of a failed send ---------------------------------------------------------

# The broker or the client refuses this record, and would refuse it again: park it.
REFUSED_FOR_GOOD: tuple[type[BaseException], ...] = (
    kafka_errors.MessageSizeTooLargeError,
    kafka_errors.RecordTooLargeError,
    kafka_errors.RecordListTooLargeError,
    kafka_errors.InvalidTopicError,
    kafka_errors.TopicAuthorizationFailedError,
    kafka_errors.PolicyViolationError,
    kafka_errors.InvalidTimestampError,
    kafka_errors.UnsupportedForMessageFormatError,
    kafka_errors.InvalidRequestError,
    kafka_errors.CorruptRecordException,
    # what the client's serialisation refuses (a header of the wrong type, say)
    TypeError,
    ValueError,
    AssertionError,
)
# The producer itself is in a bad state (sequence numbers out of step after a refused batch,
# closed): not the record's fault. A new producer is made and the record sent again.
PRODUCER_BROKEN: tuple[type[BaseException], ...] = (
    kafka_errors.OutOfOrderSequenceNumber,
    kafka_errors.InvalidProducerEpoch,
    kafka_errors.InvalidProducerIdMapping,
    kafka_errors.ProducerFenced,
    kafka_errors.ProducerClosed,
    kafka_errors.IllegalOperation,
    kafka_errors.IllegalStateError,
)


def refused_for_good(exc: BaseException) -> bool:
    return isinstance(exc, REFUSED_FOR_GOOD) and not isinstance(exc, PRODUCER_BROKEN)


def reason_of(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:2000]


class RelayStalled(Exception):
    """Records could not be published for a reason that is not theirs (the cluster, the producer):
    the relay backs off and tries again; the rows stay in the outbox."""


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer: AIOKafkaProducer,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
        *,
        name: str = "outbox",
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        max_record_bytes: int = MAX_RECORD_BYTES,
        missing_topic_grace_seconds: float = 60.0,
        ack_timeout_seconds: float = 120.0,
    ) -> None:
        self._dsn = dsn
        self.producer = producer
        self._producer_factory = producer_factory
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self.name = name
        self.max_record_bytes = max_record_bytes
        self.missing_topic_grace_seconds = missing_topic_grace_seconds
        self.ack_timeout_seconds = ack_timeout_seconds
        self._wakeup = asyncio.Event()
        self._missing_since: dict[str, float] = {}  # topics the cluster does not have, since when
        self._producer_broken = False
        self.published = 0
        self.parked = 0

    async def run(self) -> None:
        """Publish forever; reconnects after database errors."""
        while True:
            try:
                await self._run_once_connected()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("outbox relay error, retrying", error=str(exc))
                await asyncio.sleep(1.0)

    async def _run_once_connected(self) -> None:
        conn = await connect(self._dsn)
        try:
            await conn.execute("SELECT pg_advisory_lock($1)", RELAY_LOCK)  # waits while another relay leads
            await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wakeup.set())
            backoff = 0.2
            while True:
                # Clear before reading: a notification that arrives while a batch is being
                # published must wake the next round, not be lost until the next poll.
                self._wakeup.clear()
                try:
                    sent = await self.publish_batch(conn)
                except (RelayStalled, kafka_errors.KafkaError) as exc:
                    # The cluster or the producer, not a record: keep the lock, wait, try again.
                    log.warning("outbox relay waits", relay=self.name, error=reason_of(exc))
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.2
                if sent < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        """Publish the next rows in id order; park what cannot be published; return how many rows
        were dealt with (published or parked). Raises `RelayStalled` (after keeping what was done)
        when the rest must wait for the cluster or a new producer."""
        await self._renew_producer_if_broken()
        waiting = await self._topics_still_missing()
        rows = await conn.fetch(
            "SELECT id, topic, key, headers, value FROM outbox WHERE topic <> ALL($2::text[]) ORDER BY id LIMIT $1",
            self._batch_size,
            waiting,
        )
        if not rows:
            return 0
        missing = await self._missing_topics({row["topic"] for row in rows})
        now = time.monotonic()
        to_send: list[asyncpg.Record] = []
        to_park: list[tuple[asyncpg.Record, str, str]] = []
        for row in rows:
            if row["topic"] in missing:
                since = self._missing_since.setdefault(row["topic"], now)
                if now - since >= self.missing_topic_grace_seconds:
                    to_park.append((row, "unknown-topic", f"the cluster has no topic {row['topic']!r}"))
                continue  # waits, with the other records of its topic, until the topic exists
            size = record_size(row["key"].encode(), row["value"], _headers(row))
            if size > self.max_record_bytes:
                to_park.append((row, "too-large", f"record of {size} bytes, more than the {self.max_record_bytes}"))
                continue
            to_send.append(row)
        published, refused, stalled = await self._send(to_send)
        to_park += [(row, "refused", reason) for row, reason in refused]
        async with conn.transaction():
            if published:
                await self.mark_published(conn, [row["id"] for row in published])
            if to_park:
                await self.park(conn, to_park)
        self.published += len(published)
        per_topic: dict[str, int] = {}
        for row in published:
            per_topic[row["topic"]] = per_topic.get(row["topic"], 0) + 1
        for topic, count in per_topic.items():
            PUBLISHED.labels(topic).inc(count)
        if stalled is not None:
            raise RelayStalled(f"publishing stopped at a transient error: {reason_of(stalled)}") from stalled
        return len(rows)  # published, parked, or set aside with a topic the cluster lacks

    async def mark_published(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)

    # --- sending ---------------------------------------------------------------------------------

    async def _send(
        self, rows: list[asyncpg.Record]
    ) -> tuple[list[asyncpg.Record], list[tuple[asyncpg.Record, str]], BaseException | None]:
        """Send rows in order. Returns the rows acknowledged and the rows refused for good, both of
        them only up to the first row that must wait (the others stay for the next round), and the
        error that made it wait, if any."""
        futures: list[tuple[asyncpg.Record, asyncio.Future[Any]]] = []
        refused_now: dict[int, str] = {}
        sent_upto = len(rows)  # rows from here on were not handed to the producer
        stalled: BaseException | None = None
        for i, row in enumerate(rows):
            try:
                future = await self._send_one(row)
            except Exception as exc:
                if refused_for_good(exc):
                    refused_now[row["id"]] = reason_of(exc)
                    continue
                self._producer_broken = isinstance(exc, PRODUCER_BROKEN) or self._producer_broken
                sent_upto, stalled = i, exc
                break
            futures.append((row, future))
        try:
            results = await asyncio.wait_for(
                asyncio.gather(*(f for _, f in futures), return_exceptions=True), self.ack_timeout_seconds
            )
        except TimeoutError as exc:
            # Acknowledgements that never come: start again with a new producer (duplicates, no loss).
            self._producer_broken = True
            return [], [], exc
        outcome: dict[int, BaseException | None] = {
            row["id"]: result if isinstance(result, BaseException) else None
            for (row, _), result in zip(futures, results, strict=True)
        }
        # A batch the broker refused may have taken innocent records with it (they shared a produce
        # batch, or their sequence numbers followed it): each is tried again alone, with a new
        # producer, and only what the broker refuses alone is parked.
        suspects = [row for row, _ in futures if isinstance(outcome[row["id"]], BaseException)]
        if suspects:
            self._producer_broken = True
            for row in suspects:
                error = outcome[row["id"]]
                assert error is not None
                if not (refused_for_good(error) or isinstance(error, PRODUCER_BROKEN)):
                    break  # not the record's fault: it and what follows wait for the next round
                await self._renew_producer_if_broken()
                try:
                    await asyncio.wait_for(await self._send_one(row), self.ack_timeout_seconds)
                    outcome[row["id"]] = None
                except Exception as alone:
                    if not refused_for_good(alone):
                        self._producer_broken = True
                        break
                    refused_now[row["id"]] = reason_of(alone)
                    outcome[row["id"]] = alone
                    self._producer_broken = True  # its sequence numbers are out of step again
        published: list[asyncpg.Record] = []
        refused: list[tuple[asyncpg.Record, str]] = []
        for row in rows[:sent_upto]:
            if row["id"] in refused_now:
                refused.append((row, refused_now[row["id"]]))
            elif row["id"] in outcome and outcome[row["id"]] is None:
                published.append(row)
            else:
                error = outcome.get(row["id"])
                stalled = stalled or error
                break  # this row waits, and every row after it
        return published, refused, stalled

    async def _send_one(self, row: asyncpg.Record) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await self.producer.send(
            row["topic"], value=row["value"], key=row["key"].encode(), headers=_headers(row)
        )
        return future

    async def _renew_producer_if_broken(self) -> None:
        if not self._producer_broken or self._producer_factory is None:
            return
        old = self.producer
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 10)
        fresh = self._producer_factory()
        await fresh.start()
        self.producer = fresh
        self._producer_broken = False
        log.info("outbox relay: new producer", relay=self.name)

    # --- topics the cluster does not have -------------------------------------------------------

    async def _missing_topics(self, topics: set[str]) -> set[str]:
        """The topics of `topics` the cluster does not have. Raises while the cluster cannot be asked."""
        cluster = self.producer.client.cluster
        unsure = {t for t in topics if not cluster.partitions_for_topic(t)}
        if not unsure:
            return set()
        metadata = await self.producer.client.fetch_all_metadata()
        missing = {t for t in unsure if not metadata.partitions_for_topic(t)}
        for topic in topics - missing:
            self._missing_since.pop(topic, None)
        return missing

    async def _topics_still_missing(self) -> list[str]:
        """Topics whose records wait (missing, within their grace); forgets topics that appeared."""
        if not self._missing_since:
            return []
        still = await self._missing_topics(set(self._missing_since))
        for topic in set(self._missing_since) - still:
            self._missing_since.pop(topic, None)
        now = time.monotonic()
        return sorted(t for t in still if now - self._missing_since[t] < self.missing_topic_grace_seconds)

    # --- parking ---------------------------------------------------------------------------------

    async def park(self, conn: asyncpg.Connection, parked: list[tuple[asyncpg.Record, str, str]]) -> None:
        """Move rows to `outbox_parked` with their reason and announce each on the dead-letter
        topic (a notice that always fits; not for a notice itself, so this ends)."""
        for row, kind, reason in parked:
            parked_id = await conn.fetchval(
                "WITH moved AS (DELETE FROM outbox WHERE id = $1 RETURNING *)"
                " INSERT INTO outbox_parked (outbox_id, topic, key, headers, value, queued_at, reason)"
                " SELECT id, topic, key, headers, value, created_at, $2 FROM moved RETURNING id",
                row["id"],
                f"{kind}: {reason}",
            )
            if parked_id is None:
                continue  # gone meanwhile (cannot happen under the relay's lock)
            self.parked += 1
            PARKED.labels(row["topic"], kind).inc()
            log.error(
                "outbox record parked",
                relay=self.name,
                topic=row["topic"],
                key=row["key"],
                reason=reason,
                parked_id=parked_id,
                bytes=len(row["value"]),
            )
            headers = _headers(row)
            if any(name == "dlq_parked" for name, _ in headers):
                continue
            copy_headers, copy_value, cut = bounded_copy(headers, row["value"])
            notice = [
                *copy_headers,
                ("dlq_group", self.name.encode()),
                ("dlq_key", row["key"].encode()),
                ("dlq_topic", row["topic"].encode()),
                ("dlq_error", f"parked by the outbox relay: {kind}: {reason}"[:2000].encode()),
                ("dlq_parked", str(parked_id).encode()),
                ("dlq_ref", f"{self.name}:outbox_parked/{parked_id}".encode()),
            ]
            if cut is not None:
                notice.append(("dlq_truncated", str(cut).encode()))
            await Outbox().add_raw(conn, DEAD_LETTERS.name, self.name, notice, copy_value)


def _headers(row: asyncpg.Record) -> list[tuple[str, bytes]]:
    return [(name, value.encode()) for name, value in row["headers"]]
