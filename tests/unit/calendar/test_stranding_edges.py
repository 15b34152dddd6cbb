"""Stranded reservations at the edges: one that starts exactly now (still ahead, so still moved),
hours that now open after a booking starts, a grown booking beside a booking at another desk, and a
stranded booking that moves to a desk listed before its own."""

from __future__ import annotations

from datetime import UTC, date, timedelta

from loket_calendar.domain.stranding import Active, Stranded, after, assess, concerns, stranded, why_stranded
from loket_contracts import events as ev
from tests.unit.calendar.test_stranding_rules import DAY, NOW, L, at, booked, hours, view


def test_a_booking_starting_exactly_now_is_still_ahead_and_is_moved() -> None:
    v = after(view(), [ev.DeskRemoved(desk_id="a", location_id="loc")])
    now = at(9, 0).astimezone(UTC)
    [s] = stranded(v, [booked("x", "a", at(9, 0))], now)
    assert (s.reservation.booking_id, s.why, s.move_to) == ("x", "desk-removed", "b")
    # A second later it is under way: left as it is.
    assert stranded(v, [booked("x", "a", at(9, 0))], now + timedelta(seconds=1)) == []


def test_hours_that_now_open_after_the_booking_starts_strand_it() -> None:
    later = [ev.TimeBlock(start="09:30", end="12:00")]
    v = after(view(), [hours("a", later, since=date(2027, 1, 10))])
    [s] = stranded(v, [booked("x", "a", at(9, 0))], NOW)
    assert (s.why, s.move_to) == ("outside-hours", "b")
    assert stranded(v, [booked("y", "a", at(9, 30))], NOW) == []  # from the new opening on it fits


def test_a_grown_booking_does_not_overlap_one_at_another_desk() -> None:
    v = after(view(), [ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=40)])
    on_a, on_b = booked("x", "a", at(9, 0)), booked("y", "b", at(9, 20), 30, "permit")
    found, resized = assess(v, [on_a, on_b], NOW)
    assert found == []
    assert [(s.reservation.booking_id, s.why, s.move_to, s.end) for s in resized] == [("x", "resized", "a", at(9, 40))]


def test_a_stranded_booking_moves_to_the_most_specialised_free_desk_whatever_its_own_desk_is() -> None:
    v = view({"a": ["card"], "b": ["card", "permit"], "c": ["card"]})
    v = after(v, [hours("c", [ev.TimeBlock(start="14:00", end="16:00")], since=date(2027, 1, 10))])
    [s] = stranded(v, [booked("x", "c", at(9, 0))], NOW)
    assert (s.why, s.move_to) == ("outside-hours", "a")


def test_a_reservation_with_a_retired_product_keeps_its_own_span() -> None:
    v = after(view(), [ev.ProductRetired(product_id="card")])
    r = Active("x", "loc", "a", "card", at(9, 0), at(9, 25))
    [s] = stranded(v, [r], NOW)
    assert (s.why, s.move_to, s.end) == ("unknown-product", None, at(9, 25))


def test_reservations_are_listed_in_start_order_then_by_booking() -> None:
    v = after(view({"a": ["card"], "b": ["card"]}), [ev.DeskRemoved(desk_id="a", location_id="loc")])
    v = after(v, [hours("b", DAY)])
    found = stranded(v, [booked("z", "a", at(10, 0)), booked("y", "a", at(9, 0)), booked("x", "a", at(10, 0))], NOW)
    assert [s.reservation.booking_id for s in found] == ["y", "x", "z"]


def test_a_booking_starting_exactly_now_does_not_overlap_itself() -> None:
    # Nothing changed: a booking that starts this very instant still fits where it is.
    assert stranded(view(), [booked("x", "a", at(9, 0))], at(9, 0).astimezone(UTC)) == []


def test_a_desk_now_at_another_location_is_gone_from_this_one() -> None:
    for elsewhere in ("elsewhere", "zone-2"):  # sorting before and after "loc"
        v = after(view(), [ev.DeskDefined(desk_id="a", location_id=elsewhere, name="a", products=["card"])])
        assert why_stranded(v, booked("x", "a", at(9, 0))) == "desk-removed"


def test_a_desk_closed_then_is_passed_over_for_the_next_free_one() -> None:
    v = view({"a": ["card"], "b": ["card", "permit"], "c": ["card"]})
    v = after(
        v, [hours("c", [ev.TimeBlock(start="14:00", end="16:00")]), ev.DeskRemoved(desk_id="a", location_id="loc")]
    )
    [s] = stranded(v, [booked("x", "a", at(9, 0))], NOW)  # "c" comes first (one product) but is closed at 09:00
    assert (s.why, s.move_to) == ("desk-removed", "b")


def stranded_on_a(why: str) -> Stranded:
    return Stranded(booked("x", "a", at(9, 0)), why, None, at(9, 20))


def test_a_desk_change_concerns_only_the_bookings_of_that_desk_it_can_strand() -> None:
    removed = ev.DeskRemoved(desk_id="a", location_id="loc")
    assert concerns(removed, stranded_on_a("desk-removed"))
    assert not concerns(removed, stranded_on_a("outside-hours"))  # the removal did not change its hours
    for other in ("0", "b"):  # desks sorting before and after "a"
        assert not concerns(ev.DeskRemoved(desk_id=other, location_id="loc"), stranded_on_a("desk-removed"))
        redefined = ev.DeskDefined(desk_id=other, location_id="loc", name=other, products=[])
        assert not concerns(redefined, stranded_on_a("not-served"))
        assert not concerns(hours(other, DAY), stranded_on_a("outside-hours"))
    redefined = ev.DeskDefined(desk_id="a", location_id="loc", name="a", products=[])
    assert concerns(redefined, stranded_on_a("not-served")) and concerns(redefined, stranded_on_a("desk-removed"))
    assert not concerns(redefined, stranded_on_a("outside-hours"))


def test_a_location_change_concerns_only_what_it_stopped_offering() -> None:
    location = ev.LocationDefined(location_id="loc", name="L", address="-", products=["permit"])
    assert concerns(location, stranded_on_a("not-offered"))
    assert not concerns(location, stranded_on_a("desk-removed"))
    assert not concerns(location, stranded_on_a("outside-hours"))
