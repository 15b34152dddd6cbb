"""Which active reservations a catalogue change strands, and where each can go (issue 17): a removed
desk, hours that no longer cover a booking, a desk or location that stops with the product, a
duration that runs into the next booking; past bookings and closures are left alone."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from loket_calendar.domain.stranding import Active, after, assess, describe, locations_touched, stranded, why_stranded
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS, CatalogueView

L = ev.Localized(nl="x", en="x", fr="x")
MONDAY = date(2027, 1, 11)
NOW = datetime(2027, 1, 4, 10, 0, tzinfo=UTC)
DAY = [ev.TimeBlock(start="09:00", end="12:00")]
EVENING = [ev.TimeBlock(start="17:00", end="20:00")]


def at(hh: int, mm: int, day: date = MONDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=BRUSSELS)


def hours(desk: str, blocks: list[ev.TimeBlock], since: date = date(2027, 1, 1)) -> ev.SchedulePublished:
    return ev.SchedulePublished(
        schedule_id=f"{desk}:{since}",
        desk_id=desk,
        location_id="loc",
        effective_from=since,
        weekly={str(d): blocks for d in range(1, 8)},
    )


def view(desks: dict[str, list[str]] | None = None) -> CatalogueView:
    """Location "loc" offering "card" (20 min) and "permit"; desk "a" serves the card only, "b" both."""
    v = CatalogueView()
    v.apply(ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=20))
    v.apply(ev.ProductDefined(product_id="permit", name=L, description=L, duration_minutes=30))
    v.apply(ev.LocationDefined(location_id="loc", name="L", address="-", products=["card", "permit"]))
    for desk, products in (desks or {"a": ["card"], "b": ["card", "permit"]}).items():
        v.apply(ev.DeskDefined(desk_id=desk, location_id="loc", name=desk, products=products))
        v.apply(hours(desk, DAY))
    return v


def booked(booking: str, desk: str, start: datetime, minutes: int = 20, product: str = "card") -> Active:
    return Active(booking, "loc", desk, product, start, start + timedelta(minutes=minutes))


def test_nothing_is_stranded_while_the_catalogue_still_allows_every_booking() -> None:
    assert stranded(view(), [booked("x", "a", at(9, 0)), booked("y", "b", at(9, 0))], NOW) == []


def test_a_removed_desk_strands_its_bookings_and_they_move_to_a_free_desk_that_serves_them() -> None:
    v = after(view(), [ev.DeskRemoved(desk_id="a", location_id="loc")])
    [s] = stranded(v, [booked("x", "a", at(9, 0))], NOW)
    assert (s.why, s.move_to, s.end) == ("desk-removed", "b", at(9, 20))


def test_no_free_desk_at_that_time_means_it_cannot_move() -> None:
    v = after(view(), [ev.DeskRemoved(desk_id="a", location_id="loc")])
    found = stranded(v, [booked("x", "a", at(9, 0)), booked("y", "b", at(9, 10))], NOW)
    assert [(s.reservation.booking_id, s.move_to) for s in found] == [("x", None)]


def test_two_stranded_bookings_at_one_time_do_not_both_get_the_one_free_desk() -> None:
    v = after(view({"a": ["card"], "b": ["card"], "c": ["card"]}), [ev.DeskRemoved(desk_id="a", location_id="loc")])
    v = after(v, [ev.DeskRemoved(desk_id="c", location_id="loc")])
    found = stranded(v, [booked("x", "a", at(9, 0)), booked("y", "c", at(9, 10))], NOW)
    assert [(s.reservation.booking_id, s.move_to) for s in found] == [("x", "b"), ("y", None)]


def test_new_hours_that_do_not_cover_an_evening_booking_strand_it() -> None:
    v = view({"a": ["card"]})
    v.apply(hours("a", EVENING))
    evening = booked("x", "a", at(18, 0))
    assert why_stranded(v, evening) is None
    proposed = after(v, [hours("a", DAY, since=date(2027, 1, 10))])
    [s] = stranded(proposed, [evening], NOW)
    assert (s.why, s.move_to) == ("outside-hours", None)
    # Hours from a later date leave it alone; so does a version that still covers 18:00-18:20.
    assert stranded(after(v, [hours("a", DAY, since=date(2027, 1, 12))]), [evening], NOW) == []
    late = [ev.TimeBlock(start="18:00", end="18:20")]
    assert stranded(after(v, [hours("a", late, since=date(2027, 1, 10))]), [evening], NOW) == []


def test_a_booking_ending_exactly_when_the_desk_closes_still_fits() -> None:
    v = after(view(), [hours("a", [ev.TimeBlock(start="09:00", end="09:20")], since=date(2027, 1, 10))])
    assert stranded(v, [booked("x", "a", at(9, 0))], NOW) == []
    [s] = stranded(v, [booked("x", "a", at(9, 10))], NOW)
    assert (s.why, s.move_to) == ("outside-hours", "b")


def test_a_desk_that_stops_serving_the_product_and_a_location_that_stops_offering_it() -> None:
    v = after(view(), [ev.DeskDefined(desk_id="a", location_id="loc", name="a", products=[])])
    [s] = stranded(v, [booked("x", "a", at(9, 0))], NOW)
    assert (s.why, s.move_to) == ("not-served", "b")
    v = after(view(), [ev.LocationDefined(location_id="loc", name="L", address="-", products=["permit"])])
    [s] = stranded(v, [booked("x", "a", at(9, 0))], NOW)
    assert (s.why, s.move_to) == ("not-offered", None)  # nowhere at this location serves it now


def test_a_longer_duration_strands_the_later_of_two_bookings_that_now_meet() -> None:
    v = after(view(), [ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=40)])
    first, second = booked("x", "a", at(9, 0)), booked("y", "a", at(9, 20))
    found, resized = assess(v, [first, second], NOW)
    assert [(s.reservation.booking_id, s.why, s.move_to, s.end) for s in found] == [("y", "overlaps", "b", at(10, 0))]
    assert [(s.reservation.booking_id, s.why, s.move_to, s.end) for s in resized] == [("x", "resized", "a", at(9, 40))]


def test_a_grown_booking_never_strands_one_whose_product_did_not_change() -> None:
    v = after(view(), [ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=40)])
    card, permit = booked("x", "b", at(9, 0)), booked("y", "b", at(9, 20), 30, "permit")
    [s] = stranded(v, [card, permit], NOW)
    assert (s.reservation.booking_id, s.why, s.move_to) == ("x", "overlaps", "a")


def test_a_duration_past_closing_time_strands_it() -> None:
    v = after(view(), [ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=40)])
    [s] = stranded(v, [booked("x", "a", at(11, 40)), booked("y", "b", at(11, 0))], NOW)
    assert (s.reservation.booking_id, s.why, s.move_to) == ("x", "outside-hours", None)


def test_bookings_already_under_way_are_left_alone_but_still_occupy_their_desk() -> None:
    v = after(view(), [ev.DeskRemoved(desk_id="a", location_id="loc")])
    now = at(9, 5).astimezone(UTC)
    running = booked("x", "a", at(9, 0))
    under_way_on_b = booked("z", "b", at(9, 0))
    found = stranded(v, [running, under_way_on_b, booked("y", "a", at(9, 10))], now)
    assert [(s.reservation.booking_id, s.move_to) for s in found] == [("y", None)]


def test_the_change_names_its_locations_and_itself() -> None:
    v = view()
    assert locations_touched(v, ev.DeskRemoved(desk_id="a", location_id="loc")) == ["loc"]
    assert locations_touched(v, ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=5)) == [
        "loc"
    ]
    assert locations_touched(v, ev.ClosureLifted(closure_id="c", location_id=None, day=MONDAY)) == []
    assert describe(ev.DeskRemoved(desk_id="a", location_id="loc")) == "desk-removed desk:a"
    assert describe(hours("a", DAY)) == "schedule-published schedule:a:2027-01-01"


def test_a_dry_run_leaves_the_live_view_untouched() -> None:
    v = view()
    after(v, [ev.DeskRemoved(desk_id="a", location_id="loc")])
    assert "a" in v.desks
