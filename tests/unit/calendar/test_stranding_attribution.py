"""Two catalogue changes that land close together (issue 17): each stranded booking is resolved by
the change that stranded it, with that change's choice, reason and author, never by another that
happened to be swept first; and a time withdrawn by a change is never offered to the waiting list."""

from __future__ import annotations

from loket_calendar.domain.stranding import Stranded, after, assess, concerns, still_offered, stranded
from loket_contracts import events as ev
from tests.unit.calendar.test_stranding_rules import DAY, EVENING, NOW, L, at, booked, hours, view


def test_a_desk_removal_is_resolved_by_that_removal_not_by_a_product_change_swept_first() -> None:
    product_again = ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=20)
    removal = ev.DeskRemoved(desk_id="a", location_id="loc")
    v = after(view(), [product_again, removal])  # the sweep of the first sees the view of both
    [s] = stranded(v, [booked("x", "a", at(9, 0))], NOW)
    assert not concerns(product_again, s)  # the product did not change anything for it
    assert concerns(removal, s)


def on_a(why: str) -> Stranded:
    """A card booking on desk "a" at 09:00, stranded for `why`."""
    return Stranded(booked("x", "a", at(9, 0)), why, None, at(9, 20))


def test_each_change_concerns_what_it_can_strand_on_what_it_touches() -> None:
    assert concerns(hours("a", EVENING), on_a("outside-hours"))
    assert not concerns(hours("b", EVENING), on_a("outside-hours"))  # another desk's hours
    assert not concerns(hours("a", EVENING), on_a("desk-removed"))  # hours do not remove a desk
    assert concerns(ev.DeskDefined(desk_id="a", location_id="loc", name="a", products=[]), on_a("not-served"))
    assert concerns(ev.LocationDefined(location_id="loc", name="L", address="-", products=[]), on_a("not-offered"))
    elsewhere = ev.LocationDefined(location_id="elsewhere", name="E", address="-", products=[])
    assert not concerns(elsewhere, on_a("not-offered"))
    longer_permit = ev.ProductDefined(product_id="permit", name=L, description=L, duration_minutes=60)
    assert not concerns(longer_permit, on_a("outside-hours"))  # a card booking's hours are not the permit's
    assert concerns(longer_permit, on_a("overlaps"))  # a longer permit runs into it


def test_a_longer_product_concerns_the_other_products_booking_it_now_runs_into() -> None:
    v = after(view(), [ev.ProductDefined(product_id="permit", name=L, description=L, duration_minutes=60)])
    active = [booked("p", "b", at(9, 0), 30, "permit"), booked("c", "b", at(9, 40))]
    found, resized = assess(v, active, NOW)
    longer = ev.ProductDefined(product_id="permit", name=L, description=L, duration_minutes=60)
    assert all(concerns(longer, s) for s in [*found, *resized]) and [*found, *resized]


def test_only_a_time_the_catalogue_still_opens_may_be_offered_to_the_waiting_list() -> None:
    v = view()
    assert still_offered(v, "a", at(9, 0), at(9, 20))
    assert not still_offered(after(v, [ev.DeskRemoved(desk_id="a", location_id="loc")]), "a", at(9, 0), at(9, 20))
    assert not still_offered(after(v, [hours("a", EVENING)]), "a", at(9, 0), at(9, 20))  # new hours
    assert still_offered(after(v, [hours("a", DAY)]), "a", at(11, 40), at(12, 0))  # up to closing, not past
    assert not still_offered(v, "a", at(11, 50), at(12, 10))
    closed = ev.ClosureDeclared(closure_id="c1", location_id="loc", day=at(9, 0).date(), kind="ad-hoc", reason="x")
    assert not still_offered(after(v, [closed]), "a", at(9, 0), at(9, 20))
