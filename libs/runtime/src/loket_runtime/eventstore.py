"""Event store in PostgreSQL: streams with optimistic concurrency and one global order.

`append` takes the version the caller last saw; if another writer got there first the unique
(stream_id, stream_version) constraint fires and the caller gets `ConcurrencyError` (its
transaction is then aborted: retry the whole unit of work). Call it
inside a transaction together with `Outbox.add` so an event is stored and queued for Kafka
atomically. An event whose JSON is larger than `outbox.MAX_EVENT_BYTES` is refused before it is
stored (`PayloadTooLarge`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from loket_contracts.envelope import Envelope
from loket_contracts.events import Event
from loket_contracts.upcasting import parse_event
from loket_runtime.outbox import check_event_size


class ConcurrencyError(Exception):
    """The stream moved on since the caller read it."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id!r} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


@dataclass(frozen=True)
class StoredEvent:
    global_position: int
    stream_id: str
    stream_version: int
    envelope: Envelope

    @property
    def event(self) -> Event:
        env = self.envelope
        return parse_event(env.type, env.schemaversion, env.data)


def _row_to_stored(row: asyncpg.Record) -> StoredEvent:
    meta: dict[str, Any] = row["metadata"]
    envelope = Envelope(
        id=str(row["event_id"]),
        type=row["event_type"],
        source=meta.get("source", ""),
        subject=meta.get("subject"),
        time=row["recorded_at"],
        schemaversion=row["schema_version"],
        correlationid=meta.get("correlationid"),
        causationid=meta.get("causationid"),
        traceparent=meta.get("traceparent"),
        data=row["data"],
    )
    return StoredEvent(row["global_position"], row["stream_id"], row["stream_version"], envelope)


class EventStore:
    async def append(
        self,
        conn: asyncpg.Connection,
        stream_id: str,
        expected_version: int,
        envelopes: Sequence[Envelope],
    ) -> int:
        """Append after `expected_version` (0 for a new stream); return the new version."""
        version = expected_version
        rows = []
        for env in envelopes:
            check_event_size(env.type, env.kafka_value())
            version += 1
            meta = {
                "source": env.source,
                "subject": env.subject,
                "correlationid": env.correlationid,
                "causationid": env.causationid,
                "traceparent": env.traceparent,
            }
            rows.append((stream_id, version, env.id, env.type, env.schemaversion, env.data, meta, env.time))
        # No savepoint: on a conflict the caller's transaction is aborted and the whole unit of
        # work is retried (commands reload the aggregate; consumers retry the batch).
        try:
            await conn.executemany(
                "INSERT INTO events (stream_id, stream_version, event_id, event_type, schema_version,"
                " data, metadata, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                rows,
            )
        except asyncpg.UniqueViolationError as exc:
            if exc.constraint_name == "events_stream_version":
                raise ConcurrencyError(stream_id, expected_version) from exc
            raise
        return version

    async def load(self, conn: asyncpg.Connection | asyncpg.Pool, stream_id: str) -> list[StoredEvent]:
        rows = await conn.fetch("SELECT * FROM events WHERE stream_id = $1 ORDER BY stream_version", stream_id)
        return [_row_to_stored(r) for r in rows]

    async def load_many(
        self, conn: asyncpg.Connection | asyncpg.Pool, stream_ids: Collection[str]
    ) -> dict[str, list[StoredEvent]]:
        """Several streams in one query: {stream id: its events in order} (no key for a stream without events)."""
        rows = await conn.fetch(
            "SELECT * FROM events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, stream_version",
            list(stream_ids),
        )
        streams: dict[str, list[StoredEvent]] = {}
        for row in rows:
            streams.setdefault(row["stream_id"], []).append(_row_to_stored(row))
        return streams

    async def read_all(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        after_position: int = 0,
        limit: int = 1000,
        until: datetime | None = None,
    ) -> list[StoredEvent]:
        """Events in global order after `after_position`, optionally recorded no later than `until`."""
        if until is None:
            rows = await conn.fetch(
                "SELECT * FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2",
                after_position,
                limit,
            )
        else:
            rows = await conn.fetch(
                "SELECT * FROM events WHERE global_position > $1 AND recorded_at <= $3"
                " ORDER BY global_position LIMIT $2",
                after_position,
                limit,
                until,
            )
        return [_row_to_stored(r) for r in rows]
