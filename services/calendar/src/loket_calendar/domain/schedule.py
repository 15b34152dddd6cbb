"""Pure capacity rules: which desk-times exist, which are free, and which desk a booking gets.

Wall-clock hours are in Europe/Brussels; every instant here is an aware datetime, compared in
UTC. Nothing here reads the clock: `now` is always passed in, so decisions replay identically.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS, CatalogueView, Interval, local, local_day


def desk_preference(desk: ev.DeskDefined) -> tuple[int, str]:
    """Desk choice policy: the most specialised desk first (fewest products), then by id.

    Versatile desks stay free for the products only they serve, and bookings fill desks in a
    fixed order, which keeps each desk's day packed instead of spread thin over all desks."""
    return (len(desk.products), desk.desk_id)


@dataclass(frozen=True)
class Booked:
    desk_id: str
    interval: Interval


@dataclass(frozen=True)
class Rejection:
    reason: ev.RejectionReason


def on_grid(start: datetime, grid_minutes: int) -> bool:
    """Start times lie on a grid of `grid_minutes` counted from local (Brussels) midnight."""
    wall = start.astimezone(BRUSSELS)
    return not (wall.second or wall.microsecond or (wall.hour * 60 + wall.minute) % grid_minutes)


def first_on_grid(instant: datetime, grid_minutes: int) -> datetime:
    """The first grid start at or after `instant` (the grid counts from local midnight)."""
    wall = instant.astimezone(BRUSSELS)
    minutes = wall.hour * 60 + wall.minute
    extra = (-minutes) % grid_minutes
    if wall.second or wall.microsecond:
        extra = extra or grid_minutes
        instant = instant - timedelta(seconds=wall.second, microseconds=wall.microsecond)
    return instant + timedelta(minutes=extra)


def subtract(whole: Interval, part: Interval) -> list[Interval]:
    """What remains of `whole` once `part` is taken out (zero, one or two pieces)."""
    if not whole.overlaps(part):
        return [whole]
    pieces = []
    if whole.start < part.start:
        pieces.append(Interval(whole.start, part.start))
    if part.end < whole.end:
        pieces.append(Interval(part.end, whole.end))
    return pieces


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
    if not on_grid(start, location.slot_grid_minutes):
        return Rejection("off-grid")
    if not window_ok(product, start, now):
        return Rejection("outside-window")
    day = local_day(start)
    if view.is_closed(location_id, day):
        return Rejection("closed")
    wanted = Interval(start, start + timedelta(minutes=product.duration_minutes))
    busy = {b.desk_id for b in taken if b.interval.overlaps(wanted)}
    inside_hours = False
    for desk in sorted(view.desks_for(location_id, product_id), key=desk_preference):
        if not any(h.start <= wanted.start and wanted.end <= h.end for h in view.desk_hours(desk.desk_id, day)):
            continue
        inside_hours = True
        if desk.desk_id not in busy:
            return desk
    return Rejection("slot-taken" if inside_hours else "outside-hours")


def free_starts(
    view: CatalogueView,
    location_id: str,
    product_id: str,
    day: date,
    taken: Iterable[Booked],
    now: datetime | None,
) -> list[Interval]:
    """Every start time on `day` at which at least one desk serving the product is free.

    With `now`, only starts inside the product's booking window; with None, all of them (for a
    cache that applies the window when it is read)."""
    product = view.products.get(product_id)
    location = view.locations.get(location_id)
    if product is None or location is None or product_id not in location.products:
        return []
    if view.is_closed(location_id, day):
        return []
    if now is not None and day > local_day(now) + timedelta(days=product.max_days_ahead):
        return []  # the window of `window_ok`, once per day: every start below lies on `day`
    earliest = now + timedelta(hours=product.min_notice_hours) if now is not None else None
    duration = timedelta(minutes=product.duration_minutes)
    grid = timedelta(minutes=location.slot_grid_minutes)
    # In UTC: arithmetic and comparisons of aware datetimes in one fixed zone are cheap.
    by_desk: dict[str, list[tuple[datetime, datetime]]] = {}
    for booked in taken:
        by_desk.setdefault(booked.desk_id, []).append(
            (booked.interval.start.astimezone(UTC), booked.interval.end.astimezone(UTC))
        )
    starts: set[datetime] = set()
    for desk in sorted(view.desks_for(location_id, product_id), key=desk_preference):
        busy = by_desk.get(desk.desk_id, [])
        for block in view.desk_hours(desk.desk_id, day):
            first = block.start if earliest is None else max(block.start, earliest)
            cursor = first_on_grid(first, location.slot_grid_minutes).astimezone(UTC)
            block_end = block.end.astimezone(UTC)
            while cursor + duration <= block_end:
                end = cursor + duration
                if cursor not in starts and not any(b_start < end and cursor < b_end for b_start, b_end in busy):
                    starts.add(cursor)
                cursor += grid
    return [Interval(s, s + duration) for s in sorted(starts)]


__all__ = [
    "BRUSSELS",
    "Booked",
    "CatalogueView",
    "Interval",
    "Rejection",
    "free_desk",
    "free_starts",
    "local",
    "local_day",
    "on_grid",
    "subtract",
]
