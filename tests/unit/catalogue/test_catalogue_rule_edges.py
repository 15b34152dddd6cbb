"""Catalogue rules and slot counting at their edges: a block that ends at 24:00 (and one that ends
after it), blocks that overlap only the one reaching furthest, days that are today, grids that do
not divide an hour on the nights the clocks change, and a closed day in the preview."""

from __future__ import annotations

from datetime import date

import pytest

from loket_catalogue.domain.rules import (
    CatalogueRuleError,
    closing_day_id,
    validate_closure_day,
    validate_desk,
    validate_effective_from,
    validate_location,
    validate_weekly_hours,
)
from loket_catalogue.domain.slots import (
    DeskHours,
    ProductSpec,
    as_instants,
    block_starts,
    preview_counts,
    wall_clock,
)
from loket_contracts.events import DeskDefined, LocationDefined, TimeBlock

MONDAY = date(2027, 1, 11)
TODAY = date(2026, 11, 26)


def blocks(*pairs: tuple[str, str]) -> list[TimeBlock]:
    return [TimeBlock(start=s, end=e) for s, e in pairs]


def errors_of(call, *args, **kwargs) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogueRuleError) as caught:
        call(*args, **kwargs)
    return caught.value.errors


def hhmm(starts: list) -> list[str]:  # type: ignore[type-arg]
    return [s.strftime("%H:%M") for s in as_instants(starts)]


# --- weekly hours -----------------------------------------------------------------------------------


def test_a_block_may_end_at_midnight_but_not_after_it() -> None:
    validate_weekly_hours({"5": blocks(("20:00", "24:00"))})
    # "24:30" matches the contract's pattern for an end; no day has it, and the preview and the
    # calendar could not place it: it is refused here, naming the field.
    errors = errors_of(validate_weekly_hours, {"5": blocks(("20:00", "24:01"))})
    assert errors == [("weekly.5.0.end", "Friday block ends at 24:01, after 24:00")]
    assert [f for f, _ in errors_of(validate_weekly_hours, {"1": blocks(("09:00", "12:00"), ("22:00", "24:30"))})] == [
        "weekly.1.1.end"
    ]


def test_a_block_one_minute_long_is_a_block() -> None:
    validate_weekly_hours({"1": blocks(("09:00", "09:01"))})


def test_an_unknown_weekday_does_not_hide_the_errors_of_the_days_after_it() -> None:
    errors = errors_of(validate_weekly_hours, {"8": blocks(("09:00", "12:00")), "2": blocks(("12:00", "11:00"))})
    assert [f for f, _ in errors] == ["weekly.8", "weekly.2.0.end"]


def test_a_block_overlapping_the_one_that_reaches_furthest_is_found() -> None:
    # 10:00-12:00 reaches further than 09:00-10:00; 11:00-11:30 overlaps it, not the first.
    errors = errors_of(validate_weekly_hours, {"3": blocks(("09:00", "10:00"), ("10:00", "12:00"), ("11:00", "11:30"))})
    assert [f for f, _ in errors] == ["weekly.3.2"]
    assert "10:00-12:00 (#1)" in errors[0][1] and "11:00-11:30 (#2)" in errors[0][1]


def test_a_block_with_its_end_wrong_is_left_out_of_the_overlap_check() -> None:
    errors = errors_of(validate_weekly_hours, {"1": blocks(("09:00", "12:00"), ("11:00", "10:00"))})
    assert [f for f, _ in errors] == ["weekly.1.1.end"]  # not also an overlap


def test_without_a_grid_any_start_minute_will_do() -> None:
    validate_weekly_hours({"1": blocks(("09:07", "12:00"))})
    validate_weekly_hours({"1": blocks(("09:07", "12:00"))}, grid_minutes=None)


def test_errors_name_each_field_and_the_first_leads() -> None:
    error = CatalogueRuleError.many([("weekly.1.0.end", "ends too early"), ("weekly.2", "no such day")])
    assert (error.field, error.message) == ("weekly.1.0.end", "ends too early")
    assert str(error) == "weekly.1.0.end: ends too early; weekly.2: no such day"
    single = CatalogueRuleError("day", "in the past")
    assert single.errors == [("day", "in the past")] and str(single) == "day: in the past"


# --- days ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("check", [validate_effective_from, validate_closure_day])
def test_today_and_later_days_are_accepted_and_earlier_ones_refused(check) -> None:  # type: ignore[no-untyped-def]
    check(TODAY, TODAY)
    check(date(2026, 11, 27), TODAY)  # tomorrow
    check(date(2027, 6, 1), TODAY)
    with pytest.raises(CatalogueRuleError, match="in the past"):
        check(date(2026, 11, 25), TODAY)


def test_closing_day_ids_name_the_kind_and_the_day() -> None:
    assert closing_day_id("holiday", date(2026, 12, 25)) == "holiday:2026-12-25"


# --- locations and desks --------------------------------------------------------------------------------

PRODUCTS = {"residence-card", "short-stay"}
CENTRE = LocationDefined(
    location_id="sc-x", name="X", address="X", products=["residence-card", "short-stay"], slot_grid_minutes=15
)


def test_hours_on_the_grid_keep_a_location_valid() -> None:
    validate_location(CENTRE, PRODUCTS, [], [("x-1", {"1": blocks(("09:00", "12:00"), ("13:15", "16:45"))})])


def test_hours_off_a_coarser_grid_are_listed_once_and_in_order() -> None:
    weekly = {"1": blocks(("09:10", "12:00"), ("13:05", "16:00")), "2": blocks(("09:10", "12:00"))}
    errors = errors_of(validate_location, CENTRE, PRODUCTS, [], [("x-1", weekly)])
    assert errors == [("slot_grid_minutes", "hours of desk 'x-1' start at 09:10, 13:05, not on a 15-minute grid")]


def test_a_product_listed_twice_is_named_by_its_position() -> None:
    twice = CENTRE.model_copy(update={"products": ["short-stay", "residence-card", "short-stay"]})
    assert errors_of(validate_location, twice, PRODUCTS) == [("products.2", "product 'short-stay' is listed twice")]


def test_a_desk_that_stays_where_it_is_may_change_its_products() -> None:
    existing = DeskDefined(desk_id="x-1", location_id="sc-x", name="Desk", products=["short-stay"])
    changed = DeskDefined(desk_id="x-1", location_id="sc-x", name="Desk", products=["residence-card"])
    validate_desk(changed, CENTRE, PRODUCTS, existing=existing)


# --- slot counting ---------------------------------------------------------------------------------------


def test_24_00_is_the_next_midnight() -> None:
    assert wall_clock(MONDAY, "24:00") == wall_clock(date(2027, 1, 12), "00:00")
    assert hhmm(block_starts(MONDAY, TimeBlock(start="23:00", end="24:00"), 30, 30)) == ["23:00", "23:30"]


def test_a_block_as_long_as_the_product_has_one_start_and_a_shorter_one_none() -> None:
    assert hhmm(block_starts(MONDAY, TimeBlock(start="09:00", end="09:20"), 20, 10)) == ["09:00"]
    assert hhmm(block_starts(MONDAY, TimeBlock(start="09:00", end="09:19"), 20, 10)) == []
    assert hhmm(block_starts(MONDAY, TimeBlock(start="09:00", end="09:05"), 20, 10)) == []


@pytest.mark.parametrize(
    ("start", "first"), [("09:01", "09:10"), ("09:03", "09:10"), ("09:07", "09:10"), ("09:10", "09:10")]
)
def test_a_block_off_the_grid_starts_at_the_next_grid_time(start: str, first: str) -> None:
    assert hhmm(block_starts(MONDAY, TimeBlock(start=start, end="10:00"), 10, 10))[0] == first


def test_a_grid_that_does_not_divide_the_hour_counts_in_wall_clock_time_over_the_spring_change() -> None:
    # 28 March 2027: 02:00 becomes 03:00. On a 45-minute grid from midnight the wall-clock starts are
    # 01:30 and 03:00, 03:45, 04:30 - not every 45 real minutes from 01:30 (which would give 03:15).
    starts = as_instants(block_starts(date(2027, 3, 28), TimeBlock(start="01:00", end="05:00"), 15, 45))
    assert [s.strftime("%H:%M%z") for s in starts] == ["01:30+0100", "03:00+0200", "03:45+0200", "04:30+0200"]


def test_over_the_autumn_change_the_repeated_hour_counts_twice() -> None:
    # 25 October 2026: 03:00 becomes 02:00 again. A 7-minute grid from midnight: 01:03, ..., then the
    # wall-clock times of the repeated hour on the grid once in summer and once in winter time, to 03:02.
    starts = as_instants(block_starts(date(2026, 10, 25), TimeBlock(start="01:50", end="03:10"), 7, 7))
    shown = [s.strftime("%H:%M%z") for s in starts]
    assert shown[:3] == ["01:52+0200", "01:59+0200", "02:06+0200"]
    assert "02:06+0100" in shown and shown[-1] == "03:02+0100"  # 03:09 would end after 03:10
    assert len(shown) == len(set(shown))


def test_the_last_start_of_a_block_over_a_change_is_counted() -> None:
    # Block 01:00-03:30 on the spring night (1.5 real hours) for a 30-minute product on a 30-minute
    # grid: 01:00, 01:30 and 03:00, the last one ending exactly at the block's end.
    starts = as_instants(block_starts(date(2027, 3, 28), TimeBlock(start="01:00", end="03:30"), 30, 30))
    assert [s.strftime("%H:%M") for s in starts] == ["01:00", "01:30", "03:00"]


def test_a_closed_day_has_no_slot_for_any_product() -> None:
    hours = {"1": blocks(("09:00", "10:00"))}
    products = [ProductSpec("a", 10, ("d",)), ProductSpec("b", 20, ("d",))]
    counts = preview_counts(
        products, 10, [DeskHours("d", date(2026, 1, 1), hours)], [], lambda d: d == MONDAY, MONDAY, MONDAY
    )
    assert [(c.product_id, c.current, c.proposed) for c in counts] == [("a", 0, 0), ("b", 0, 0)]
    one_day = preview_counts(
        products, 10, [DeskHours("d", date(2026, 1, 1), hours)], [], lambda d: False, MONDAY, MONDAY
    )
    assert [(c.product_id, c.current) for c in one_day] == [("a", 6), ("b", 5)]


def test_a_block_past_midnight_does_not_hide_the_errors_of_the_blocks_after_it() -> None:
    errors = errors_of(validate_weekly_hours, {"1": blocks(("20:00", "24:30"), ("10:00", "09:00"))})
    assert [f for f, _ in errors] == ["weekly.1.0.end", "weekly.1.1.end"]


def test_an_overlap_names_the_first_block_that_reaches_furthest() -> None:
    # 09:00-12:00 (#0) and 10:00-12:00 (#1) reach equally far: 11:00-11:30 is said to overlap #0.
    errors = errors_of(validate_weekly_hours, {"4": blocks(("09:00", "12:00"), ("10:00", "12:00"), ("11:00", "11:30"))})
    assert errors[-1] == ("weekly.4.2", "Thursday blocks 09:00-12:00 (#0) and 11:00-11:30 (#2) overlap")


def test_a_desk_cannot_move_to_another_location_whichever_it_is() -> None:
    for elsewhere in ("sc-a", "sc-z"):
        existing = DeskDefined(desk_id="x-1", location_id=elsewhere, name="Desk", products=["short-stay"])
        moved = DeskDefined(desk_id="x-1", location_id="sc-x", name="Desk", products=["short-stay"])
        errors = errors_of(validate_desk, moved, CENTRE, PRODUCTS, existing=existing)
        assert errors[0][0] == "location_id" and "cannot move" in errors[0][1]


def test_the_last_start_at_an_odd_minute_over_the_spring_change_is_counted() -> None:
    # 01:00-03:35 on 28 March 2027, 30 minutes on a 5-minute grid: the last start is 03:05, which
    # ends exactly at 03:35.
    starts = as_instants(block_starts(date(2027, 3, 28), TimeBlock(start="01:00", end="03:35"), 30, 5))
    assert [s.strftime("%H:%M") for s in starts][-3:] == ["01:55", "03:00", "03:05"]
