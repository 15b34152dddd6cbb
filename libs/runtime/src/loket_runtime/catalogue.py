"""A service's local read model of the catalogue, built only from the compacted catalogue topic.

Every process assigns itself every partition of the topic, never joining a Kafka consumer group
(`WholeTopicConsumer`), so two instances can never split it between them, however they are
named. The entities are kept in the database (`catalogue_view`, written once per database, with
the progress of the group `catalogue-view` in `consumer_offsets`) and in memory for fast decisions
(in every process, from its own positions). On start a process loads the table and those offsets
in one snapshot and reads on from there; a fresh database rebuilds from offset 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

import asyncpg
from aiokafka import TopicPartition

from loket_contracts import events as ev
from loket_contracts.events import EVENT_TYPES
from loket_contracts.topics import CATALOGUE
from loket_runtime.clock import BRUSSELS as BRUSSELS  # re-exported: the read model's users take it here
from loket_runtime.consumer import Delivery, HandlerContext, WholeTopicConsumer

# The progress of the catalogue table, one per database (every process of a service shares it).
CATALOGUE_VIEW_GROUP = "catalogue-view"


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


def local(day: date, hhmm: str) -> datetime:
    """A wall-clock time in Brussels on `day` as an aware datetime ("24:00" = next midnight)."""
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(0), BRUSSELS)
    hours, minutes = hhmm.split(":")
    return datetime.combine(day, time(int(hours), int(minutes)), BRUSSELS)


def local_day(instant: datetime) -> date:
    return instant.astimezone(BRUSSELS).date()


@dataclass
class CatalogueView:
    products: dict[str, ev.ProductDefined] = field(default_factory=dict)
    locations: dict[str, ev.LocationDefined] = field(default_factory=dict)
    desks: dict[str, ev.DeskDefined] = field(default_factory=dict)
    schedules: dict[str, ev.SchedulePublished] = field(default_factory=dict)
    closures: dict[str, ev.ClosureDeclared] = field(default_factory=dict)
    generation: int = 0  # raised on every change, so caches built from the view know when to drop
    # Answers of desks_for and desk_hours: asked for every decision and every free start, and
    # the same until the catalogue changes.
    _memo: dict[tuple[str, str, object], Any] = field(default_factory=dict, repr=False, compare=False)

    def apply(self, event: ev.Event) -> None:
        self.generation += 1
        self._memo.clear()
        match event:
            case ev.ProductDefined():
                self.products[event.product_id] = event
            case ev.ProductRetired():
                self.products.pop(event.product_id, None)
            case ev.LocationDefined():
                self.locations[event.location_id] = event
            case ev.DeskDefined():
                self.desks[event.desk_id] = event
            case ev.DeskRemoved():
                self.desks.pop(event.desk_id, None)
            case ev.SchedulePublished():
                self.schedules[event.schedule_id] = event
            case ev.ClosureDeclared():
                self.closures[event.closure_id] = event
            case ev.ClosureLifted():
                self.closures.pop(event.closure_id, None)

    def replace_with(self, other: CatalogueView) -> None:
        self.generation += 1
        self._memo.clear()
        for name in ("products", "locations", "desks", "schedules", "closures"):
            mapping = getattr(self, name)
            mapping.clear()
            mapping.update(getattr(other, name))

    def desks_for(self, location_id: str, product_id: str) -> list[ev.DeskDefined]:
        key = ("desks_for", location_id, product_id)
        if key not in self._memo:
            self._memo[key] = sorted(
                (d for d in self.desks.values() if d.location_id == location_id and product_id in d.products),
                key=lambda d: d.desk_id,
            )
        return list(self._memo[key])

    def closure_on(self, location_id: str, day: date) -> ev.ClosureDeclared | None:
        for closure in self.closures.values():
            if closure.day == day and closure.location_id in (None, location_id):
                return closure
        return None

    def is_closed(self, location_id: str, day: date) -> bool:
        return self.closure_on(location_id, day) is not None

    def desk_hours(self, desk_id: str, day: date) -> list[Interval]:
        """The desk's open intervals on a local day, from the schedule in force that day."""
        key = ("desk_hours", desk_id, day)
        if key not in self._memo:
            if len(self._memo) > 200_000:
                self._memo.clear()
            self._memo[key] = self._desk_hours(desk_id, day)
        return list(self._memo[key])

    def _desk_hours(self, desk_id: str, day: date) -> list[Interval]:
        in_force = [s for s in self.schedules.values() if s.desk_id == desk_id and s.effective_from <= day]
        if not in_force:
            return []
        schedule = max(in_force, key=lambda s: s.effective_from)
        blocks = schedule.weekly.get(str(day.isoweekday()), [])
        return [Interval(local(day, b.start), local(day, b.end)) for b in blocks]


async def load_catalogue_view(conn: asyncpg.Pool | asyncpg.Connection) -> CatalogueView:
    view = CatalogueView()
    for row in await conn.fetch("SELECT data FROM catalogue_view ORDER BY kind, id"):
        data = dict(row["data"])
        view.apply(EVENT_TYPES[data.pop("__type")].model_validate(data))
    return view


async def load_catalogue_snapshot(pool: asyncpg.Pool) -> tuple[CatalogueView, dict[TopicPartition, int]]:
    """The table and the offsets it reflects, read in one snapshot: a process reads on from there."""
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        view = await load_catalogue_view(conn)
        rows = await conn.fetch(
            "SELECT topic, partition, next_offset FROM consumer_offsets WHERE consumer_group = $1",
            CATALOGUE_VIEW_GROUP,
        )
    return view, {TopicPartition(r["topic"], r["partition"]): int(r["next_offset"]) for r in rows}


async def save_catalogue_entity(conn: asyncpg.Connection, key: str, event: ev.Event) -> None:
    kind, _, entity_id = key.partition(":")
    if isinstance(event, ev.ProductRetired | ev.DeskRemoved | ev.ClosureLifted):
        await conn.execute("DELETE FROM catalogue_view WHERE kind = $1 AND id = $2", kind, entity_id)
        return
    await conn.execute(
        "INSERT INTO catalogue_view (kind, id, data) VALUES ($1, $2, $3)"
        " ON CONFLICT (kind, id) DO UPDATE SET data = EXCLUDED.data",
        kind,
        entity_id,
        event.model_dump(mode="json") | {"__type": event.TYPE},
    )


def catalogue_consumer(
    pool: asyncpg.Pool,
    bootstrap: str,
    view: CatalogueView,
    positions: dict[TopicPartition, int] | None = None,
    client_id: str | None = None,
    lag_group: str | None = None,
) -> WholeTopicConsumer:
    """Keeps `view` (from `positions`, where its snapshot stood) and the table current."""

    async def on_catalogue(ctx: HandlerContext, delivery: Delivery) -> None:
        await save_catalogue_entity(ctx.conn, delivery.key or "", delivery.event)

    return WholeTopicConsumer(
        pool=pool,
        bootstrap=bootstrap,
        group_id=CATALOGUE_VIEW_GROUP,
        topics=[CATALOGUE.name],
        handlers=dict.fromkeys((t.TYPE for t in CATALOGUE.events), on_catalogue),
        on_record=lambda delivery: view.apply(delivery.event),
        positions=positions,
        client_id=client_id,
        lag_group=lag_group,
        fetch_max_wait_ms=500,  # catalogue changes are rare and need no millisecond latency
    )
