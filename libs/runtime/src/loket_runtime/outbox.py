"""Transactional outbox and its relay to Kafka.

`Outbox.add` writes the record in the caller's transaction and wakes the relay with
pg_notify (delivered on commit). The relay publishes rows in id order with an idempotent
producer (so order per key holds), waits for every acknowledgement, then deletes the rows. A
crash between publish and delete re-publishes on restart: duplicates are possible, loss and
reordering are not; consumers skip duplicates by event id.

Only one relay per database publishes at a time (a PostgreSQL advisory lock), so several
instances of a service can run side by side without reordering.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable

import asyncpg
from aiokafka import AIOKafkaProducer

from loket_contracts.envelope import Envelope
from loket_runtime.db import connect
from loket_runtime.logging import get_logger

NOTIFY_CHANNEL = "loket_outbox"
RELAY_LOCK = 7_400_002

log = get_logger(__name__)


OutboxRow = tuple[str, str, list[list[str]], bytes]

INSERT_OUTBOX = "INSERT INTO outbox (topic, key, headers, value) VALUES ($1, $2, $3, $4)"


class Outbox:
    """Writes records in the caller's transaction; the table's trigger wakes the relay on commit."""

    async def add(self, conn: asyncpg.Connection, topic: str, key: str, envelopes: Iterable[Envelope]) -> None:
        rows = [_row(topic, key, env.kafka_headers(), env.kafka_value()) for env in envelopes]
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
        if self.rows:
            await conn.executemany(INSERT_OUTBOX, self.rows)
            self.rows.clear()


def _row(topic: str, key: str, headers: list[tuple[str, bytes]], value: bytes) -> OutboxRow:
    return (topic, key, [[name, raw.decode(errors="replace")] for name, raw in headers], value)


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        producer: AIOKafkaProducer,
        batch_size: int = 500,
        poll_seconds: float = 1.0,
    ) -> None:
        self._dsn = dsn
        self._producer = producer
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._wakeup = asyncio.Event()
        self.published = 0

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
            while True:
                # Clear before reading: a notification that arrives while a batch is being
                # published must wake the next round, not be lost until the next poll.
                self._wakeup.clear()
                sent = await self.publish_batch(conn)
                if sent < self._batch_size:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), self._poll_seconds)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(conn.close())

    async def publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = await conn.fetch(
            "SELECT id, topic, key, headers, value FROM outbox ORDER BY id LIMIT $1", self._batch_size
        )
        if not rows:
            return 0
        futures = []
        for row in rows:
            headers = [(name, value.encode()) for name, value in row["headers"]]
            futures.append(
                await self._producer.send(row["topic"], value=row["value"], key=row["key"].encode(), headers=headers)
            )
        await asyncio.gather(*futures)
        await self.mark_published(conn, [row["id"] for row in rows])
        self.published += len(rows)
        return len(rows)

    async def mark_published(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
