"""The calendar's capacity rules as examples, each at its edges: the booking window (notice and days
ahead), the slot grid from local midnight, which desk a request gets, why a request gets none
('slot-taken' when every desk that is open is busy, 'outside-hours' when none is open), and which
start times availability shows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import pytest

from loket_calendar.domain.schedule import (
    Booked,
    Interval,
    Rejection,
    desk_preference,
    first_on_grid,
    free_desk,
    free_starts,
    on_grid,
    subtract,
    window_ok,
)
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS, CatalogueView

L = ev.Localized(nl="x", en="x", fr="x")
MONDAY = date(2027, 1, 11)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)  # the Monday before, 11:00 in Ghent
SECOND = timedelta(seconds=1)


def at(day: date, hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=BRUSSELS)


def view(grid: int = 10, closed: tuple[date, ...] = ()) -> CatalogueView:
    """One counter with the product's usual window (24 hours of notice, 60 days ahead), open every day:
    desk "a" (the card only) 09:00-12:00, desk "b" (the card and a permit) 09:00-10:00 and 14:00-16:00."""
    v = CatalogueView()
    v.apply(ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=20))
    v.apply(ev.ProductDefined(product_id="permit", name=L, description=L, duration_minutes=30))
    v.apply(ev.ProductDefined(product_id="elsewhere", name=L, description=L, duration_minutes=30))
    v.apply(
        ev.LocationDefined(
            location_id="loc", name="Loc", address="-", products=["card", "permit"], slot_grid_minutes=grid
        )
    )
    v.apply(ev.DeskDefined(desk_id="b", location_id="loc", name="B", products=["card", "permit"]))
    v.apply(ev.DeskDefined(desk_id="a", location_id="loc", name="A", products=["card"]))
    hours = {
        "a": [ev.TimeBlock(start="09:00", end="12:00")],
        "b": [ev.TimeBlock(start="09:00", end="10:00"), ev.TimeBlock(start="14:00", end="16:00")],
    }
    for desk, blocks in hours.items():
        v.apply(
            ev.SchedulePublished(
                schedule_id=f"s-{desk}",
                desk_id=desk,
                location_id="loc",
                effective_from=date(2026, 1, 1),
                weekly={str(d): blocks for d in range(1, 8)},
            )
        )
    for n, day in enumerate(closed):
        v.apply(ev.ClosureDeclared(closure_id=f"c{n}", location_id="loc", day=day, kind="ad-hoc", reason="x"))
    return v


def busy(desk: str, start: datetime, minutes: int = 20) -> Booked:
    return Booked(desk, Interval(start, start + timedelta(minutes=minutes)))


def desk_or_reason(result: ev.DeskDefined | Rejection) -> str:
    return result.reason if isinstance(result, Rejection) else result.desk_id


def decide(
    start: datetime,
    taken: Sequence[Booked] = (),
    now: datetime = NOW,
    product: str = "card",
    v: CatalogueView | None = None,
) -> str:
    return desk_or_reason(free_desk(v or view(), "loc", product, start, taken, now))


# --- the booking window ---------------------------------------------------------------------------


def test_the_notice_period_ends_exactly_24_hours_before_the_start() -> None:
    product = view().products["card"]
    start = at(MONDAY, 9, 0)
    assert window_ok(product, start, start - timedelta(hours=24))
    assert not window_ok(product, start, start - timedelta(hours=24) + SECOND)
    assert not window_ok(product, start, start + timedelta(hours=1))  # a start in the past
    assert decide(start, now=start - timedelta(hours=24)) == "a"
    assert decide(start, now=start - timedelta(hours=23)) == "outside-window"
    assert decide(start, now=start + timedelta(days=1)) == "outside-window"  # never a start in the past


@pytest.mark.parametrize(("days", "inside"), [(59, True), (60, True), (61, False)])
def test_the_window_ends_on_the_60th_day_after_today(days: int, inside: bool) -> None:
    start = at(date(2027, 1, 4) + timedelta(days=days), 9, 0)
    assert window_ok(view().products["card"], start, NOW) is inside
    assert decide(start) == ("a" if inside else "outside-window")


def test_the_window_counts_days_in_ghent() -> None:
    product = view().products["card"]
    late_evening = at(date(2027, 1, 4), 23, 30)  # 22:30 UTC: still the 4th in both
    just_after_midnight = at(date(2027, 1, 5), 0, 30)  # the 5th in Ghent, the 4th in UTC
    day_60 = at(date(2027, 3, 5), 9, 0)
    assert window_ok(product, day_60, late_evening)
    assert window_ok(product, at(date(2027, 3, 6), 9, 0), just_after_midnight)
    assert not window_ok(product, at(date(2027, 3, 6), 9, 0), late_evening)


# --- the grid ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "on"),
    [
        (at(MONDAY, 9, 0), True),
        (at(MONDAY, 9, 10), True),
        (at(MONDAY, 0, 0), True),  # midnight is on every grid
        (at(MONDAY, 9, 5), False),
        (at(MONDAY, 9, 1), False),
        (at(MONDAY, 9, 0, 1), False),  # a second past
        (at(MONDAY, 9, 0, 0, 1), False),  # a microsecond past
    ],
)
def test_starts_lie_on_the_grid_of_the_location(start: datetime, on: bool) -> None:
    assert on_grid(start, 10) is on
    assert on_grid(start.astimezone(UTC), 10) is on  # the same instant in UTC


def test_the_grid_counts_from_midnight_in_ghent() -> None:
    # 10:30 in Ghent is 630 minutes after its midnight, on a 45-minute grid; counted from midnight in
    # UTC (09:30, 570 minutes) it would not be.
    assert on_grid(at(MONDAY, 10, 30), 45)
    assert not on_grid(at(MONDAY, 9, 30), 45)
    assert decide(at(MONDAY, 9, 5)) == "off-grid"


@pytest.mark.parametrize(
    ("instant", "first"),
    [
        (at(MONDAY, 9, 0), at(MONDAY, 9, 0)),  # on the grid: itself
        (at(MONDAY, 9, 0, 1), at(MONDAY, 9, 10)),  # a second past: the next one
        (at(MONDAY, 9, 0, 0, 1), at(MONDAY, 9, 10)),
        (at(MONDAY, 9, 1), at(MONDAY, 9, 10)),
        (at(MONDAY, 9, 9, 59), at(MONDAY, 9, 10)),
        (at(MONDAY, 9, 10, 30), at(MONDAY, 9, 20)),
        (at(MONDAY, 23, 55), at(date(2027, 1, 12), 0, 0)),
    ],
)
def test_the_first_grid_start_at_or_after_an_instant(instant: datetime, first: datetime) -> None:
    assert first_on_grid(instant, 10) == first


# --- desk-times ---------------------------------------------------------------------------------------


def test_taking_a_part_out_of_a_desk_time_leaves_what_is_before_and_after_it() -> None:
    whole = Interval(at(MONDAY, 9, 0), at(MONDAY, 10, 0))
    assert subtract(whole, Interval(at(MONDAY, 9, 20), at(MONDAY, 9, 40))) == [
        Interval(at(MONDAY, 9, 0), at(MONDAY, 9, 20)),
        Interval(at(MONDAY, 9, 40), at(MONDAY, 10, 0)),
    ]
    assert subtract(whole, Interval(at(MONDAY, 9, 0), at(MONDAY, 9, 20))) == [
        Interval(at(MONDAY, 9, 20), at(MONDAY, 10, 0))
    ]
    assert subtract(whole, Interval(at(MONDAY, 9, 40), at(MONDAY, 10, 0))) == [
        Interval(at(MONDAY, 9, 0), at(MONDAY, 9, 40))
    ]
    assert subtract(whole, whole) == []
    assert subtract(whole, Interval(at(MONDAY, 8, 0), at(MONDAY, 11, 0))) == []
    assert subtract(whole, Interval(at(MONDAY, 10, 0), at(MONDAY, 10, 20))) == [whole]  # touching is not taking


# --- which desk a request gets, or why none -------------------------------------------------------------


def test_the_most_specialised_desk_is_chosen_first() -> None:
    v = view()
    desks = sorted(v.desks_for("loc", "card"), key=desk_preference)
    assert [d.desk_id for d in desks] == ["a", "b"]  # "a" serves one product, "b" two
    assert desk_preference(v.desks["a"]) < desk_preference(v.desks["b"])
    assert decide(at(MONDAY, 9, 0)) == "a"  # both are open: "b" stays free for the permit
    assert decide(at(MONDAY, 9, 0), [busy("a", at(MONDAY, 9, 0))]) == "b"


def test_between_equally_specialised_desks_the_first_by_id() -> None:
    one = ev.DeskDefined(desk_id="x2", location_id="loc", name="", products=["card"])
    two = ev.DeskDefined(desk_id="x1", location_id="loc", name="", products=["card"])
    assert sorted([one, two], key=desk_preference) == [two, one]


def test_a_desk_is_free_unless_a_booking_on_it_overlaps() -> None:
    start = at(MONDAY, 9, 20)
    assert decide(start, [busy("a", at(MONDAY, 9, 0))]) == "a"  # 09:00-09:20 ends as this one starts
    assert decide(start, [busy("a", at(MONDAY, 9, 40))]) == "a"  # starts as this one ends
    assert decide(start, [busy("a", at(MONDAY, 9, 10))]) == "b"  # 09:10-09:30 overlaps
    assert decide(start, [busy("b", start)]) == "a"  # a booking at another desk is no concern


def test_when_every_open_desk_is_busy_the_slot_is_taken() -> None:
    start = at(MONDAY, 9, 0)
    assert decide(start, [busy("a", start), busy("b", start)]) == "slot-taken"
    # Only "a" is open at 11:00, and it is busy: taken, not outside the hours.
    assert decide(at(MONDAY, 11, 0), [busy("a", at(MONDAY, 11, 0))]) == "slot-taken"
    # The permit is served by "b" alone.
    assert decide(at(MONDAY, 14, 0), [busy("b", at(MONDAY, 14, 0), 30)], product="permit") == "slot-taken"


@pytest.mark.parametrize(
    ("hh", "mm", "result"),
    [
        (11, 40, "a"),  # ends 12:00, as desk "a" closes
        (11, 50, "outside-hours"),  # would end 12:10
        (8, 50, "outside-hours"),
        (12, 0, "outside-hours"),  # the lunch break
        (13, 50, "outside-hours"),  # ends 14:10, desk "b" opens at 14:00
        (14, 0, "b"),
        (15, 40, "b"),
        (15, 50, "outside-hours"),
    ],
)
def test_a_slot_lies_wholly_inside_a_desks_hours(hh: int, mm: int, result: str) -> None:
    assert decide(at(MONDAY, hh, mm)) == result


def test_outside_the_hours_stays_outside_however_busy_the_desks_are() -> None:
    start = at(MONDAY, 12, 0)
    assert decide(start, [busy("a", at(MONDAY, 11, 40)), busy("b", at(MONDAY, 9, 40))]) == "outside-hours"


def test_why_a_request_gets_no_desk_in_the_order_a_resident_can_fix_it() -> None:
    v = view(closed=(MONDAY,))
    assert desk_or_reason(free_desk(v, "loc", "nope", at(MONDAY, 9, 0), [], NOW)) == "unknown-product"
    assert desk_or_reason(free_desk(v, "nowhere", "card", at(MONDAY, 9, 0), [], NOW)) == "unknown-location"
    assert desk_or_reason(free_desk(v, "loc", "elsewhere", at(MONDAY, 9, 0), [], NOW)) == "not-offered"
    assert decide(at(MONDAY, 9, 5), v=v) == "off-grid"
    assert decide(at(MONDAY, 9, 0), now=at(MONDAY, 9, 0), v=v) == "outside-window"
    assert decide(at(MONDAY, 9, 0), v=v) == "closed"
    assert decide(at(MONDAY + timedelta(days=1), 9, 0), v=v) == "a"  # the next day is open


# --- the start times availability shows -------------------------------------------------------------------


def starts(
    day: date = MONDAY,
    taken: Sequence[Booked] = (),
    now: datetime | None = NOW,
    product: str = "card",
    v: CatalogueView | None = None,
) -> list[str]:
    found = free_starts(v or view(), "loc", product, day, taken, now)
    assert all(s.end - s.start == timedelta(minutes=20 if product == "card" else 30) for s in found)
    return [s.start.astimezone(BRUSSELS).strftime("%H:%M") for s in found]


def test_every_grid_start_with_room_at_some_desk_is_shown_once() -> None:
    shown = starts()
    # Desk "a" 09:00-11:40 (the last that ends by 12:00), desk "b" 09:00-09:40 and 14:00-15:40.
    expected = [f"{h:02d}:{m:02d}" for h in (9, 10, 11) for m in range(0, 60, 10) if (h, m) <= (11, 40)]
    expected += [f"{h:02d}:{m:02d}" for h in (14, 15) for m in range(0, 60, 10) if (h, m) <= (15, 40)]
    assert shown == expected


def test_a_start_is_shown_while_one_desk_is_free_for_it() -> None:
    assert "09:00" in starts(taken=[busy("a", at(MONDAY, 9, 0))])  # desk "b" is free
    taken = [busy("a", at(MONDAY, 9, 0)), busy("b", at(MONDAY, 9, 0))]
    assert "09:00" not in starts(taken=taken)
    assert "09:20" in starts(taken=taken)  # the bookings end at 09:20
    assert "08:50" not in starts(taken=taken)
    # 09:10-09:30 would overlap both bookings.
    assert "09:10" not in starts(taken=taken)


def test_starts_begin_after_the_notice_period_on_the_grid() -> None:
    now = at(MONDAY, 9, 5) - timedelta(hours=24)  # the earliest start is 09:05: shown from 09:10
    assert starts(now=now)[0] == "09:10"
    now = at(MONDAY, 9, 0) - timedelta(hours=24)  # exactly 24 hours before 09:00: 09:00 is shown
    assert starts(now=now)[0] == "09:00"
    assert starts(now=at(MONDAY, 14, 0) - timedelta(hours=24))[0] == "14:00"
    assert starts(now=at(MONDAY, 16, 0) - timedelta(hours=24)) == []


def test_the_last_day_of_the_window_is_shown_and_the_day_after_is_not() -> None:
    assert starts(day=date(2027, 3, 5))  # 60 days after 4 January
    assert starts(day=date(2027, 3, 6)) == []
    assert starts(day=date(2027, 3, 6), now=None)  # a cache that applies the window itself gets them all


def test_no_starts_on_a_closed_day_or_for_what_the_location_does_not_offer() -> None:
    assert starts(v=view(closed=(MONDAY,))) == []
    assert starts(day=MONDAY + timedelta(days=1), v=view(closed=(MONDAY,)))
    assert free_starts(view(), "loc", "elsewhere", MONDAY, [], NOW) == []
    assert free_starts(view(), "loc", "nope", MONDAY, [], NOW) == []
    assert free_starts(view(), "nowhere", "card", MONDAY, [], NOW) == []


def test_without_now_every_start_of_the_day_is_shown() -> None:
    assert starts(now=None) == starts()
    assert starts(day=date(2027, 1, 4), now=None)[0] == "09:00"  # today: also what lies within the notice


def test_a_longer_product_needs_a_longer_room() -> None:
    # The permit (30 minutes) at desk "b": 09:00-09:30 and 14:00-15:30 on the 10-minute grid.
    assert starts(product="permit") == [
        "09:00",
        "09:10",
        "09:20",
        "09:30",
        "14:00",
        "14:10",
        "14:20",
        "14:30",
        "14:40",
        "14:50",
        "15:00",
        "15:10",
        "15:20",
        "15:30",
    ]
    taken = [busy("b", at(MONDAY, 14, 30), 30)]
    assert starts(product="permit", taken=taken) == [
        "09:00",
        "09:10",
        "09:20",
        "09:30",
        "14:00",
        "15:00",
        "15:10",
        "15:20",
        "15:30",
    ]


def test_a_coarser_grid_offers_fewer_starts() -> None:
    assert starts(product="permit", v=view(grid=30)) == ["09:00", "09:30", "14:00", "14:30", "15:00", "15:30"]


def test_the_grid_counts_whole_hours_from_midnight_too() -> None:
    # A 45-minute grid does not divide an hour: 10:05 comes after 09:45 and before 10:30.
    instant = datetime(2026, 3, 30, 10, 5, tzinfo=BRUSSELS)
    assert first_on_grid(instant, 45) == datetime(2026, 3, 30, 10, 30, tzinfo=BRUSSELS)
