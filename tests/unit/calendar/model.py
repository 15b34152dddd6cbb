"""A small in-memory calendar for the property tests: the pure domain's decisions applied to a dict
of reservations, with the same rules as the allocator (holds expire at the deciding event's time,
freed desk-times are kept back, a reschedule frees only what it no longer covers).

Every decision is also written out as the events the allocator would emit, so the agenda fold
can be replayed from them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from loket_calendar.domain.schedule import Booked, CatalogueView, Interval, Rejection, free_desk, subtract
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS

NAMES = {"nl": "x", "en": "x", "fr": "x"}


def product(product_id: str, minutes: int, confirm: bool = False) -> ev.ProductDefined:
    return ev.ProductDefined(
        product_id=product_id,
        name=NAMES,
        description=NAMES,
        duration_minutes=minutes,
        requires_confirmation=confirm,
        hold_minutes=30,
        min_notice_hours=0,
        max_days_ahead=400,
    )  # type: ignore[arg-type]


def blocks(*pairs: tuple[str, str]) -> list[ev.TimeBlock]:
    return [ev.TimeBlock(start=s, end=e) for s, e in pairs]


def make_view(closed: tuple[date, ...] = (), every_day: bool = False) -> CatalogueView:
    """One location, three desks with different products and hours, a 10-minute grid."""
    view = CatalogueView()
    for p in (product("short", 10), product("card", 20), product("long", 45, confirm=True)):
        view.apply(p)
    view.apply(
        ev.LocationDefined(
            location_id="loc", name="Loc", address="-", products=["short", "card", "long"], slot_grid_minutes=10
        )
    )
    view.apply(ev.DeskDefined(desk_id="d1", location_id="loc", name="1", products=["short", "card", "long"]))
    view.apply(ev.DeskDefined(desk_id="d2", location_id="loc", name="2", products=["short", "card"]))
    view.apply(ev.DeskDefined(desk_id="d3", location_id="loc", name="3", products=["long"]))
    days = range(1, 8) if every_day else (1, 2, 3, 5)
    hours = {
        "d1": blocks(("09:00", "12:30"), ("14:00", "16:00")),
        "d2": blocks(("09:00", "11:00")),
        "d3": blocks(("13:00", "17:00")),
    }
    for desk_id, desk_blocks in hours.items():
        view.apply(
            ev.SchedulePublished(
                schedule_id=f"s-{desk_id}",
                desk_id=desk_id,
                location_id="loc",
                effective_from=date(2026, 1, 1),
                weekly={str(d): desk_blocks for d in days},
            )
        )
    for n, day in enumerate(closed):
        view.apply(ev.ClosureDeclared(closure_id=f"c{n}", location_id="loc", day=day, kind="ad-hoc", reason="closed"))
    return view


@dataclass
class Reservation:
    desk_id: str
    product_id: str
    interval: Interval
    hold_expires_at: datetime | None


@dataclass
class Calendar:
    view: CatalogueView
    holdback: timedelta = timedelta(0)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    held_back: list[tuple[str, Interval, datetime]] = field(default_factory=list)
    events: list[tuple[datetime, str, ev.Event]] = field(default_factory=list)  # (time, id, event)
    decisions: list[tuple[str, Any]] = field(default_factory=list)
    _ids: int = 0

    def _emit(self, at: datetime, event: ev.Event) -> None:
        self._ids += 1
        self.events.append((at, f"{self._ids:08d}", event))

    def taken(self, now: datetime, ignore: str | None = None) -> list[Booked]:
        booked = [Booked(r.desk_id, r.interval) for b, r in self.reservations.items() if b != ignore]
        return booked + [Booked(d, i) for d, i, available in self.held_back if available > now]

    def expire(self, now: datetime) -> None:
        for booking_id, r in sorted(self.reservations.items()):
            if r.hold_expires_at is not None and r.hold_expires_at <= now:
                del self.reservations[booking_id]
                self._emit(
                    now,
                    ev.HoldExpired(
                        booking_id=booking_id,
                        location_id="loc",
                        desk_id=r.desk_id,
                        start=r.interval.start,
                        end=r.interval.end,
                    ),
                )
                self._release(r.desk_id, r.interval, r.hold_expires_at)

    def _release(self, desk_id: str, interval: Interval, at: datetime) -> None:
        if self.holdback:
            self.held_back.append((desk_id, interval, at + self.holdback))

    def request(self, booking_id: str, product_id: str, start: datetime, now: datetime) -> None:
        self._emit(
            now,
            ev.BookingRequested(
                booking_id=booking_id,
                location_id="loc",
                product_id=product_id,
                start=start,
                end=start + timedelta(minutes=self.view.products[product_id].duration_minutes),
                person=ev.PersonName(given_name="G", family_name=booking_id),
                requested_at=now,
            ),
        )
        self.expire(now)
        choice = free_desk(self.view, "loc", product_id, start, self.taken(now), now)
        self.decisions.append((booking_id, choice if isinstance(choice, Rejection) else choice.desk_id))
        if isinstance(choice, Rejection):
            self._emit(
                now,
                ev.SlotRejected(
                    booking_id=booking_id, location_id="loc", product_id=product_id, start=start, reason=choice.reason
                ),
            )
            return
        p = self.view.products[product_id]
        interval = Interval(start, start + timedelta(minutes=p.duration_minutes))
        hold = now + timedelta(minutes=p.hold_minutes) if p.requires_confirmation else None
        self.reservations[booking_id] = Reservation(choice.desk_id, product_id, interval, hold)
        self._emit(
            now,
            ev.SlotReserved(
                booking_id=booking_id,
                location_id="loc",
                product_id=product_id,
                desk_id=choice.desk_id,
                start=interval.start,
                end=interval.end,
                hold_expires_at=hold,
            ),
        )

    def cancel(self, booking_id: str, now: datetime) -> None:
        r = self.reservations.pop(booking_id, None)
        if r is None:
            return
        self._emit(
            now,
            ev.BookingCancelled(
                booking_id=booking_id,
                location_id="loc",
                product_id=r.product_id,
                desk_id=r.desk_id,
                start=r.interval.start,
                end=r.interval.end,
                cancelled_by="resident",
                reason="-",
                cancelled_at=now,
            ),
        )
        self._release(r.desk_id, r.interval, now)

    def reschedule(self, booking_id: str, new_start: datetime, now: datetime) -> None:
        self.expire(now)
        r = self.reservations.get(booking_id)
        if r is None:
            return
        choice = free_desk(self.view, "loc", r.product_id, new_start, self.taken(now, ignore=booking_id), now)
        self.decisions.append(
            (f"{booking_id}@{new_start.isoformat()}", choice if isinstance(choice, Rejection) else choice.desk_id)
        )
        if isinstance(choice, Rejection):
            return
        moved = Interval(new_start, new_start + (r.interval.end - r.interval.start))
        old = r.interval
        self.reservations[booking_id] = Reservation(choice.desk_id, r.product_id, moved, r.hold_expires_at)
        self._emit(
            now,
            ev.RescheduleReserved(
                booking_id=booking_id,
                request_id=f"r{len(self.events)}",
                location_id="loc",
                product_id=r.product_id,
                desk_id=choice.desk_id,
                old_start=old.start,
                start=moved.start,
                end=moved.end,
            ),
        )
        kept = moved if choice.desk_id == r.desk_id else Interval(old.end, old.end)
        for piece in subtract(old, kept):
            self._release(r.desk_id, piece, now)


def at(day: date, hh: int, mm: int) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=BRUSSELS)
