"""Pure catalogue rules: hours, desks, locations, closures, and the days the counters close."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from loket_catalogue.domain.rules import (
    CatalogueRuleError,
    adhoc_closure_id,
    closing_days,
    validate_closure_day,
    validate_desk,
    validate_effective_from,
    validate_location,
    validate_weekly_hours,
)
from loket_contracts.events import DeskDefined, LocationDefined, TimeBlock


def blocks(*pairs: tuple[str, str]) -> list[TimeBlock]:
    return [TimeBlock(start=s, end=e) for s, e in pairs]


def errors_of(call, *args, **kwargs) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogueRuleError) as caught:
        call(*args, **kwargs)
    return caught.value.errors


# --- weekly hours -----------------------------------------------------------------------------


def test_valid_hours_pass() -> None:
    validate_weekly_hours(
        {
            "1": blocks(("09:00", "12:30"), ("14:00", "16:00")),
            "2": blocks(("14:00", "19:00"), ("09:00", "12:30")),  # order does not matter
            "3": blocks(("09:00", "12:00"), ("12:00", "13:00")),  # touching is no overlap
            "7": blocks(("20:00", "24:00")),
            "4": [],
        },
        grid_minutes=10,
    )


def test_overlapping_blocks_are_refused_naming_the_later_block() -> None:
    errors = errors_of(validate_weekly_hours, {"2": blocks(("09:00", "12:30"), ("12:00", "16:00"))})
    assert [f for f, _ in errors] == ["weekly.2.1"]
    assert "09:00-12:30" in errors[0][1] and "12:00-16:00" in errors[0][1] and "overlap" in errors[0][1]


def test_a_block_inside_a_long_one_overlaps_even_when_not_adjacent() -> None:
    errors = errors_of(validate_weekly_hours, {"1": blocks(("09:00", "17:00"), ("10:00", "11:00"), ("12:00", "13:00"))})
    assert [f for f, _ in errors] == ["weekly.1.1", "weekly.1.2"]


def test_end_before_or_at_start_is_refused() -> None:
    assert [f for f, _ in errors_of(validate_weekly_hours, {"1": blocks(("14:00", "09:00"))})] == ["weekly.1.0.end"]
    assert [f for f, _ in errors_of(validate_weekly_hours, {"5": blocks(("09:00", "12:00"), ("10:00", "10:00"))})] == [
        "weekly.5.1.end"
    ]


def test_unknown_weekday_and_off_grid_start() -> None:
    assert [f for f, _ in errors_of(validate_weekly_hours, {"0": blocks(("09:00", "12:00"))})] == ["weekly.0"]
    assert [f for f, _ in errors_of(validate_weekly_hours, {"1": blocks(("09:05", "12:00"))}, grid_minutes=10)] == [
        "weekly.1.0.start"
    ]
    validate_weekly_hours({"1": blocks(("09:05", "12:00"))}, grid_minutes=5)


def test_every_error_is_reported_at_once() -> None:
    errors = errors_of(
        validate_weekly_hours, {"1": blocks(("12:00", "11:00")), "3": blocks(("09:00", "12:00"), ("11:00", "13:00"))}
    )
    assert [f for f, _ in errors] == ["weekly.1.0.end", "weekly.3.1"]


def test_effective_from_and_closure_day_not_in_the_past() -> None:
    today = date(2026, 11, 26)
    validate_effective_from(today, today)
    validate_closure_day(today, today)
    assert errors_of(validate_effective_from, date(2026, 11, 25), today)[0][0] == "effective_from"
    assert errors_of(validate_closure_day, date(2026, 1, 1), today)[0][0] == "day"


# --- desks and locations ----------------------------------------------------------------------

PRODUCTS = {"residence-card", "short-stay", "orange-card", "card-pickup"}
CENTRE = LocationDefined(
    location_id="sc-x", name="X", address="X", products=["residence-card", "short-stay"], slot_grid_minutes=10
)


def desk(products: list[str], location_id: str = "sc-x", desk_id: str = "x-1") -> DeskDefined:
    return DeskDefined(desk_id=desk_id, location_id=location_id, name="Desk", products=products)


def test_desk_rules() -> None:
    validate_desk(desk(["residence-card"]), CENTRE, PRODUCTS)
    assert errors_of(validate_desk, desk(["residence-card"]), None, PRODUCTS)[0][0] == "location_id"
    unknown = errors_of(validate_desk, desk(["residence-card", "passport"]), CENTRE, PRODUCTS)
    assert unknown == [("products.1", "unknown product 'passport'")]
    not_offered = errors_of(validate_desk, desk(["orange-card"]), CENTRE, PRODUCTS)
    assert not_offered == [("products.0", "location 'sc-x' does not offer 'orange-card'")]
    assert errors_of(validate_desk, desk(["short-stay", "short-stay"]), CENTRE, PRODUCTS)[0][0] == "products.1"
    moved = errors_of(validate_desk, desk(["short-stay"]), CENTRE, PRODUCTS, existing=desk([], "sc-y"))
    assert moved[0][0] == "location_id" and "cannot move" in moved[0][1]


def test_location_rules() -> None:
    validate_location(CENTRE, PRODUCTS, [desk(["short-stay"])])
    assert (
        errors_of(validate_location, CENTRE.model_copy(update={"products": ["visa"]}), PRODUCTS)[0][0] == "products.0"
    )
    dropping = CENTRE.model_copy(update={"products": ["residence-card"]})
    errors = errors_of(validate_location, dropping, PRODUCTS, [desk(["residence-card", "short-stay"])])
    assert errors[0][0] == "products" and "x-1" in errors[0][1] and "short-stay" in errors[0][1]
    coarser = CENTRE.model_copy(update={"slot_grid_minutes": 15})
    errors = errors_of(
        validate_location, coarser, PRODUCTS, [], [("x-1", {"1": blocks(("09:00", "12:00"), ("13:10", "16:00"))})]
    )
    assert errors[0][0] == "slot_grid_minutes" and "13:10" in errors[0][1]


def test_adhoc_closure_ids_are_stable() -> None:
    assert adhoc_closure_id(None, date(2027, 2, 10)) == "ad-hoc:all:2027-02-10"
    assert adhoc_closure_id("sc-drongen", date(2027, 2, 10)) == "ad-hoc:sc-drongen:2027-02-10"


# --- closing days ---------------------------------------------------------------------------------


def test_closing_days_2026() -> None:
    days = {day: (kind, name) for day, kind, name in closing_days(2026)}
    assert days[date(2026, 1, 1)] == ("holiday", "New Year's Day")
    assert days[date(2026, 4, 6)] == ("holiday", "Easter Monday")
    assert days[date(2026, 5, 1)] == ("holiday", "Labour Day")
    assert days[date(2026, 5, 14)] == ("holiday", "Ascension Day")
    assert days[date(2026, 5, 25)] == ("holiday", "Whit Monday")
    assert days[date(2026, 7, 21)][0] == "holiday"
    assert days[date(2026, 8, 15)][0] == "holiday"
    assert days[date(2026, 11, 1)][0] == "holiday"
    assert days[date(2026, 11, 11)][0] == "holiday"
    assert days[date(2026, 12, 25)][0] == "holiday"
    for local in (date(2026, 1, 2), date(2026, 7, 11), date(2026, 11, 2), date(2026, 11, 15), date(2026, 12, 26)):
        assert days[local][0] == "local-closing-day"
    assert len(days) == 15
    assert date(2026, 4, 5) not in days  # Easter Sunday: closed anyway


def test_closing_days_2027() -> None:
    days = {day: (kind, name) for day, kind, name in closing_days(2027)}
    assert days[date(2027, 3, 29)] == ("holiday", "Easter Monday")
    assert days[date(2027, 5, 6)] == ("holiday", "Ascension Day")
    assert days[date(2027, 5, 17)] == ("holiday", "Whit Monday")
    assert sorted(d for d, (kind, _) in days.items() if kind == "holiday") == [
        date(2027, 1, 1),
        date(2027, 3, 29),
        date(2027, 5, 1),
        date(2027, 5, 6),
        date(2027, 5, 17),
        date(2027, 7, 21),
        date(2027, 8, 15),
        date(2027, 11, 1),
        date(2027, 11, 11),
        date(2027, 12, 25),
    ]
    assert sorted(d for d, (kind, _) in days.items() if kind == "local-closing-day") == [
        date(2027, 1, 2),
        date(2027, 7, 11),
        date(2027, 11, 2),
        date(2027, 11, 15),
        date(2027, 12, 26),
    ]
    assert date(2027, 3, 28) not in days and date(2027, 5, 16) not in days  # Easter and Whit Sunday


@pytest.mark.parametrize("year", range(2025, 2036))
def test_easter_based_days_follow_easter(year: int) -> None:
    from dateutil.easter import easter

    days = {day: name for day, _, name in closing_days(year)}
    sunday = easter(year)
    assert days[sunday + timedelta(days=1)] == "Easter Monday"
    assert days[sunday + timedelta(days=39)] == "Ascension Day"
    assert days[sunday + timedelta(days=50)] == "Whit Monday"
