"""Pure capacity rules: which desk-times exist, which are free, and which desk a booking gets.

Wall-clock hours are in Europe/Brussels; every instant here is an aware datetime, compared in
UTC. Nothing here reads the clock: `now` is always passed in, so decisions replay identically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from loket_contracts import events as ev

BRUSSELS = ZoneInfo("Europe/Brussels")


@dataclass(frozen=True)
class Interval:
    start: datetime
    end: datetime

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass
class CatalogueView:
    """What the calendar knows of the catalogue, rebuilt from the catalogue topic."""

    products: dict[str, ev.ProductDefined] = field(default_factory=dict)
    locations: dict[str, ev.LocationDefined] = field(default_factory=dict)
    desks: dict[str, ev.DeskDefined] = field(default_factory=dict)
    schedules: dict[str, ev.SchedulePublished] = field(default_factory=dict)
    closures: dict[str, ev.ClosureDeclared] = field(default_factory=dict)

    def apply(self, event: ev.Event) -> None:
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

    def desks_for(self, location_id: str, product_id: str) -> list[ev.DeskDefined]:
        return sorted(
            (d for d in self.desks.values() if d.location_id == location_id and product_id in d.products),
            key=desk_preference,
        )

    def is_closed(self, location_id: str, day: date) -> bool:
        return any(c.day == day and c.location_id in (None, location_id) for c in self.closures.values())

    def desk_hours(self, desk_id: str, day: date) -> list[Interval]:
        """The desk's open intervals on a local day, from the schedule in force that day."""
        in_force = [s for s in self.schedules.values() if s.desk_id == desk_id and s.effective_from <= day]
        if not in_force:
            return []
        schedule = max(in_force, key=lambda s: s.effective_from)
        blocks = schedule.weekly.get(str(day.isoweekday()), [])
        return [Interval(local(day, b.start), local(day, b.end)) for b in blocks]


def desk_preference(desk: ev.DeskDefined) -> tuple[int, str]:
    """Desk choice policy: the most specialised desk first (fewest products), then by id.

    Versatile desks stay free for the products only they serve, and bookings fill desks in a
    fixed order, which keeps each desk's day packed instead of spread thin over all desks."""
    return (len(desk.products), desk.desk_id)


def local(day: date, hhmm: str) -> datetime:
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(0), BRUSSELS)
    hours, minutes = hhmm.split(":")
    return datetime.combine(day, time(int(hours), int(minutes)), BRUSSELS)


def local_day(instant: datetime) -> date:
    return instant.astimezone(BRUSSELS).date()


@dataclass(frozen=True)
class Booked:
    desk_id: str
    interval: Interval


@dataclass(frozen=True)
class Rejection:
    reason: ev.RejectionReason


def window_ok(product: ev.ProductDefined, start: datetime, now: datetime) -> bool:
    earliest = now + timedelta(hours=product.min_notice_hours)
    latest_day = local_day(now) + timedelta(days=product.max_days_ahead)
    return start >= earliest and local_day(start) <= latest_day


def free_desk(
    view: CatalogueView,
    location_id: str,
    product_id: str,
    start: datetime,
    taken: Iterable[Booked],
    now: datetime,
) -> ev.DeskDefined | Rejection:
    """The desk a request gets, or why it gets none. `taken` = active reservations and held-back
    released slots of the location around `start`."""
    product = view.products.get(product_id)
    if product is None:
        return Rejection("unknown-product")
    location = view.locations.get(location_id)
    if location is None:
        return Rejection("unknown-location")
    if product_id not in location.products:
        return Rejection("not-offered")
    minutes_local = start.astimezone(BRUSSELS)
    if (minutes_local.hour * 60 + minutes_local.minute) % location.slot_grid_minutes or minutes_local.second:
        return Rejection("off-grid")
    if not window_ok(product, start, now):
        return Rejection("outside-window")
    day = local_day(start)
    if view.is_closed(location_id, day):
        return Rejection("closed")
    wanted = Interval(start, start + timedelta(minutes=product.duration_minutes))
    taken_list = list(taken)
    inside_hours = False
    for desk in view.desks_for(location_id, product_id):
        if not any(h.start <= wanted.start and wanted.end <= h.end for h in view.desk_hours(desk.desk_id, day)):
            continue
        inside_hours = True
        if not any(b.desk_id == desk.desk_id and b.interval.overlaps(wanted) for b in taken_list):
            return desk
    return Rejection("slot-taken" if inside_hours else "outside-hours")


def free_starts(
    view: CatalogueView,
    location_id: str,
    product_id: str,
    day: date,
    taken: Iterable[Booked],
    now: datetime,
) -> list[Interval]:
    """Every start time on `day` at which at least one desk serving the product is free."""
    product = view.products.get(product_id)
    location = view.locations.get(location_id)
    if product is None or location is None or product_id not in location.products:
        return []
    if view.is_closed(location_id, day):
        return []
    duration = timedelta(minutes=product.duration_minutes)
    grid = timedelta(minutes=location.slot_grid_minutes)
    by_desk: dict[str, list[Interval]] = {}
    for booked in taken:
        by_desk.setdefault(booked.desk_id, []).append(booked.interval)
    starts: set[datetime] = set()
    for desk in view.desks_for(location_id, product_id):
        busy = sorted(by_desk.get(desk.desk_id, []), key=lambda i: i.start)
        for block in view.desk_hours(desk.desk_id, day):
            cursor = block.start
            while cursor + duration <= block.end:
                wanted = Interval(cursor, cursor + duration)
                if cursor not in starts and window_ok(product, cursor, now) and not any(
                    b.overlaps(wanted) for b in busy
                ):
                    starts.add(cursor)
                cursor += grid
    return [Interval(s, s + duration) for s in sorted(starts)]
