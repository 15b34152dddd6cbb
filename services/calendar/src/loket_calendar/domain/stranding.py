"""Pure rules: which active reservations a catalogue leaves stranded, and where each could go.

A reservation (held or confirmed, starting at or after `now`) is stranded when the catalogue no
longer allows it as it stands: its product is gone or no longer offered at its location, its desk
is gone (or moved to another location) or no longer serves the product, the desk's hours in force
that day do not cover [start, start + the product's duration now), or that span now runs into
another reservation on the desk (a duration that grew). Closed days are not counted here: a
closure cancels its day's bookings on its own (the booking service does it).

A stranded reservation may move to another desk of its location that serves the product, is open
for the whole span and is free then: the allocator's own desk policy (the most specialised desk
first, then by id) chooses, over what stays plus what has already moved. Nothing here reads a
clock or a database.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from loket_calendar.domain.schedule import desk_preference
from loket_contracts import events as ev
from loket_runtime.catalogue import CatalogueView, Interval, local_day

# Why a reservation no longer fits, checked in this order.
WHY = ("unknown-product", "not-offered", "desk-removed", "not-served", "outside-hours", "overlaps")


@dataclass(frozen=True)
class Active:
    """An active reservation as these rules see it."""

    booking_id: str
    location_id: str
    desk_id: str
    product_id: str
    start: datetime
    end: datetime
    status: str = "confirmed"


@dataclass(frozen=True)
class Stranded:
    reservation: Active
    why: str
    move_to: str | None  # the desk it can move to, None when no desk is free then
    end: datetime  # the end it gets: start + the product's duration now


def span(view: CatalogueView, r: Active) -> Interval:
    """The time the reservation needs under the catalogue now (its own when the product is gone)."""
    product = view.products.get(r.product_id)
    if product is None:
        return Interval(r.start, r.end)
    return Interval(r.start, r.start + timedelta(minutes=product.duration_minutes))


def open_for(view: CatalogueView, desk_id: str, wanted: Interval) -> bool:
    hours = view.desk_hours(desk_id, local_day(wanted.start))
    return any(h.start <= wanted.start and wanted.end <= h.end for h in hours)


def why_stranded(view: CatalogueView, r: Active) -> str | None:
    """What the catalogue no longer allows about `r` on its own desk (not counting other
    reservations), or None when it still fits."""
    if r.product_id not in view.products:
        return "unknown-product"
    location = view.locations.get(r.location_id)
    if location is None or r.product_id not in location.products:
        return "not-offered"
    desk = view.desks.get(r.desk_id)
    if desk is None or desk.location_id != r.location_id:
        return "desk-removed"
    if r.product_id not in desk.products:
        return "not-served"
    if not open_for(view, r.desk_id, span(view, r)):
        return "outside-hours"
    return None


def assess(view: CatalogueView, reservations: Iterable[Active], now: datetime) -> tuple[list[Stranded], list[Stranded]]:
    """The reservations (active ones of the locations concerned) that `view` leaves stranded, each
    with the desk it could move to; and those whose product's duration changed but that still fit
    on their own desk (`move_to` is that desk, `why` "resized"): kept, with the new end. Start order."""
    reservations = list(reservations)
    ahead = sorted((r for r in reservations if r.start >= now), key=lambda r: (r.start, r.booking_id))
    fixed = [r for r in reservations if r.start < now]  # under way or past: left as they are
    kept: list[tuple[str, Interval]] = [(r.desk_id, Interval(r.start, r.end)) for r in fixed]
    found: list[tuple[Active, str]] = []
    resized: list[Stranded] = []
    # Reservations whose span did not change cannot newly overlap: they stay first, so a duration
    # that grew strands the later of two bookings that now meet, never one that did not change.
    unchanged = [r for r in ahead if span(view, r) == Interval(r.start, r.end)]
    changed = [r for r in ahead if span(view, r) != Interval(r.start, r.end)]
    for group in (unchanged, changed):
        for r in group:
            why = why_stranded(view, r)
            wanted = span(view, r)
            if why is None and any(d == r.desk_id and i.overlaps(wanted) for d, i in kept):
                why = "overlaps"
            if why is None:
                kept.append((r.desk_id, wanted))
                if group is changed:
                    resized.append(Stranded(r, "resized", r.desk_id, wanted.end))
            else:
                found.append((r, why))
    result: list[Stranded] = []
    for r, why in sorted(found, key=lambda f: (f[0].start, f[0].booking_id)):
        wanted = span(view, r)
        target = None
        if why not in ("unknown-product", "not-offered"):
            for desk in sorted(view.desks_for(r.location_id, r.product_id), key=desk_preference):
                if desk.desk_id == r.desk_id and why != "overlaps":
                    continue
                if not open_for(view, desk.desk_id, wanted):
                    continue
                if any(d == desk.desk_id and i.overlaps(wanted) for d, i in kept):
                    continue
                target = desk.desk_id
                kept.append((target, wanted))
                break
        result.append(Stranded(r, why, target, wanted.end))
    return result, sorted(resized, key=lambda s: (s.reservation.start, s.reservation.booking_id))


def stranded(view: CatalogueView, reservations: Iterable[Active], now: datetime) -> list[Stranded]:
    """Every reservation `view` leaves stranded, in start order, each with the desk it could move to."""
    return assess(view, reservations, now)[0]


def locations_touched(view: CatalogueView, change: ev.Event) -> list[str]:
    """The locations whose reservations a catalogue change can strand."""
    match change:
        case ev.DeskDefined() | ev.DeskRemoved() | ev.SchedulePublished() | ev.LocationDefined():
            return [change.location_id]
        case ev.ProductDefined() | ev.ProductRetired():
            return sorted(loc.location_id for loc in view.locations.values() if change.product_id in loc.products)
    return []


def describe(change: ev.Event) -> str:
    """A short name of the change for the history: "desk-removed desk:mc-3"."""
    match change:
        case ev.DeskDefined() | ev.DeskRemoved():
            return f"{change.TYPE} desk:{change.desk_id}"
        case ev.SchedulePublished():
            return f"{change.TYPE} schedule:{change.schedule_id}"
        case ev.LocationDefined():
            return f"{change.TYPE} location:{change.location_id}"
        case ev.ProductDefined() | ev.ProductRetired():
            return f"{change.TYPE} product:{change.product_id}"
    return change.TYPE


def after(view: CatalogueView, changes: Iterable[ev.Event]) -> CatalogueView:
    """A copy of `view` with `changes` applied: the catalogue as it would be (the live view untouched)."""
    copy = CatalogueView()
    copy.replace_with(view)
    for change in changes:
        copy.apply(change)
    return copy


__all__ = ["WHY", "Active", "Stranded", "after", "assess", "describe", "locations_touched", "stranded", "why_stranded"]


def concerns(change: ev.Event, s: Stranded) -> bool:
    """Whether `change` is the change that strands `s` (or resizes it): the one whose choice (move
    or cancel), reason and author apply to it. Changes may land close together, so the view a sweep
    sees can already hold later ones; a booking stranded by a later change is left to that change's
    own sweep. A change is known by what it touches and by what it can cause (`why_stranded`)."""
    r = s.reservation
    match change:
        case ev.DeskRemoved():
            return r.desk_id == change.desk_id and s.why == "desk-removed"
        case ev.DeskDefined():
            return r.desk_id == change.desk_id and s.why in ("not-served", "desk-removed")  # moved away
        case ev.SchedulePublished():
            return r.desk_id == change.desk_id and s.why == "outside-hours"
        case ev.LocationDefined():
            return r.location_id == change.location_id and s.why == "not-offered"
        case ev.ProductDefined():
            # a longer appointment runs past closing or into the next booking, of any product
            own = r.product_id == change.product_id and s.why in ("resized", "outside-hours", "unknown-product")
            return own or s.why == "overlaps"
    return True


def still_offered(view: CatalogueView, desk_id: str, start: datetime, end: datetime) -> bool:
    """Whether the catalogue still opens `desk_id` from `start` to `end` (that day's hours, no
    closure): only such a freed time may be announced to the waiting list."""
    desk = view.desks.get(desk_id)
    if desk is None or view.is_closed(desk.location_id, local_day(start)):
        return False
    return open_for(view, desk_id, Interval(start, end))
