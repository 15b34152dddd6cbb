"""Free start times per (location, product, day), computed once and reused.

A release storm and the public availability API ask the same questions thousands of times a
second: "what is free on this day at these locations?". The answer only changes when a
reservation at the location changes, so it is cached per (location, product, day) and dropped
when the allocator changes that location (`invalidate`), or after `ttl` seconds at most (for
changes made by another calendar instance, and for held-back slots coming back). The booking
window moves with the clock, so it is applied when an entry is read, never stored.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from loket_calendar.adapters import store
from loket_calendar.domain.schedule import BRUSSELS, CatalogueView, Interval, free_starts, local, local_day


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


class AvailabilityCache:
    def __init__(self, view: CatalogueView, ttl_seconds: float = 2.0, answer_ttl_seconds: float = 1.0) -> None:
        self.view = view
        self.ttl = ttl_seconds
        self.answer_ttl = answer_ttl_seconds
        self._versions: dict[str, int] = defaultdict(int)
        self._entries: dict[tuple[str, str, date], _Entry] = {}
        # Whole serialised answers: in a release storm thousands ask the very same question.
        self._answers: dict[tuple[object, ...], tuple[tuple[int, ...], float, bytes]] = {}
        self.hits = 0
        self.misses = 0

    def cached_answer(self, key: tuple[object, ...], locations: list[str]) -> bytes | None:
        found = self._answers.get(key)
        if found is None:
            return None
        versions, made_at, body = found
        if versions != self.versions(locations) or time.monotonic() - made_at > self.answer_ttl:
            return None
        return body

    def keep_answer(
        self, key: tuple[object, ...], locations: list[str], versions: tuple[int, ...], body: bytes
    ) -> None:
        if len(self._answers) > 2_000:
            self._answers.clear()
        self._answers[key] = (versions, time.monotonic(), body)

    def versions(self, locations: list[str]) -> tuple[int, ...]:
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
        clock = time.monotonic()
        missing: dict[str, list[date]] = defaultdict(list)
        for loc in locations:
            for day in days:
                entry = self._entries.get((loc, product_id, day))
                if (
                    entry is None
                    or entry.version != (self.view.generation, self._versions[loc])
                    or clock - entry.computed_at > self.ttl
                ):
                    missing[loc].append(day)
        self.misses += sum(len(d) for d in missing.values())
        self.hits += len(locations) * len(days) - sum(len(d) for d in missing.values())
        if missing:
            if len(self._entries) > 100_000:  # days long past pile up otherwise
                self._entries.clear()
            await self._compute(conn, product_id, missing, clock)
        product = self.view.products.get(product_id)
        if product is None:
            return {}
        earliest = now + timedelta(hours=product.min_notice_hours)
        last_day = local_day(now) + timedelta(days=product.max_days_ahead)
        result: dict[tuple[str, date], list[FreeStart]] = {}
        for loc in locations:
            for day in days:
                if day > last_day:
                    result[(loc, day)] = []
                    continue
                starts = self._entries[(loc, product_id, day)].starts
                result[(loc, day)] = [s for s in starts if s.interval.start >= earliest]
        return result

    async def _compute(
        self, conn: asyncpg.Connection | asyncpg.Pool, product_id: str, missing: dict[str, list[date]], clock: float
    ) -> None:
        first = min(min(days) for days in missing.values())
        last = max(max(days) for days in missing.values())
        versions = {loc: (self.view.generation, self._versions[loc]) for loc in missing}
        taken = await store.taken_in_range(
            conn, list(missing), local(first, "00:00"), local(last + timedelta(days=1), "00:00"), datetime.now(BRUSSELS)
        )
        for loc, days in missing.items():
            for day in days:
                starts = [
                    FreeStart(i, i.start.astimezone(BRUSSELS).isoformat(), i.end.astimezone(BRUSSELS).isoformat())
                    for i in free_starts(self.view, loc, product_id, day, taken.get(loc, []), None)
                ]
                # The version read before the query: a change during it makes the entry stale at once.
                self._entries[(loc, product_id, day)] = _Entry(versions[loc], clock, starts)
