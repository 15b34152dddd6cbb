"""Free start times per (location, product, day), computed once and reused.

A release storm and the public availability API ask the same questions thousands of times a
second: "what is free on this day at these locations?". The answer only changes when a
reservation at the location changes, so it is cached per (location, product, day) and dropped
when an allocator changes that location (`invalidate`, in this process or announced by NOTIFY),
at the first instant something it counted as taken frees itself (a hold runs out, a held-back
desk-time is offered again), or after `ttl` seconds at most (a safety net). The booking window
moves with the clock, so it is applied when an entry is read, never stored. A flood of the same
long query thus costs one computation, and then only the writing of kept bytes.

Whole answers (`answer`) are kept too, serialised and gzip-compressed once, with a validator
(ETag) taken from their bytes: the API then only writes bytes. An answer is served while every
location it covers keeps the version it was computed at (the allocator's `invalidate` moves it
on each decision), until the clock alone would change it (a start passes the booking window's
notice, a day enters the window, a hold runs out: `_lifetime`), and for `answer_ttl` seconds at
most (renewed in the background from half of it). Requests that miss together share one
computation, but only with a computation that started after the last change they depend on.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal, get_args

import asyncpg
import orjson

from loket_calendar.adapters import store
from loket_calendar.domain.schedule import BRUSSELS, CatalogueView, Interval, free_starts, local, local_day
from loket_runtime import clock


@dataclass(frozen=True)
class FreeStart:
    interval: Interval
    start_text: str  # ISO 8601 in Brussels time, formatted once
    end_text: str


@dataclass
class _Entry:
    version: tuple[int, int]  # (catalogue generation, location version) when computed
    computed_at: float
    starts: list[FreeStart]
    frees_at: datetime | None  # a hold runs out or a held-back desk-time comes back: stale from then


# (product, location or None for all, from, to, view) as in the query
AnswerKey = tuple[str, str | None, str, str, str]
# What an answer lists: every free start ("slots", the default), or per day how many ("days"): a
# few KB a browser can show at once, whose day then asks for its slots (from = to = that day).
View = Literal["slots", "days"]
VIEWS: tuple[str, ...] = get_args(View)


@dataclass(frozen=True)
class Answer:
    """One availability answer, ready to be written: plain JSON and gzip, and its validator."""

    key: AnswerKey
    locations: tuple[str, ...]
    versions: tuple[int, ...]  # read before the data: a change meanwhile makes it stale at once
    made_at: float  # time.monotonic() before the data was read
    stale_at: float  # time.monotonic() when it may differ without a change being announced (`_lifetime`)
    body: bytes
    gzip: bytes
    etag: str  # weak: the gzip and the plain answer are the same content


YIELD_EVERY = 24  # (location, day) computations between two turns of the event loop
REFRESH_AFTER = 0.5  # of answer_ttl: a kept answer is recomputed in the background from then on
GZIP_LEVEL = 6  # 911 KB -> 39 KB in ~6 ms (off the event loop)
GZIP_LEVEL_CHURN = 1  # -> 66 KB in ~1.5 ms, when the previous answer was replaced by a change before its TTL ran out


async def _slots(
    free: dict[tuple[str, date], list[FreeStart]], days: list[date], location: str | None, locations: list[str]
) -> list[dict[str, str]]:
    slots: list[dict[str, str]] = []
    for n, day in enumerate(days, 1):
        for loc in locations:
            for s in free[(loc, day)]:
                slots.append(
                    {"start": s.start_text, "end": s.end_text}
                    if location
                    else {"start": s.start_text, "end": s.end_text, "location": loc}
                )
        if n % 8 == 0:
            await asyncio.sleep(0)  # thousands of slots: let the requests already answered go out
    return slots  # serialised directly: thousands of slots need no second validation pass


def _pack(body: bytes, level: int) -> tuple[bytes, str]:
    """gzip and a validator of the plain bytes; zlib and hashlib release the GIL on large buffers."""
    packer = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip container, mtime 0 (the same bytes each time)
    packed = packer.compress(body) + packer.flush()
    return packed, f'W/"{hashlib.blake2b(body, digest_size=12).hexdigest()}"'


class AvailabilityCache:
    def __init__(self, view: CatalogueView, ttl_seconds: float = 2.0, answer_ttl_seconds: float | None = None) -> None:
        """`ttl_seconds` bounds how long free starts are kept, `answer_ttl_seconds` (by default the
        same) how long a whole answer is: both only as a safety net, see the module."""
        self.view = view
        self.ttl = ttl_seconds
        self.answer_ttl = ttl_seconds if answer_ttl_seconds is None else answer_ttl_seconds
        self._versions: dict[str, int] = defaultdict(int)
        self._entries: dict[tuple[str, str, date], _Entry] = {}
        # Whole answers: in a release storm thousands ask the very same question.
        self._answers: dict[AnswerKey, Answer] = {}
        self._building: dict[tuple[AnswerKey, tuple[int, ...]], asyncio.Future[Answer]] = {}
        self._sources: dict[AnswerKey, tuple[asyncpg.Connection | asyncpg.Pool, date, date]] = {}
        self.hits = 0
        self.misses = 0
        self.answers_built = 0

    def fresh_answer(self, key: AnswerKey) -> Answer | None:
        """The kept answer to this query if nothing it depends on changed and it is not too old.

        Past half its TTL a fresh answer is still served, and a new one is computed meanwhile (once):
        with steady traffic nobody waits for the TTL's recomputation, and none is served older."""
        found = self._answers.get(key)
        if found is None or found.versions != self.versions(found.locations):
            return None
        at = time.monotonic()
        if at >= found.stale_at:
            return None
        age = at - found.made_at
        if age > self.answer_ttl * REFRESH_AFTER and (key, found.versions) not in self._building:
            source = self._sources.get(key)
            if source is not None:
                conn, first, last = source
                self._start_build(conn, key, list(found.locations), found.versions, first, last)
        return found

    async def answer(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        product_id: str,
        location: str | None,
        locations: list[str],
        first: date,
        last: date,
        now: datetime,
        view: str = "slots",
    ) -> Answer:
        """For the days first..last, as of `now`: with view "slots",
        `{product, location, slots: [{start, end, location?}]}`; with view "days",
        `{product, location, days: [{date, free, locations?: {location: free}}]}`, every day of the
        range, `free` the number of free starts that day (`locations`, when `location` is None,
        only those with some)."""
        key: AnswerKey = (product_id, location, first.isoformat(), last.isoformat(), view)
        found = self.fresh_answer(key)
        if found is not None:
            return found
        versions = self.versions(locations)
        building = self._building.get((key, versions))
        if building is None:
            building = self._start_build(conn, key, locations, versions, first, last, now)
        # shielded: a client that goes away does not cancel the answer the others wait for
        return await asyncio.shield(building)

    def _start_build(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        key: AnswerKey,
        locations: list[str],
        versions: tuple[int, ...],
        first: date,
        last: date,
        now: datetime | None = None,
    ) -> asyncio.Future[Answer]:
        flight = (key, versions)
        building = asyncio.ensure_future(self._build(conn, key, locations, versions, first, last, now or clock.now()))
        self._building[flight] = building
        building.add_done_callback(lambda done: self._built(flight, done))
        return building

    def _built(self, flight: tuple[AnswerKey, tuple[int, ...]], done: asyncio.Future[Answer]) -> None:
        self._building.pop(flight, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone

    async def _build(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        key: AnswerKey,
        locations: list[str],
        versions: tuple[int, ...],
        first: date,
        last: date,
        now: datetime,
    ) -> Answer:
        made_at = time.monotonic()
        product_id, location, view = key[0], key[1], key[4]
        days = [first + timedelta(days=n) for n in range((last - first).days + 1)]
        free = await self.free(conn, product_id, locations, days, now)
        if view == "days":
            listed: list[dict[str, object]] = []
            for day in days:
                counts = {loc: len(free[(loc, day)]) for loc in locations}
                entry: dict[str, object] = {"date": day.isoformat(), "free": sum(counts.values())}
                if location is None:
                    entry["locations"] = {loc: n for loc, n in counts.items() if n}
                listed.append(entry)
            body = orjson.dumps({"product": product_id, "location": location, "days": listed})
        else:
            body = orjson.dumps(
                {"product": product_id, "location": location, "slots": await _slots(free, days, location, locations)}
            )
        previous = self._answers.get(key)
        churn = previous is not None and previous.versions != versions  # a change, not the clock, replaced it
        level = GZIP_LEVEL_CHURN if churn else GZIP_LEVEL
        if len(body) > 16_384:
            packed, etag = await asyncio.to_thread(_pack, body, level)
        else:
            packed, etag = _pack(body, level)
        stale_at = made_at + self._lifetime(product_id, locations, days, free, now)
        answer = Answer(key, tuple(locations), versions, made_at, stale_at, body, packed, etag)
        self.answers_built += 1
        if versions == self.versions(locations):  # else it is stale already: the waiters get it, nobody keeps it
            if len(self._answers) > 2_000:
                self._answers.clear()
                self._sources.clear()
            self._answers[key] = answer
            self._sources[key] = (conn, first, last)
        return answer

    def _lifetime(
        self,
        product_id: str,
        locations: list[str],
        days: list[date],
        free: dict[tuple[str, date], list[FreeStart]],
        now: datetime,
    ) -> float:
        """Seconds from `now` for which an answer made of `free` stays what a new computation would
        give, unless a change is announced: until its first start passes the booking window's
        notice, a new day enters the window (local midnight), or something counted as taken frees
        itself (`_Entry.frees_at`); `answer_ttl` at most."""
        until = local(local_day(now) + timedelta(days=1), "00:00")
        product = self.view.products.get(product_id)
        notice = timedelta(hours=product.min_notice_hours if product else 0)
        for starts in free.values():
            if starts and starts[0].interval.start - notice < until:
                until = starts[0].interval.start - notice
        seconds = (until - now).total_seconds()
        wall = clock.now()
        for loc in locations:
            for day in days:
                entry = self._entries.get((loc, product_id, day))
                if entry is not None and entry.frees_at is not None:
                    seconds = min(seconds, (entry.frees_at - wall).total_seconds())
        return max(0.0, min(seconds, self.answer_ttl))

    def versions(self, locations: Sequence[str]) -> tuple[int, ...]:
        """What an answer about these locations depends on: the catalogue and each location's changes."""
        return (self.view.generation, *(self._versions[loc] for loc in locations))

    def invalidate(self, location_id: str) -> None:
        self._versions[location_id] += 1

    def invalidate_all(self) -> None:
        for location_id in list(self._versions):
            self._versions[location_id] += 1
        self._entries.clear()
        self._answers.clear()

    async def free(
        self,
        conn: asyncpg.Connection | asyncpg.Pool,
        product_id: str,
        locations: list[str],
        days: list[date],
        now: datetime,
    ) -> dict[tuple[str, date], list[FreeStart]]:
        """Free starts inside the booking window as of `now`, per (location, day)."""
        computed_at, wall = time.monotonic(), clock.now()
        found: dict[tuple[str, date], list[FreeStart]] = {}  # taken now: a clear() meanwhile cannot lose them
        missing: dict[str, list[date]] = defaultdict(list)
        for loc in locations:
            version = (self.view.generation, self._versions[loc])
            for day in days:
                entry = self._entries.get((loc, product_id, day))
                if (
                    entry is None
                    or entry.version != version
                    or computed_at - entry.computed_at > self.ttl
                    or (entry.frees_at is not None and wall >= entry.frees_at)
                ):
                    missing[loc].append(day)
                else:
                    found[(loc, day)] = entry.starts
        self.misses += sum(len(d) for d in missing.values())
        self.hits += len(found)
        if missing:
            if len(self._entries) > 100_000:  # days long past pile up otherwise
                self._entries.clear()
            found |= await self._compute(conn, product_id, missing, computed_at)
        product = self.view.products.get(product_id)
        if product is None:
            return {}
        earliest = now + timedelta(hours=product.min_notice_hours)
        first_day = local_day(earliest)
        last_day = local_day(now) + timedelta(days=product.max_days_ahead)
        result: dict[tuple[str, date], list[FreeStart]] = {}
        for loc in locations:
            for day in days:
                if day > last_day or day < first_day:  # a start on an earlier day is before `earliest`
                    result[(loc, day)] = []
                elif day == first_day:
                    result[(loc, day)] = [s for s in found[(loc, day)] if s.interval.start >= earliest]
                else:  # every start of a later day is after `earliest`
                    result[(loc, day)] = list(found[(loc, day)])
        return result

    async def _compute(
        self, conn: asyncpg.Connection | asyncpg.Pool, product_id: str, missing: dict[str, list[date]], at: float
    ) -> dict[tuple[str, date], list[FreeStart]]:
        first = min(min(days) for days in missing.values())
        last = max(max(days) for days in missing.values())
        versions = {loc: (self.view.generation, self._versions[loc]) for loc in missing}
        taken, frees_at = await store.taken_in_range(
            conn, list(missing), local(first, "00:00"), local(last + timedelta(days=1), "00:00"), clock.now()
        )
        computed: dict[tuple[str, date], list[FreeStart]] = {}
        for loc, days in missing.items():
            for day in days:
                starts = [
                    FreeStart(i, i.start.astimezone(BRUSSELS).isoformat(), i.end.astimezone(BRUSSELS).isoformat())
                    for i in free_starts(self.view, loc, product_id, day, taken.get(loc, []), None)
                ]
                # The version read before the query: a change during it makes the entry stale at once.
                self._entries[(loc, product_id, day)] = _Entry(versions[loc], at, starts, frees_at.get(loc))
                computed[(loc, day)] = starts
                if len(computed) % YIELD_EVERY == 0:
                    # Hundreds of days (availability over every location): the event loop is not held
                    # for the whole computation, requests already answered keep going out.
                    await asyncio.sleep(0)
        return computed
