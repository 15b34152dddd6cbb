"""Where the allocator keeps its reservations: written through at once, or buffered for a batch.

`SqlReservations` runs a statement per call. The consumer's careful path uses it: there each
record runs under its own savepoint, so nothing may be kept in memory across records.

`BatchLedger` is the fast path. At the start of a consumer batch it reads, in one query, every
reservation the batch can touch: those on the days of the starts asked for, the bookings the
batch names, and the holds that run out before the batch's last request. It then decides in
memory and writes the net result in a few statements just before the commit. The exclusion
constraint stays the backstop. If the flush finds that another writer got there first (a
rebalance), it raises `RetryCarefully`, and the consumer replays the batch one record at a time
through `SqlReservations`.

A reservation never crosses local midnight: it lies inside its desk's hours of one day. So the
ledger loads whole local days, and a decision about a time needs only that day's rows.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

import asyncpg

from loket_calendar.adapters import store
from loket_calendar.domain.schedule import Booked, Interval, local, local_day
from loket_runtime.consumer import RetryCarefully


@dataclass(frozen=True)
class Reservation:
    booking_id: str
    location_id: str
    desk_id: str
    product_id: str
    start: datetime
    end: datetime
    status: str  # "held" (waits for the resident's confirmation) or "confirmed"
    hold_expires_at: datetime | None
    language: str

    @classmethod
    def of_row(cls, row: asyncpg.Record) -> Reservation:
        return cls(
            row["booking_id"],
            row["location_id"],
            row["desk_id"],
            row["product_id"],
            row["start_at"],
            row["end_at"],
            row["status"],
            row["hold_expires_at"],
            row["language"],
        )


class ReservationBook(Protocol):
    """What the allocator reads and writes, whichever way it is stored."""

    async def record_decision(self, key: str) -> bool:
        """False when `key` was decided before (a redelivered request)."""

    async def expire_and_take(
        self, location_id: str, start: datetime, end: datetime, now: datetime, ignore_booking: str | None = None
    ) -> tuple[list[Reservation], list[Booked]]:
        """Remove the location's holds that ran out by `now` (returned, oldest first), then list
        what stays taken around [start, end): reservations and still-held-back freed slots."""

    async def expire_due(self, location_id: str, now: datetime) -> list[Reservation]: ...

    async def insert(self, reservation: Reservation) -> bool:
        """False when the desk-time turned out to be taken after all (another allocator)."""

    async def move(self, booking_id: str, desk_id: str, start: datetime, end: datetime) -> bool: ...

    async def delete(self, booking_id: str) -> Reservation | None: ...

    async def confirm(self, booking_id: str) -> None: ...

    async def get(self, booking_id: str) -> Reservation | None: ...

    async def hold_back(
        self, desk_id: str, location_id: str, start: datetime, end: datetime, available_from: datetime
    ) -> None: ...

    async def settle(self) -> None:
        """Make every change so far visible to SQL reads on this connection."""

    def known_full(self, location_id: str, product_id: str, start: datetime, generation: int) -> bool:
        """True when `note_full` was told so about this start (with the catalogue at `generation`)
        and nothing at the location was freed since: placing only takes desk-times away."""

    def note_full(self, location_id: str, product_id: str, start: datetime, generation: int) -> None:
        """No desk is free for the product at `start` (with the catalogue at `generation`)."""


class SqlReservations:
    """A statement per call, on the batch's connection (inside its transaction)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def record_decision(self, key: str) -> bool:
        return await store.record_decision(self.conn, key, "decided")

    async def expire_and_take(
        self, location_id: str, start: datetime, end: datetime, now: datetime, ignore_booking: str | None = None
    ) -> tuple[list[Reservation], list[Booked]]:
        expired, taken = await store.expire_and_take(self.conn, location_id, start, end, now, ignore_booking)
        return [Reservation.of_row(r) for r in expired], taken

    async def expire_due(self, location_id: str, now: datetime) -> list[Reservation]:
        return [Reservation.of_row(r) for r in await store.take_expired_holds(self.conn, now, location_id)]

    async def insert(self, reservation: Reservation) -> bool:
        return await store.insert_reservation(self.conn, *_row(reservation))

    async def move(self, booking_id: str, desk_id: str, start: datetime, end: datetime) -> bool:
        try:
            async with self.conn.transaction():  # a savepoint: a refused move undoes only itself
                await store.move_reservation(self.conn, booking_id, desk_id, start, end)
            return True
        except asyncpg.ExclusionViolationError:
            return False

    async def delete(self, booking_id: str) -> Reservation | None:
        row = await store.delete_reservation(self.conn, booking_id)
        return Reservation.of_row(row) if row else None

    async def confirm(self, booking_id: str) -> None:
        await store.confirm_hold(self.conn, booking_id)

    async def get(self, booking_id: str) -> Reservation | None:
        row = await store.reservation(self.conn, booking_id)
        return Reservation.of_row(row) if row else None

    async def hold_back(
        self, desk_id: str, location_id: str, start: datetime, end: datetime, available_from: datetime
    ) -> None:
        await store.hold_back(self.conn, desk_id, location_id, start, end, available_from)

    async def settle(self) -> None:
        pass

    def known_full(self, location_id: str, product_id: str, start: datetime, generation: int) -> bool:
        return False  # each record under its own savepoint: nothing is kept across records

    def note_full(self, location_id: str, product_id: str, start: datetime, generation: int) -> None:
        pass


@dataclass
class BatchDemand:
    """What a batch of events will ask the ledger, known before the first decision."""

    decision_keys: set[str] = field(default_factory=set)
    booking_ids: set[str] = field(default_factory=set)
    locations: set[str] = field(default_factory=set)  # every location the batch changes
    days: set[tuple[str, date]] = field(default_factory=set)  # (location, local day)
    latest_now: dict[str, datetime] = field(default_factory=dict)  # per location: the last request time
    earliest_now: datetime | None = None

    def span(self, location_id: str, start: datetime, end: datetime, now: datetime) -> None:
        """A decision about [start, end) at `location_id`, made as of `now`."""
        self.locations.add(location_id)
        for day in days_of(start, end):
            self.days.add((location_id, day))
        if location_id not in self.latest_now or now > self.latest_now[location_id]:
            self.latest_now[location_id] = now
        if self.earliest_now is None or now < self.earliest_now:
            self.earliest_now = now


def days_of(start: datetime, end: datetime) -> list[date]:
    first, last = local_day(start), local_day(max(start, end - timedelta(microseconds=1)))
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _in_utc(r: Reservation) -> Reservation:
    """The instants in UTC, as the table gives them back: events built from memory or from the
    table then read the same. (Rows read from the table are in UTC already.)"""
    expires = r.hold_expires_at.astimezone(UTC) if r.hold_expires_at else None
    return replace(r, start=r.start.astimezone(UTC), end=r.end.astimezone(UTC), hold_expires_at=expires)


def _hour(instant: datetime) -> int:
    return int(instant.timestamp()) // 3600


def _columns(rows: Iterable[tuple[object, ...]]) -> list[list[object]]:
    """Rows to one list per column, for `unnest`."""
    return [list(column) for column in zip(*rows, strict=True)]


def _row(r: Reservation) -> tuple[object, ...]:
    """The fields in their order (`dataclasses.astuple` would deep-copy each one)."""
    return (
        r.booking_id,
        r.location_id,
        r.desk_id,
        r.product_id,
        r.start,
        r.end,
        r.status,
        r.hold_expires_at,
        r.language,
    )


_COLUMNS = (
    "booking_id, location_id, desk_id, product_id, lower(during) AS start_at, upper(during) AS end_at,"
    " status, hold_expires_at, language"
)


class BatchLedger:
    """The reservations a batch touches, in memory, written back once per batch (see the module)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._rows: dict[str, Reservation] = {}
        # By the hour (UTC) a reservation starts in: a decision looks at a few hours' rows only.
        self._by_hour: dict[tuple[str, int], set[str]] = defaultdict(set)
        self._longest = 0  # seconds: the longest reservation held, how far back an overlap can start
        self._loaded_days: set[tuple[str, date]] = set()
        self._absent: set[str] = set()  # known not to be reserved (never were, or deleted and flushed)
        self._in_db: set[str] = set()  # rows as they stand in the table
        self._dirty: set[str] = set()  # rows whose memory differs from the table
        self._deleted: set[str] = set()  # rows deleted in memory, still in the table
        self._holds: dict[str, list[tuple[datetime, str]]] = defaultdict(list)  # heap per location
        self._held_back: dict[tuple[str, datetime, datetime], tuple[str, datetime]] = {}
        self._held_back_pending: set[tuple[str, datetime, datetime]] = set()
        self._decided: set[str] = set()
        self._asked: set[str] = set()  # decision keys looked up
        self._new_decisions: list[str] = []
        # A storm asks for the same full start thousands of times: each start found full is kept
        # with how often its location had something freed then (deletes, moves, expiries).
        self._freed: dict[str, int] = defaultdict(int)
        self._full: dict[tuple[str, str, datetime, int], int] = {}

    # --- loading ---------------------------------------------------------------------------

    async def load(self, demand: BatchDemand) -> None:
        keys = sorted(demand.decision_keys)
        if keys:
            rows = await self.conn.fetch("SELECT booking_id FROM decisions WHERE booking_id = ANY($1::text[])", keys)
            self._decided.update(r["booking_id"] for r in rows)
            self._asked.update(keys)
        due_locations = sorted(demand.latest_now)
        due_by = max(demand.latest_now.values()) if demand.latest_now else None
        days = sorted(demand.days)
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM reservations r"
            " JOIN unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS d(loc, lo, hi)"
            "  ON r.location_id = d.loc AND r.during && tstzrange(d.lo, d.hi)"
            f" UNION SELECT {_COLUMNS} FROM reservations WHERE booking_id = ANY($4::text[])"
            f" UNION SELECT {_COLUMNS} FROM reservations"
            "  WHERE status = 'held' AND hold_expires_at <= $5 AND location_id = ANY($6::text[])",
            [loc for loc, _ in days],
            [local(day, "00:00") for _, day in days],
            [local(day + timedelta(days=1), "00:00") for _, day in days],
            sorted(demand.booking_ids),
            due_by,
            due_locations,
        )
        self._loaded_days.update(days)
        self._absorb(rows)
        self._absent.update(b for b in demand.booking_ids if b not in self._rows)
        if due_locations and demand.earliest_now is not None:
            # Freed desk-times still kept back at the batch's earliest request matter; older ones do not.
            for r in await self.conn.fetch(
                "SELECT desk_id, location_id, lower(during) AS s, upper(during) AS e, available_from FROM held_back"
                " WHERE location_id = ANY($1::text[]) AND available_from > $2",
                due_locations,
                demand.earliest_now,
            ):
                self._held_back[(r["desk_id"], r["s"], r["e"])] = (r["location_id"], r["available_from"])

    def _absorb(self, rows: Iterable[asyncpg.Record]) -> None:
        for row in rows:
            booking_id = row["booking_id"]
            if booking_id in self._rows or booking_id in self._deleted or booking_id in self._absent:
                continue  # memory knows better
            self._in_db.add(booking_id)
            self._put(Reservation.of_row(row))

    async def _load_day(self, location_id: str, day: date) -> None:
        rows = await self.conn.fetch(
            f"SELECT {_COLUMNS} FROM reservations WHERE location_id = $1 AND during && tstzrange($2, $3)",
            location_id,
            local(day, "00:00"),
            local(day + timedelta(days=1), "00:00"),
        )
        self._loaded_days.add((location_id, day))
        self._absorb(rows)

    # --- memory ----------------------------------------------------------------------------

    def _put(self, r: Reservation) -> None:
        """Keep `r`, whose instants are in UTC (see `_in_utc`)."""
        self._rows[r.booking_id] = r
        self._by_hour[(r.location_id, _hour(r.start))].add(r.booking_id)
        self._longest = max(self._longest, int((r.end - r.start).total_seconds()) + 1)
        if r.status == "held" and r.hold_expires_at is not None:
            heapq.heappush(self._holds[r.location_id], (r.hold_expires_at, r.booking_id))

    def _drop(self, booking_id: str) -> Reservation:
        r = self._rows.pop(booking_id)
        self._freed[r.location_id] += 1
        self._by_hour[(r.location_id, _hour(r.start))].discard(booking_id)
        self._dirty.discard(booking_id)
        if booking_id in self._in_db:
            self._deleted.add(booking_id)
        else:
            self._absent.add(booking_id)
        return r

    # --- the book --------------------------------------------------------------------------

    async def record_decision(self, key: str) -> bool:
        if key not in self._asked:
            self._asked.add(key)
            if await self.conn.fetchval("SELECT 1 FROM decisions WHERE booking_id = $1", key):
                self._decided.add(key)
        if key in self._decided:
            return False
        self._decided.add(key)
        self._new_decisions.append(key)
        return True

    async def expire_due(self, location_id: str, now: datetime) -> list[Reservation]:
        heap = self._holds[location_id]
        expired = []
        while heap and heap[0][0] <= now:
            expires_at, booking_id = heapq.heappop(heap)
            r = self._rows.get(booking_id)
            if r is not None and r.status == "held" and r.hold_expires_at == expires_at:
                expired.append(self._drop(booking_id))
        return expired

    async def expire_and_take(
        self, location_id: str, start: datetime, end: datetime, now: datetime, ignore_booking: str | None = None
    ) -> tuple[list[Reservation], list[Booked]]:
        expired = await self.expire_due(location_id, now)
        wanted = Interval(start, end)
        taken = []
        for day in days_of(start, end):
            if (location_id, day) not in self._loaded_days:
                await self._load_day(location_id, day)
        # Whatever overlaps [start, end) starts after start - longest, on a loaded day.
        for hour in range(_hour(start - timedelta(seconds=self._longest)), _hour(end) + 1):
            for booking_id in self._by_hour.get((location_id, hour), ()):
                r = self._rows[booking_id]
                if booking_id != ignore_booking and r.start < end and start < r.end:
                    taken.append(Booked(r.desk_id, Interval(r.start, r.end)))
        for (desk_id, s, e), (loc, available_from) in self._held_back.items():
            if loc == location_id and available_from > now and Interval(s, e).overlaps(wanted):
                taken.append(Booked(desk_id, Interval(s, e)))
        return expired, taken

    async def insert(self, reservation: Reservation) -> bool:
        if await self.get(reservation.booking_id) is not None:
            return False  # as the table's primary key would answer
        self._absent.discard(reservation.booking_id)
        self._put(_in_utc(reservation))
        self._dirty.add(reservation.booking_id)
        return True

    async def move(self, booking_id: str, desk_id: str, start: datetime, end: datetime) -> bool:
        current = await self.get(booking_id)
        if current is None:
            return False
        self._by_hour[(current.location_id, _hour(current.start))].discard(booking_id)
        self._freed[current.location_id] += 1
        self._put(_in_utc(replace(current, desk_id=desk_id, start=start, end=end)))
        self._dirty.add(booking_id)
        return True

    async def delete(self, booking_id: str) -> Reservation | None:
        if await self.get(booking_id) is None:
            return None
        return self._drop(booking_id)

    async def confirm(self, booking_id: str) -> None:
        current = await self.get(booking_id)
        if current is not None and current.status == "held":
            self._rows[booking_id] = replace(current, status="confirmed", hold_expires_at=None)
            self._dirty.add(booking_id)

    async def get(self, booking_id: str) -> Reservation | None:
        if booking_id in self._rows:
            return self._rows[booking_id]
        if booking_id in self._deleted or booking_id in self._absent:
            return None
        row = await self.conn.fetchrow(f"SELECT {_COLUMNS} FROM reservations WHERE booking_id = $1", booking_id)
        if row is None:
            self._absent.add(booking_id)
            return None
        self._absorb([row])
        return self._rows[booking_id]

    async def hold_back(
        self, desk_id: str, location_id: str, start: datetime, end: datetime, available_from: datetime
    ) -> None:
        key = (desk_id, start.astimezone(UTC), end.astimezone(UTC))
        self._held_back[key] = (location_id, available_from.astimezone(UTC))
        self._held_back_pending.add(key)

    def known_full(self, location_id: str, product_id: str, start: datetime, generation: int) -> bool:
        return self._full.get((location_id, product_id, start, generation)) == self._freed[location_id]

    def note_full(self, location_id: str, product_id: str, start: datetime, generation: int) -> None:
        # A held-back desk-time comes back as time passes, not by a change: no shortcut there.
        if all(loc != location_id for loc, _ in self._held_back.values()):
            self._full[(location_id, product_id, start, generation)] = self._freed[location_id]

    # --- writing back ----------------------------------------------------------------------

    async def settle(self) -> None:
        await self._write_reservations()

    async def flush(self) -> None:
        """Write everything the batch changed, before its commit."""
        await self._write_reservations()
        if self._new_decisions:
            recorded = await self.conn.fetch(
                "INSERT INTO decisions (booking_id, outcome) SELECT k, 'decided' FROM unnest($1::text[]) AS k"
                " ON CONFLICT DO NOTHING RETURNING booking_id",
                self._new_decisions,
            )
            if len(recorded) != len(self._new_decisions):
                raise RetryCarefully("another allocator decided some of these requests")
            self._new_decisions = []

    async def _write_reservations(self) -> None:
        """The net changes of reservations and hold-backs: deletes first, then the rows as they
        stand now, so rows of this batch never meet their own old versions in the constraint."""
        gone = sorted((self._deleted | self._dirty) & self._in_db)
        if gone:
            deleted = await self.conn.fetch(
                "DELETE FROM reservations WHERE booking_id = ANY($1::text[]) RETURNING booking_id", gone
            )
            if len(deleted) != len(gone):
                raise RetryCarefully(f"{len(gone) - len(deleted)} reservations were changed by another writer")
            self._in_db.difference_update(gone)
        self._absent.update(self._deleted)
        self._deleted.clear()
        fresh = [self._rows[b] for b in sorted(self._dirty)]
        if fresh:
            inserted = await self.conn.fetch(
                "INSERT INTO reservations (booking_id, location_id, desk_id, product_id, during, status,"
                " hold_expires_at, language)"
                " SELECT b, l, d, p, tstzrange(s, e), st, h, lang FROM unnest($1::text[], $2::text[], $3::text[],"
                "  $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[], $8::timestamptz[], $9::text[])"
                "  AS t(b, l, d, p, s, e, st, h, lang)"
                " ON CONFLICT DO NOTHING RETURNING booking_id",
                *_columns(_row(r) for r in fresh),
            )
            if len(inserted) != len(fresh):
                raise RetryCarefully(f"{len(fresh) - len(inserted)} desk-times were taken by another writer")
            self._in_db.update(r.booking_id for r in fresh)
            self._dirty.clear()
        if self._held_back_pending:
            keys = sorted(self._held_back_pending)
            await self.conn.execute(
                "INSERT INTO held_back (desk_id, location_id, during, available_from)"
                " SELECT d, l, tstzrange(s, e), a FROM unnest($1::text[], $2::text[], $3::timestamptz[],"
                "  $4::timestamptz[], $5::timestamptz[]) AS t(d, l, s, e, a)"
                " ON CONFLICT (desk_id, during) DO UPDATE SET available_from = EXCLUDED.available_from",
                [k[0] for k in keys],
                [self._held_back[k][0] for k in keys],
                [k[1] for k in keys],
                [k[2] for k in keys],
                [self._held_back[k][1] for k in keys],
            )
            self._held_back_pending.clear()


__all__ = ["BatchDemand", "BatchLedger", "Reservation", "ReservationBook", "SqlReservations"]
