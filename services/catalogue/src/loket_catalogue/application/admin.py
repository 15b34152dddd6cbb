"""Admin use cases: change products, locations, desks, hours and closures; preview new hours.

Every change runs in one transaction that validates against the current state, stores the new
state and queues the event in the outbox (`Catalogue.publish`). Admin writes are rare, so they
take one transaction-scoped advisory lock: two concurrent changes (a location dropping a product
while a desk adds it) cannot both pass validation against a state the other is changing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import asyncpg

from loket_catalogue.application.catalogue import LIFTED_MARKER, Catalogue
from loket_catalogue.domain.rules import (
    CatalogueRuleError,
    adhoc_closure_id,
    closing_day_id,
    closing_days,
    validate_closure_day,
    validate_desk,
    validate_effective_from,
    validate_location,
    validate_weekly_hours,
)
from loket_catalogue.domain.slots import DeskHours, PreviewCount, ProductSpec, preview_counts
from loket_contracts import events as ev
from loket_runtime import clock
from loket_runtime.i18n import tr

BRUSSELS = ZoneInfo("Europe/Brussels")
ADMIN_WRITE_LOCK = 7_400_101
MAX_PREVIEW_DAYS = 366
DEFAULT_GRID_MINUTES = 10  # as the Ghent seed


class NotFound(LookupError):
    """The entity named in the path does not exist; the argument is a `Text` saying which."""


class Conflict(RuntimeError):
    """The change is well-formed but cannot apply to the entity as it stands."""


# Asks the calendar which active bookings these changes would strand (see adapters/calendar.py).
Strandings = Callable[[Sequence[ev.Event], str], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class OnStranded:
    """The admin's choice for the bookings a change would strand: refuse the change (the default),
    move each to another desk at the same time (else cancel it), or cancel each, with a reason."""

    action: str = "refuse"
    reason: ev.Localized | None = None
    by: str = ""

    def choice(self) -> ev.StrandedChoice:
        return ev.StrandedChoice(action=self.action, reason=self.reason, by=self.by)  # type: ignore[arg-type]


class Stranding(Conflict):
    """The change would leave active bookings outside the catalogue and the admin did not say what
    to do with them: refused, with the bookings."""

    def __init__(self, bookings: list[dict[str, Any]]) -> None:
        super().__init__(
            tr(
                "This change would leave %(count)s active booking(s) outside the catalogue. "
                "Say what to do with them: stranded=move (to another desk at the same time) or "
                "stranded=cancel, with a reason the residents are told.",
                count=len(bookings),
            )
        )
        self.bookings = bookings


class StrandingUnknown(RuntimeError):
    """The calendar could not say which bookings the change would strand; nothing was changed."""


@dataclass(frozen=True)
class Preview:
    location_id: str
    desk_ids: tuple[str, ...]
    effective_from: date
    first: date
    last: date
    counts: list[PreviewCount]
    closed: dict[date, str]
    bookings: list[dict[str, Any]] = field(default_factory=list)


def _schedule_hours(data: Mapping[str, object]) -> DeskHours:
    schedule = ev.SchedulePublished.model_validate(data)
    return DeskHours(schedule.desk_id, schedule.effective_from, schedule.weekly)


E = TypeVar("E", bound=ev.Event)


class CatalogueAdmin:
    def __init__(
        self, pool: asyncpg.Pool, today: Callable[[], date] = clock.today, strandings: Strandings | None = None
    ) -> None:
        self.pool = pool
        self.today = today
        self.strandings = strandings
        self.catalogue = Catalogue()
        self.entities = self.catalogue.entities

    async def _lock(self, conn: asyncpg.Connection) -> None:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ADMIN_WRITE_LOCK)

    async def _checked(self, change: E, on_stranded: OnStranded | None) -> E:
        """The change as it is to be published: refused (`Stranding`) when the calendar says it would
        strand active bookings and the admin did not say what to do with them; else carrying the
        admin's choice, which the calendar's allocator applies to whatever it strands when it sees
        the change (bookings made meanwhile included: this check is advisory)."""
        on_stranded = on_stranded or OnStranded()
        if self.strandings is None:
            return change
        if on_stranded.action == "refuse":
            try:
                found = await self.strandings([change], "refuse")
            except Exception as exc:  # the calendar is down: a refusal cannot be checked
                raise StrandingUnknown(str(exc)) from exc
            if found:
                raise Stranding(found)
            return change
        return change.model_copy(update={"stranded": on_stranded.choice()})

    # --- products and locations ------------------------------------------------------------

    async def put_product(self, product: ev.ProductDefined, on_stranded: OnStranded | None = None) -> bool:
        """Create or change a product; True when it was created."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            created = await self.entities.get(conn, "product", product.product_id) is None
            if not created:
                product = await self._checked(product, on_stranded)
            await self.catalogue.define_product(conn, product)
        return created

    async def put_location(
        self,
        location_id: str,
        name: str,
        address: str,
        products: list[str],
        slot_grid_minutes: int | None,
        on_stranded: OnStranded | None = None,
    ) -> tuple[ev.LocationDefined, bool]:
        """Create or change a location; without `slot_grid_minutes` it keeps its grid (new: the default)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            existing = await self.catalogue.location(conn, location_id)
            grid = slot_grid_minutes or (existing.slot_grid_minutes if existing else DEFAULT_GRID_MINUTES)
            location = ev.LocationDefined(
                location_id=location_id, name=name, address=address, products=products, slot_grid_minutes=grid
            )
            desks = await self._desks_at(conn, location_id)
            schedules = await self._relevant_schedules(conn, [d.desk_id for d in desks])
            validate_location(
                location, await self.catalogue.known_products(conn), desks, [(s.desk_id, s.weekly) for s in schedules]
            )
            if existing is not None:
                location = await self._checked(location, on_stranded)
            await self.catalogue.publish(conn, location)
        return location, existing is None

    # --- desks and hours -------------------------------------------------------------------

    async def put_desk(self, desk: ev.DeskDefined, on_stranded: OnStranded | None = None) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            existing_data = await self.entities.get(conn, "desk", desk.desk_id)
            existing = ev.DeskDefined.model_validate(existing_data) if existing_data else None
            validate_desk(
                desk,
                await self.catalogue.location(conn, desk.location_id),
                await self.catalogue.known_products(conn),
                existing,
            )
            if existing is not None:
                desk = await self._checked(desk, on_stranded)
            await self.catalogue.publish(conn, desk)
        return existing is None

    async def remove_desk(self, desk_id: str, on_stranded: OnStranded | None = None) -> ev.DeskRemoved:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            data = await self.entities.get(conn, "desk", desk_id)
            if data is None:
                raise NotFound(tr("There is no desk %(desk)r.", desk=desk_id))
            removed = ev.DeskRemoved(desk_id=desk_id, location_id=data["location_id"])
            removed = await self._checked(removed, on_stranded)
            await self.catalogue.publish(conn, removed)
        return removed

    async def desks(self, location_id: str | None = None) -> list[ev.DeskDefined]:
        rows = await self.entities.all(self.pool, "desk")
        desks = [ev.DeskDefined.model_validate(d) for d in rows]
        return [d for d in desks if location_id is None or d.location_id == location_id]

    async def schedules(self, desk_id: str) -> list[ev.SchedulePublished]:
        if await self.entities.get(self.pool, "desk", desk_id) is None:
            raise NotFound(tr("There is no desk %(desk)r.", desk=desk_id))
        rows = await self.pool.fetch(
            "SELECT data FROM catalogue_entities WHERE kind = 'schedule' AND data->>'desk_id' = $1", desk_id
        )
        return sorted((ev.SchedulePublished.model_validate(r["data"]) for r in rows), key=lambda s: s.effective_from)

    async def put_schedule(
        self,
        desk_id: str,
        effective_from: date,
        weekly: dict[str, list[ev.TimeBlock]],
        on_stranded: OnStranded | None = None,
    ) -> tuple[ev.SchedulePublished, bool]:
        """Publish a desk's weekly hours from `effective_from` on (the same date again replaces them)."""
        validate_effective_from(effective_from, self.today())
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            desk = await self.entities.get(conn, "desk", desk_id)
            if desk is None:
                raise NotFound(tr("There is no desk %(desk)r.", desk=desk_id))
            location = await self.catalogue.location(conn, desk["location_id"])
            validate_weekly_hours(weekly, location.slot_grid_minutes if location else None)
            schedule = ev.SchedulePublished(
                schedule_id=f"{desk_id}:{effective_from.isoformat()}",
                desk_id=desk_id,
                location_id=desk["location_id"],
                effective_from=effective_from,
                weekly=weekly,
            )
            created = await self.entities.get(conn, "schedule", schedule.schedule_id) is None
            schedule = await self._checked(schedule, on_stranded)
            await self.catalogue.publish(conn, schedule)
        return schedule, created

    # --- closures ----------------------------------------------------------------------------

    async def declare_closure(self, location_id: str | None, day: date, reason: str) -> tuple[ev.ClosureDeclared, bool]:
        """Close one location (or all, `location_id` None) for a day. Idempotent per location and
        day: declaring it again returns the closure (and republishes it only if the reason changed).
        The booking service cancels the bookings of that day when it consumes `closure-declared`."""
        validate_closure_day(day, self.today())
        closure = ev.ClosureDeclared(
            closure_id=adhoc_closure_id(location_id, day),
            location_id=location_id,
            day=day,
            kind="ad-hoc",
            reason=reason,
        )
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            if location_id is not None and await self.catalogue.location(conn, location_id) is None:
                raise CatalogueRuleError("location_id", tr("unknown location %(location)r", location=location_id))
            existing = await self.entities.get(conn, "closure", closure.closure_id)
            if existing is not None and ev.ClosureDeclared.model_validate(existing) == closure:
                return closure, False
            await self.catalogue.publish(conn, closure)
        return closure, existing is None

    async def lift_closure(self, closure_id: str) -> ev.ClosureLifted:
        """Reopen a closed day. A lifted holiday stays lifted (it is not declared again at start-up)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock(conn)
            data = await self.entities.get(conn, "closure", closure_id)
            if data is None:
                raise NotFound(tr("There is no closure %(closure)r.", closure=closure_id))
            closure = ev.ClosureDeclared.model_validate(data)
            if closure.day < self.today():
                raise Conflict(
                    tr(
                        "closure %(closure)r is on %(day)s, a past day; it cannot be lifted",
                        closure=closure_id,
                        day=closure.day.isoformat(),
                    )
                )
            lifted = ev.ClosureLifted(closure_id=closure_id, location_id=closure.location_id, day=closure.day)
            await self.catalogue.publish(conn, lifted)
            if closure.kind != "ad-hoc":
                await self.entities.upsert(conn, LIFTED_MARKER, closure_id, lifted.model_dump(mode="json"))
        return lifted

    async def closures(self, first: date | None, last: date | None) -> list[ev.ClosureDeclared]:
        if first is not None and last is not None and last < first:
            raise CatalogueRuleError(
                "to", tr("%(last)s is before from (%(first)s)", last=last.isoformat(), first=first.isoformat())
            )
        rows = await self.entities.all(self.pool, "closure")
        closures = [ev.ClosureDeclared.model_validate(r) for r in rows]
        return sorted(
            (c for c in closures if (first is None or c.day >= first) and (last is None or c.day <= last)),
            key=lambda c: (c.day, c.location_id or "", c.closure_id),
        )

    # --- what-if -------------------------------------------------------------------------------

    async def preview(
        self,
        location_id: str,
        desk_id: str | None,
        effective_from: date,
        weekly: dict[str, list[ev.TimeBlock]],
        first: date,
        last: date,
    ) -> Preview:
        """Slots per product and day with the proposed hours next to today's; publishes nothing.

        With `desk_id` the hours are proposed for that desk (the location's other desks keep theirs);
        without, for every desk of the location."""
        if last < first:
            raise CatalogueRuleError(
                "to", tr("%(last)s is before from (%(first)s)", last=last.isoformat(), first=first.isoformat())
            )
        if (last - first).days >= MAX_PREVIEW_DAYS:
            raise CatalogueRuleError("to", tr("a preview covers at most %(days)s days", days=MAX_PREVIEW_DAYS))
        async with self.pool.acquire() as conn:
            location = await self.catalogue.location(conn, location_id)
            if location is None:
                raise CatalogueRuleError("location_id", tr("unknown location %(location)r", location=location_id))
            desks = await self._desks_at(conn, location_id)
            if desk_id is not None and desk_id not in {d.desk_id for d in desks}:
                raise CatalogueRuleError(
                    "desk_id", tr("location %(location)r has no desk %(desk)r", location=location_id, desk=desk_id)
                )
            validate_weekly_hours(weekly, location.slot_grid_minutes)
            products = {p["product_id"]: p for p in await self.entities.all(conn, "product")}
            schedules = [
                _schedule_hours(r["data"])
                for r in await conn.fetch(
                    "SELECT data FROM catalogue_entities WHERE kind = 'schedule' AND data->>'location_id' = $1",
                    location_id,
                )
            ]
            closures = [ev.ClosureDeclared.model_validate(c) for c in await self.entities.all(conn, "closure")]
            lifted = {
                r["id"] for r in await conn.fetch("SELECT id FROM catalogue_entities WHERE kind = $1", LIFTED_MARKER)
            }
        closed: dict[date, str] = {}
        for year in range(first.year, last.year + 1):
            for day, kind, name in closing_days(year):
                if closing_day_id(kind, day) not in lifted:
                    closed[day] = name
        for closure in closures:
            if closure.location_id in (None, location_id):
                closed[closure.day] = closure.reason
        specs = [
            ProductSpec(p, products[p]["duration_minutes"], tuple(d.desk_id for d in desks if p in d.products))
            for p in location.products
            if p in products
        ]
        targets = [desk_id] if desk_id is not None else [d.desk_id for d in desks]
        proposal = [DeskHours(d, effective_from, weekly) for d in targets]
        counts = preview_counts(
            specs, location.slot_grid_minutes, schedules, proposal, lambda day: day in closed, first, last
        )
        bookings: list[dict[str, Any]] = []
        if self.strandings is not None:
            proposed = [
                ev.SchedulePublished(
                    schedule_id=f"{d}:{effective_from.isoformat()}",
                    desk_id=d,
                    location_id=location_id,
                    effective_from=effective_from,
                    weekly=weekly,
                )
                for d in targets
            ]
            try:
                bookings = await self.strandings(proposed, "move")
            except Exception as exc:
                raise StrandingUnknown(str(exc)) from exc
        return Preview(
            location_id,
            tuple(targets),
            effective_from,
            first,
            last,
            counts,
            {d: r for d, r in sorted(closed.items()) if first <= d <= last},
            bookings,
        )

    # --- helpers ---------------------------------------------------------------------------------

    async def _desks_at(self, conn: asyncpg.Connection, location_id: str) -> list[ev.DeskDefined]:
        rows = await conn.fetch(
            "SELECT data FROM catalogue_entities WHERE kind = 'desk' AND data->>'location_id' = $1 ORDER BY id",
            location_id,
        )
        return [ev.DeskDefined.model_validate(r["data"]) for r in rows]

    async def _relevant_schedules(self, conn: asyncpg.Connection, desk_ids: Sequence[str]) -> list[DeskHours]:
        """Per desk, the version in force today and every later one (past versions no longer matter)."""
        rows = await conn.fetch(
            "SELECT data FROM catalogue_entities WHERE kind = 'schedule' AND data->>'desk_id' = ANY($1::text[])",
            list(desk_ids),
        )
        today = self.today()
        by_desk: dict[str, list[DeskHours]] = {}
        for row in rows:
            hours = _schedule_hours(row["data"])
            by_desk.setdefault(hours.desk_id, []).append(hours)
        relevant: list[DeskHours] = []
        for versions in by_desk.values():
            in_force = [v for v in versions if v.effective_from <= today]
            current = max(in_force, key=lambda v: v.effective_from) if in_force else None
            relevant += [v for v in versions if v is current or v.effective_from > today]
        return relevant
