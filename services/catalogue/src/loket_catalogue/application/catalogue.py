"""Catalogue use cases: every change is validated, stored, and published on the compacted topic.

The event published for an entity carries its whole current state, keyed `kind:id`, so a
service that starts fresh rebuilds its read model by reading the topic from offset 0.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import asyncpg

from loket_catalogue.adapters.repository import EntityRepository
from loket_catalogue.domain.rules import (
    CatalogueRuleError,
    closing_day_id,
    closing_days,
    validate_desk,
    validate_location,
    validate_weekly_hours,
)
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import CATALOGUE
from loket_runtime import clock
from loket_runtime.i18n import tr
from loket_runtime.outbox import Outbox

SOURCE = "loket/catalogue"
# Entity kind marking a holiday or local closing day an admin lifted: it is not declared again.
LIFTED_MARKER = "lifted-closure"

ENTITY_KIND: dict[type[ev.Event], tuple[str, str]] = {
    ev.ProductDefined: ("product", "product_id"),
    ev.ProductRetired: ("product", "product_id"),
    ev.LocationDefined: ("location", "location_id"),
    ev.DeskDefined: ("desk", "desk_id"),
    ev.DeskRemoved: ("desk", "desk_id"),
    ev.SchedulePublished: ("schedule", "schedule_id"),
    ev.ClosureDeclared: ("closure", "closure_id"),
    ev.ClosureLifted: ("closure", "closure_id"),
}


def entity_key(event: ev.Event) -> tuple[str, str]:
    kind, id_field = ENTITY_KIND[type(event)]
    return kind, str(getattr(event, id_field))


class Catalogue:
    def __init__(self) -> None:
        self.entities = EntityRepository()
        self.outbox = Outbox()

    async def publish(self, conn: asyncpg.Connection, event: ev.Event) -> None:
        """Store the entity's new state and queue the event, in the caller's transaction."""
        kind, entity_id = entity_key(event)
        if isinstance(event, ev.ProductRetired | ev.DeskRemoved | ev.ClosureLifted):
            await self.entities.delete(conn, kind, entity_id)
        else:
            await self.entities.upsert(conn, kind, entity_id, event.model_dump(mode="json"))
        envelope = Envelope(
            type=event.TYPE,
            source=SOURCE,
            subject=f"{kind}:{entity_id}",
            time=clock.now(),
            data=event.model_dump(mode="json"),
        )
        await self.outbox.add(conn, CATALOGUE.name, f"{kind}:{entity_id}", [envelope])

    async def known_products(self, conn: asyncpg.Connection) -> set[str]:
        return {p["product_id"] for p in await self.entities.all(conn, "product")}

    async def location(self, conn: asyncpg.Connection, location_id: str) -> ev.LocationDefined | None:
        data = await self.entities.get(conn, "location", location_id)
        return ev.LocationDefined.model_validate(data) if data else None

    async def define_product(self, conn: asyncpg.Connection, product: ev.ProductDefined) -> None:
        await self.publish(conn, product)

    async def define_location(self, conn: asyncpg.Connection, location: ev.LocationDefined) -> None:
        validate_location(location, await self.known_products(conn))
        await self.publish(conn, location)

    async def define_desk(self, conn: asyncpg.Connection, desk: ev.DeskDefined) -> None:
        validate_desk(desk, await self.location(conn, desk.location_id), await self.known_products(conn))
        await self.publish(conn, desk)

    async def publish_schedule(self, conn: asyncpg.Connection, schedule: ev.SchedulePublished) -> None:
        desk = await self.entities.get(conn, "desk", schedule.desk_id)
        if desk is None:
            raise CatalogueRuleError("desk_id", tr("unknown desk %(desk)r", desk=schedule.desk_id))
        if desk["location_id"] != schedule.location_id:
            raise CatalogueRuleError(
                "location_id",
                tr("desk %(desk)r is not at %(location)r", desk=schedule.desk_id, location=schedule.location_id),
            )
        validate_weekly_hours(schedule.weekly)
        await self.publish(conn, schedule)

    async def declare_closure(self, conn: asyncpg.Connection, closure: ev.ClosureDeclared) -> None:
        if closure.location_id is not None and await self.location(conn, closure.location_id) is None:
            raise CatalogueRuleError("location_id", tr("unknown location %(location)r", location=closure.location_id))
        await self.publish(conn, closure)

    async def declare_closing_days(self, conn: asyncpg.Connection, years: list[int]) -> int:
        """Publish the holidays and local closing days of `years` for every location (idempotent)."""
        count = 0
        for year in years:
            for day, kind, name in closing_days(year):
                closure_id = closing_day_id(kind, day)
                if (
                    await self.entities.get(conn, "closure", closure_id) is None
                    and await self.entities.get(conn, LIFTED_MARKER, closure_id) is None
                ):
                    closure = ev.ClosureDeclared.model_validate(
                        {"closure_id": closure_id, "location_id": None, "day": day, "kind": kind, "reason": name}
                    )
                    await self.declare_closure(conn, closure)
                    count += 1
        return count


async def load_seed(pool: asyncpg.Pool, seed: dict[str, Any], today: date) -> bool:
    """Load the seed into an empty catalogue (one transaction); return False when it had data already."""
    catalogue = Catalogue()
    async with pool.acquire() as conn, conn.transaction():
        if await catalogue.entities.count(conn, "product"):
            await catalogue.declare_closing_days(conn, [today.year, today.year + 1])
            return False
        for product in seed["products"]:
            await catalogue.define_product(conn, ev.ProductDefined(product_id=product["id"], **_without(product, "id")))
        effective_from = date.fromisoformat(str(seed.get("schedules_effective_from", today.isoformat())))
        for location in seed["locations"]:
            await catalogue.define_location(
                conn,
                ev.LocationDefined(
                    location_id=location["id"],
                    name=location["name"],
                    address=location["address"],
                    products=location["products"],
                    slot_grid_minutes=location.get("slot_grid_minutes", seed.get("slot_grid_minutes", 10)),
                ),
            )
            weekly = (
                seed["hours_templates"][location["hours"]] if isinstance(location["hours"], str) else location["hours"]
            )
            for desk in location["desks"]:
                await catalogue.define_desk(
                    conn,
                    ev.DeskDefined(
                        desk_id=desk["id"], location_id=location["id"], name=desk["name"], products=desk["products"]
                    ),
                )
                hours = desk.get("hours", weekly)
                await catalogue.publish_schedule(
                    conn,
                    ev.SchedulePublished(
                        schedule_id=f"{desk['id']}:{effective_from.isoformat()}",
                        desk_id=desk["id"],
                        location_id=location["id"],
                        effective_from=effective_from,
                        weekly={
                            day: [ev.TimeBlock(start=b[0], end=b[1]) for b in blocks] for day, blocks in hours.items()
                        },
                    ),
                )
        await catalogue.declare_closing_days(conn, [today.year, today.year + 1])
    return True


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}
