"""Known-full starts: which requests the booking service refuses itself, and when it asks again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loket_booking.domain.known_full import KnownFullStarts
from loket_contracts import events as ev
from loket_runtime.clock import BRUSSELS

T0 = datetime(2026, 3, 30, 8, 0, tzinfo=UTC)  # 10:00 in Brussels, the Monday after the spring change
START = datetime(2026, 4, 2, 7, 0, tzinfo=UTC)
NEXT = START + timedelta(minutes=20)
LATER = START + timedelta(minutes=40)
TTL = timedelta(seconds=30)


def slot(start: datetime, location: str = "migration-counter") -> ev.Slot:
    return ev.Slot(start=start, end=start + timedelta(minutes=20), location_id=location)


def rejected(
    start: datetime = START,
    reason: str = "slot-taken",
    alternatives: tuple[ev.Slot, ...] = (slot(NEXT), slot(LATER)),
    product: str = "residence-card",
) -> ev.SlotRejected:
    return ev.SlotRejected(
        booking_id="b-1",
        location_id="migration-counter",
        product_id=product,
        start=start,
        reason=reason,  # type: ignore[arg-type]
        alternatives=list(alternatives),
    )


def released(
    products: list[str], location: str = "migration-counter", available_from: datetime = T0
) -> ev.SlotReleased:
    return ev.SlotReleased(
        location_id=location,
        desk_id="mc-1",
        start=START,
        end=START + timedelta(minutes=20),
        products=products,
        available_from=available_from,
        cause="cancelled",
    )


def refusal(known: KnownFullStarts, start: datetime = START, now: datetime = T0, generation: int = 1) -> object:
    return known.refusal("migration-counter", "residence-card", start, now, generation)


def test_a_start_the_allocator_declared_full_is_refused_with_its_alternatives() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known) == [slot(NEXT), slot(LATER)]


def test_the_same_instant_written_in_brussels_time_is_the_same_start() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known, start=START.astimezone(BRUSSELS)) is not None  # 09:00+02:00


def test_only_slot_taken_marks_a_start_full() -> None:
    known = KnownFullStarts(TTL)
    for reason in (
        "outside-hours",
        "closed",
        "not-offered",
        "outside-window",
        "off-grid",
        "unknown-product",
        "unknown-location",
    ):
        known.on_rejected(rejected(reason=reason), T0, generation=1)
    assert refusal(known) is None


def test_unknown_starts_other_products_and_other_locations_go_to_the_allocator() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known, start=NEXT) is None
    assert known.refusal("migration-counter", "orange-card", START, T0, 1) is None
    assert known.refusal("service-centre-north", "residence-card", START, T0, 1) is None


def test_a_release_of_a_desk_time_for_the_product_asks_the_allocator_again() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_released(released(["residence-card", "orange-card"]))
    assert refusal(known) is None


def test_a_release_for_other_products_or_another_location_keeps_the_mark() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_released(released(["orange-card"]))
    known.on_released(released(["residence-card"], location="service-centre-north"))
    known.on_released(released(["residence-card"], location="ledeberg"))
    assert refusal(known) is not None


def test_a_catalogue_change_asks_the_allocator_again() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known, generation=2) is None
    assert refusal(known, generation=1) is None  # the mark is gone, not just hidden
    known.on_rejected(rejected(), T0, generation=3)
    assert refusal(known, generation=2) is None  # made under another catalogue than the one asked of


def test_a_mark_lasts_exactly_its_ttl() -> None:
    known = KnownFullStarts(ttl=timedelta(seconds=30))
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known, now=T0 + timedelta(seconds=29, microseconds=999_999)) is not None
    assert refusal(known, now=T0 + timedelta(seconds=30)) is None
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known, now=T0 + timedelta(seconds=31)) is None


def test_alternatives_that_are_full_themselves_are_left_out() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_rejected(rejected(start=NEXT, alternatives=(slot(LATER),)), T0, generation=1)
    assert refusal(known) == [slot(LATER)]


def test_a_newer_rejection_replaces_the_alternatives() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_rejected(rejected(alternatives=(slot(LATER),)), T0 + timedelta(seconds=5), generation=1)
    assert refusal(known, now=T0 + timedelta(seconds=32)) == [slot(LATER)]  # its ttl counts from the newer one


def test_an_alternative_taken_since_is_not_offered_any_more() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_reserved("migration-counter", NEXT + timedelta(minutes=5), NEXT + timedelta(minutes=15))  # overlaps
    known.on_reserved("service-centre-north", LATER, LATER + timedelta(minutes=20))  # elsewhere
    known.on_reserved("migration-counter", LATER + timedelta(minutes=20), LATER + timedelta(minutes=40))  # just after
    assert refusal(known) == [slot(LATER)]


def test_when_every_alternative_is_taken_the_allocator_is_asked_for_fresh_ones() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_reserved("migration-counter", NEXT, LATER + timedelta(minutes=20))
    assert refusal(known) is None
    known.on_rejected(rejected(alternatives=()), T0, generation=1)
    assert refusal(known) == []  # the allocator itself had none: a refusal without alternatives


def test_a_desk_time_held_back_is_offered_again_when_its_hold_back_ends() -> None:
    known = KnownFullStarts(TTL)
    reopens = T0 + timedelta(seconds=20)
    known.on_released(released(["residence-card"], available_from=reopens))
    known.on_rejected(rejected(), T0 + timedelta(seconds=1), generation=1)  # refused while held back
    assert refusal(known, now=reopens - timedelta(microseconds=1)) is not None
    assert refusal(known, now=reopens) is None
    known.on_rejected(rejected(), reopens + timedelta(seconds=1), generation=1)  # full again, after it
    assert refusal(known, now=reopens + timedelta(seconds=2)) is not None


def test_a_reservation_elsewhere_or_touching_an_alternative_leaves_it_offered() -> None:
    known = KnownFullStarts(TTL)
    known.on_rejected(rejected(), T0, generation=1)
    known.on_reserved("ledeberg", NEXT, NEXT + timedelta(minutes=20))  # another location (sorts before)
    known.on_reserved("migration-counter", NEXT - timedelta(minutes=20), NEXT)  # ends as NEXT starts
    known.on_reserved("migration-counter", LATER + timedelta(minutes=30), LATER + timedelta(minutes=50))  # well after
    assert refusal(known) == [slot(NEXT), slot(LATER)]


def test_a_hold_back_that_ended_before_now_or_exactly_as_the_mark_was_made() -> None:
    reopens = T0 + timedelta(seconds=20)
    known = KnownFullStarts(TTL)
    known.on_released(released(["residence-card"], available_from=reopens))
    known.on_rejected(rejected(), T0, generation=1)
    assert refusal(known, now=reopens + timedelta(seconds=3)) is None  # it reopened 3 s ago
    known.on_rejected(rejected(), reopens, generation=1)  # declared full as it reopened: still full
    assert refusal(known, now=reopens + timedelta(seconds=3)) is not None
