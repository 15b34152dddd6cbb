"""The resident rules at their edges: the parts of a national register number (serial, BIS months,
unknown month or day, century), the booking window (notice and days ahead), the slot grid, the
opening hours of each desk, and who may book a child's card or pick a card up."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loket_booking.domain.rules import (
    RuleViolation,
    age_on,
    check_eligibility,
    check_slot,
    normalise_email,
    parse_national_number,
)
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS, CatalogueView

# --- national register numbers ------------------------------------------------------------------


def number(birth_and_serial: str, born_from_2000: bool = False) -> str:
    """YYMMDD + serial with its check digits: 97 - (the 9 digits mod 97); for those born from 2000
    the 9 digits are prefixed with a 2 first."""
    base = ("2" if born_from_2000 else "") + birth_and_serial
    return f"{birth_and_serial}{97 - int(base) % 97:02d}"


def refusal(raw: str) -> str:
    with pytest.raises(RuleViolation) as exc:
        parse_national_number(raw)
    assert exc.value.field == "person.national_number"
    return exc.value.message


@pytest.mark.parametrize("serial", ["000", "998", "999"])
def test_serials_000_998_and_999_are_not_given_out(serial: str) -> None:
    assert "serial" in refusal(number(f"850730{serial}"))


@pytest.mark.parametrize("serial", ["001", "002", "033", "500", "996", "997"])
def test_serials_001_to_997_are(serial: str) -> None:
    assert parse_national_number(number(f"850730{serial}")).birth_date == date(1985, 7, 30)


def test_the_serial_is_the_three_digits_after_the_birth_date() -> None:
    # Born on the 10th with serial 001: the digits "000" straddle the day and the serial, and are no serial.
    assert parse_national_number(number("850710001")).birth_date == date(1985, 7, 10)
    # Born on the 30th with serial 999: refused, although "099" straddling day and serial would be fine.
    assert "serial" in refusal(number("850730999"))


@pytest.mark.parametrize("serial", ["000", "998", "999"])
def test_bis_numbers_may_use_any_serial(serial: str) -> None:
    assert parse_national_number(number(f"852730{serial}")).bis
    assert parse_national_number(number(f"854730{serial}")).bis


@pytest.mark.parametrize(
    ("month", "bis", "birth"),
    [
        ("07", False, date(1985, 7, 30)),
        ("12", False, date(1985, 12, 30)),
        ("20", True, None),  # BIS, gender unknown, birth month unknown
        ("27", True, date(1985, 7, 30)),  # BIS, gender unknown: month + 20
        ("32", True, date(1985, 12, 30)),
        ("40", True, None),  # BIS, gender known, birth month unknown: month + 40
        ("47", True, date(1985, 7, 30)),
        ("52", True, date(1985, 12, 30)),
    ],
)
def test_bis_months_are_the_birth_month_plus_20_or_40(month: str, bis: bool, birth: date | None) -> None:
    parsed = parse_national_number(number(f"85{month}30033"))
    assert (parsed.bis, parsed.birth_date) == (bis, birth)


@pytest.mark.parametrize("month", ["13", "19", "33", "39", "53"])
def test_a_month_that_is_no_month_after_the_bis_offset_is_refused(month: str) -> None:
    assert "birth date" in refusal(number(f"85{month}30033"))


@pytest.mark.parametrize(
    ("digits", "bis"),
    [
        ("850700033", False),  # day unknown (00): a valid number without a birth date
        ("850030033", False),  # month unknown
        ("850000033", False),  # both unknown
        ("852700033", True),
    ],
)
def test_an_unknown_month_or_day_is_written_00_and_accepted(digits: str, bis: bool) -> None:
    parsed = parse_national_number(number(digits))
    assert parsed.birth_date is None and parsed.bis is bis


@pytest.mark.parametrize("month", ["13", "19", "39", "53"])
def test_a_month_that_is_no_month_is_refused_even_with_an_unknown_day(month: str) -> None:
    assert "birth date" in refusal(number(f"85{month}00033"))


def test_month_19_is_no_bis_month_so_serial_000_is_out_of_range() -> None:
    assert "serial" in refusal(number("851930000"))  # BIS months start at 20


def test_more_than_eleven_digits_are_refused() -> None:
    assert "11 digits" in refusal(number("850730033") + "1")


def test_the_century_comes_from_the_check_digits() -> None:
    assert parse_national_number(number("060705002")).birth_date == date(1906, 7, 5)
    assert parse_national_number(number("060705002", born_from_2000=True)).birth_date == date(2006, 7, 5)


def test_check_digits_97_are_valid() -> None:
    base = next(b for b in range(850730001, 850730998) if b % 97 == 0)  # 97 - 0 = 97
    assert parse_national_number(f"{base}97").birth_date == date(1985, 7, 30)


@pytest.mark.parametrize(
    "raw",
    [
        "85073003328a",  # 11 digits and a letter
        "85/07/30-033.28",  # a slash is no separator
        "85 07 30 033 28 ",
    ],
)
def test_only_digits_dots_dashes_and_spaces_are_read(raw: str) -> None:
    if raw.endswith(" "):
        assert parse_national_number(raw).formatted == "85.07.30-033.28"  # spaces are fine
    else:
        assert "11 digits" in refusal(raw)


def test_a_number_is_written_yy_mm_dd_serial_check() -> None:
    assert parse_national_number(" 85-07-30 033 28").formatted == "85.07.30-033.28"
    assert parse_national_number("85.07.30-033.28").digits == "85073003328"


# --- eligibility ---------------------------------------------------------------------------------

CHILD_CARD = {"max_age_years": 12}


def test_age_counts_whole_years_to_the_birthday() -> None:
    assert age_on(date(2014, 6, 15), date(2026, 6, 14)) == 11  # the day before the 12th birthday
    assert age_on(date(2014, 6, 15), date(2026, 6, 15)) == 12  # on it
    assert age_on(date(2014, 6, 15), date(2026, 6, 16)) == 12
    assert age_on(date(2014, 6, 15), date(2026, 5, 20)) == 11  # an earlier month, a later day
    assert age_on(date(2014, 6, 15), date(2026, 7, 1)) == 12  # a later month, an earlier day


@pytest.mark.parametrize(
    ("appointment", "allowed"),
    [(date(2026, 6, 14), True), (date(2026, 6, 15), False), (date(2026, 6, 16), False)],
)
def test_a_childs_card_is_for_a_child_under_12_on_the_day_of_the_appointment(appointment: date, allowed: bool) -> None:
    born = date(2014, 6, 15)
    if allowed:
        check_eligibility("child-card", CHILD_CARD, born, appointment, "loc", None)
    else:
        with pytest.raises(RuleViolation, match="under 12") as exc:
            check_eligibility("child-card", CHILD_CARD, born, appointment, "loc", None)
        assert exc.value.field == "person.birth_date"


def test_a_product_without_an_age_limit_needs_no_birth_date() -> None:
    check_eligibility("residence-card", {}, None, date(2026, 6, 15), "loc", None)
    check_eligibility("residence-card", {"max_age_years": "12"}, None, date(2026, 6, 15), "loc", None)  # not a number


def test_a_card_is_picked_up_where_it_was_applied_for() -> None:
    rule = {"same_location_as_application": True}
    with pytest.raises(RuleViolation, match="sc-gentbrugge") as exc:
        check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "migration-counter", "sc-gentbrugge")
    assert exc.value.field == "location"
    with pytest.raises(RuleViolation):  # and the other way round
        check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "sc-gentbrugge", "migration-counter")
    check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "sc-gentbrugge", "sc-gentbrugge")
    check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "migration-counter", "")  # not known
    off = {"same_location_as_application": False}
    check_eligibility("card-pickup", off, None, date(2026, 6, 15), "migration-counter", "sc-gentbrugge")


# --- the slot: grid, notice, window, hours ----------------------------------------------------------

L = ev.Localized(nl="x", en="x", fr="x")
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # Monday 30 November, 11:00 in Ghent


def every_day_view(grid: int = 10) -> CatalogueView:
    """One location, open 09:00-12:30 every day at desk 1, and 14:00-16:00 at desk 2 (a desk with
    more products, so desk 1 is not simply the first that fits)."""
    v = CatalogueView()
    v.apply(ev.ProductDefined(product_id="card", name=L, description=L, duration_minutes=20))
    v.apply(ev.ProductDefined(product_id="other", name=L, description=L, duration_minutes=20))
    v.apply(
        ev.LocationDefined(
            location_id="mc", name="Migration Counter", address="x", products=["card", "other"], slot_grid_minutes=grid
        )
    )
    v.apply(ev.DeskDefined(desk_id="d1", location_id="mc", name="1", products=["card"]))
    v.apply(ev.DeskDefined(desk_id="d2", location_id="mc", name="2", products=["card", "other"]))
    morning = [ev.TimeBlock(start="09:00", end="12:30")]
    afternoon = [ev.TimeBlock(start="14:00", end="16:00")]
    for desk, blocks in (("d1", morning), ("d2", afternoon)):
        v.apply(
            ev.SchedulePublished(
                schedule_id=f"s-{desk}",
                desk_id=desk,
                location_id="mc",
                effective_from=date(2026, 1, 1),
                weekly={str(d): blocks for d in range(1, 8)},
            )
        )
    return v


def at(day: date, hh: int, mm: int, ss: int = 0, us: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, us, tzinfo=BRUSSELS)


def refused(start: datetime, now: datetime = NOW, view: CatalogueView | None = None) -> RuleViolation:
    with pytest.raises(RuleViolation) as exc:
        check_slot(view or every_day_view(), "card", "mc", start, now)
    assert exc.value.field == "start"
    return exc.value


def test_a_start_exactly_24_hours_ahead_is_bookable_and_a_second_less_is_not() -> None:
    start = at(date(2026, 12, 2), 9, 0)
    check_slot(every_day_view(), "card", "mc", start, start - timedelta(hours=24))
    assert "24 hours ahead" in refused(start, now=start - timedelta(hours=24) + timedelta(seconds=1)).message
    assert "24 hours ahead" in refused(start, now=start + timedelta(hours=1)).message  # in the past


@pytest.mark.parametrize(
    ("days_ahead", "bookable"),
    [(59, True), (60, True), (61, False)],
)
def test_the_window_ends_60_days_after_today(days_ahead: int, bookable: bool) -> None:
    start = at(date(2026, 11, 30) + timedelta(days=days_ahead), 9, 0)
    if bookable:  # the calendar offers day 60, so the booking service must accept it
        assert check_slot(every_day_view(), "card", "mc", start, NOW) == start + timedelta(minutes=20)
    else:
        assert "60 days ahead" in refused(start).message


def test_the_window_counts_days_in_ghent_not_hours() -> None:
    late = at(date(2026, 11, 30), 23, 30)  # still 30 November in Ghent (22:30 UTC)
    check_slot(every_day_view(), "card", "mc", at(date(2027, 1, 29), 9, 0), late)  # day 60
    after_midnight = at(date(2026, 12, 1), 0, 30)  # 1 December in Ghent, 30 November in UTC
    check_slot(every_day_view(), "card", "mc", at(date(2027, 1, 30), 9, 0), after_midnight)


@pytest.mark.parametrize(
    "start",
    [
        at(date(2026, 12, 7), 9, 5),  # off the 10-minute grid
        at(date(2026, 12, 7), 9, 0, 30),  # seconds
        at(date(2026, 12, 7), 9, 0, 0, 1),  # microseconds
        at(date(2026, 12, 7), 9, 1),
        at(date(2026, 12, 7), 8, 59),
    ],
)
def test_starts_off_the_grid_are_refused(start: datetime) -> None:
    assert "10-minute grid" in refused(start).message


def test_the_grid_counts_from_midnight_in_ghent() -> None:
    v = every_day_view(grid=15)
    assert check_slot(v, "card", "mc", at(date(2026, 12, 7), 9, 45), NOW) == at(date(2026, 12, 7), 10, 5)
    assert "15-minute grid" in refused(at(date(2026, 12, 7), 9, 50), view=v).message


def test_a_time_without_an_offset_is_refused() -> None:
    assert "offset" in refused(datetime(2026, 12, 7, 9, 0)).message


@pytest.mark.parametrize(
    ("hh", "mm", "fits"),
    [
        (9, 0, True),  # at the opening of desk 1
        (12, 10, True),  # ends 12:30, at the closing
        (12, 20, False),  # would end 12:40
        (8, 50, False),
        (12, 30, False),  # the lunch break: neither desk
        (13, 50, False),  # ends 14:10, but desk 2 opens 14:00
        (14, 0, True),  # desk 2
        (15, 40, True),
        (15, 50, False),
    ],
)
def test_a_slot_lies_wholly_inside_the_hours_of_one_desk(hh: int, mm: int, fits: bool) -> None:
    start = at(date(2026, 12, 7), hh, mm)
    if fits:
        assert check_slot(every_day_view(), "card", "mc", start, NOW) == start + timedelta(minutes=20)
    else:
        assert "opening hours" in refused(start).message


def test_a_product_only_counts_the_desks_that_serve_it() -> None:
    # "other" is served at desk 2 only: its mornings are not bookable.
    with pytest.raises(RuleViolation, match="opening hours"):
        check_slot(every_day_view(), "other", "mc", at(date(2026, 12, 7), 9, 0), NOW)
    check_slot(every_day_view(), "other", "mc", at(date(2026, 12, 7), 14, 0), NOW)


def test_a_closure_of_all_counters_or_of_this_one_closes_the_day() -> None:
    for location in (None, "mc"):
        v = every_day_view()
        v.apply(
            ev.ClosureDeclared(
                closure_id="c", location_id=location, day=date(2026, 12, 7), kind="ad-hoc", reason="strike"
            )
        )
        assert "closed that day (strike)" in refused(at(date(2026, 12, 7), 9, 0), view=v).message
        check_slot(v, "card", "mc", at(date(2026, 12, 8), 9, 0), NOW)  # the next day is open
    v = every_day_view()
    v.apply(
        ev.ClosureDeclared(closure_id="c", location_id="elsewhere", day=date(2026, 12, 7), kind="ad-hoc", reason="x")
    )
    check_slot(v, "card", "mc", at(date(2026, 12, 7), 9, 0), NOW)


def test_a_child_well_past_the_age_limit_is_refused_too() -> None:
    with pytest.raises(RuleViolation, match="under 12"):
        check_eligibility("child-card", CHILD_CARD, date(2010, 1, 1), date(2026, 6, 15), "loc", None)  # 16


def test_a_grid_that_does_not_divide_the_hour_counts_the_hours_too() -> None:
    v = every_day_view(grid=45)
    # 10:30 is 630 minutes after midnight, on the 45-minute grid; 09:30 (570) is not, though its
    # minutes (30) are the same.
    assert check_slot(v, "card", "mc", at(date(2026, 12, 7), 10, 30), NOW) == at(date(2026, 12, 7), 10, 50)
    assert "45-minute grid" in refused(at(date(2026, 12, 7), 9, 30), view=v).message


def test_an_email_error_names_the_field_it_was_given_as() -> None:
    with pytest.raises(RuleViolation) as exc:
        normalise_email("not an address", field="contacts.1.email")
    assert exc.value.field == "contacts.1.email"


def test_a_closed_day_is_named_in_the_resident_language_and_an_ad_hoc_reason_as_given() -> None:
    v = every_day_view()
    v.apply(
        ev.ClosureDeclared(
            closure_id="h", location_id=None, day=date(2026, 12, 7), kind="holiday", reason="Christmas Day"
        )
    )
    v.apply(
        ev.ClosureDeclared(closure_id="a", location_id=None, day=date(2026, 12, 8), kind="ad-hoc", reason="staking")
    )
    holiday = refused(at(date(2026, 12, 7), 9, 0), view=v).message
    assert holiday == "the counter is closed that day (Christmas Day)"
    assert holiday.in_language("fr") == "le guichet est fermé ce jour-là (Noël)"
    assert holiday.in_language("nl") == "het loket is die dag gesloten (Kerstmis)"
    ad_hoc = refused(at(date(2026, 12, 8), 9, 0), view=v).message
    assert ad_hoc.in_language("fr") == "le guichet est fermé ce jour-là (staking)"
