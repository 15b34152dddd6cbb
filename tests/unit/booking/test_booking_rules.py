"""The resident rules of the booking service, pure: no database, no broker, no clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loket_booking.domain.rules import (
    RuleViolation,
    age_on,
    check_eligibility,
    check_slot,
    normalise_email,
    normalise_phone,
    parse_national_number,
)
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS, CatalogueView

# --- national register numbers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "birth"),
    [
        ("85073003328", date(1985, 7, 30)),
        ("85.07.30-033.28", date(1985, 7, 30)),
        ("06070500252", date(2006, 7, 5)),  # born from 2000: the check uses 2_000_000_000 + base
        ("94021300145", date(1994, 2, 13)),
        ("10010100121", date(2010, 1, 1)),
    ],
)
def test_valid_national_numbers_give_the_birth_date_and_century(raw: str, birth: date) -> None:
    number = parse_national_number(raw)
    assert number.birth_date == birth
    assert not number.bis
    assert len(number.digits) == 11


def test_formatted_national_number() -> None:
    assert parse_national_number("85073003328").formatted == "85.07.30-033.28"


@pytest.mark.parametrize(
    ("raw", "birth"),
    [
        ("85273003371", date(1985, 7, 30)),  # BIS, gender unknown at issue: month + 20
        ("85473003317", date(1985, 7, 30)),  # BIS, gender known: month + 40
        ("01251000121", date(2001, 5, 10)),  # BIS born from 2000
        ("85200003349", None),  # BIS with an unknown birth month and day
    ],
)
def test_bis_numbers(raw: str, birth: date | None) -> None:
    number = parse_national_number(raw)
    assert number.bis
    assert number.birth_date == birth


@pytest.mark.parametrize(
    "raw",
    [
        "85073003329",  # check digits off by one
        "85073003327",
        "06070500253",
        "94021300146",
        "8507300332",  # 10 digits
        "850730033280",  # 12 digits
        "85O73003328",  # a letter O
        "",
        "85133003328",  # month 13 (checksum recomputed below would still not make it a date)
    ],
)
def test_bad_national_numbers_name_the_field(raw: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        parse_national_number(raw)
    assert exc.value.field == "person.national_number"


def test_a_checksum_valid_number_with_an_impossible_date_is_refused() -> None:
    base = "850231033"  # 31 February
    check = 97 - int(base) % 97
    with pytest.raises(RuleViolation, match="birth date"):
        parse_national_number(f"{base}{check:02d}")


def test_a_serial_out_of_range_is_refused() -> None:
    base = "850730999"
    check = 97 - int(base) % 97
    with pytest.raises(RuleViolation, match="serial"):
        parse_national_number(f"{base}{check:02d}")


# --- phones and e-mail ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+32 470 12 34 56", "+32470123456"),  # Belgian mobile
        ("0470 12 34 56", "+32470123456"),  # national format is read as Belgian
        ("0470/12.34.56", "+32470123456"),
        ("09 266 71 11", "+3292667111"),  # Ghent landline
        ("+32 9 266 71 11", "+3292667111"),
        ("+33 6 12 34 56 78", "+33612345678"),  # French mobile
        ("+31 6 12345678", "+31612345678"),  # Dutch mobile
        ("+1 (415) 555-2671", "+14155552671"),  # US
        ("+90 532 123 45 67", "+905321234567"),  # Turkish mobile
        ("0032 470 12 34 56", "+32470123456"),  # international prefix from Belgium
    ],
)
def test_phones_become_e164(raw: str, e164: str) -> None:
    assert normalise_phone(raw) == e164


@pytest.mark.parametrize("raw", ["12", "+32 470", "not a phone", "+32 470 12 34 56 78 90", "+999 123 456"])
def test_bad_phones_name_the_field(raw: str) -> None:
    with pytest.raises(RuleViolation) as exc:
        normalise_phone(raw)
    assert exc.value.field == "contact.phone"


def test_emails_are_normalised_and_checked() -> None:
    assert normalise_email("Resident@Example.ORG") == "Resident@example.org"
    for bad in ("resident", "resident@", "@example.org", "a b@example.org", "resident@example"):
        with pytest.raises(RuleViolation) as exc:
            normalise_email(bad)
        assert exc.value.field == "contact.email"


# --- eligibility ---------------------------------------------------------------------------

CHILD = {"max_age_years": 12, "requires_birth_date": True}


def test_age_on_a_day_counts_birthdays() -> None:
    assert age_on(date(2014, 6, 15), date(2026, 6, 14)) == 11
    assert age_on(date(2014, 6, 15), date(2026, 6, 15)) == 12
    assert age_on(date(2016, 2, 29), date(2027, 2, 28)) == 10


def test_child_card_for_a_child_under_12_on_the_appointment_date() -> None:
    # Turns 12 on 15 June 2026: a booking the day before is fine, on the birthday it is not.
    check_eligibility("child-card", CHILD, date(2014, 6, 15), date(2026, 6, 14), "migration-counter", None)
    with pytest.raises(RuleViolation) as exc:
        check_eligibility("child-card", CHILD, date(2014, 6, 15), date(2026, 6, 15), "migration-counter", None)
    assert exc.value.field == "person.birth_date"


def test_child_card_needs_a_birth_date() -> None:
    with pytest.raises(RuleViolation) as exc:
        check_eligibility("child-card", CHILD, None, date(2026, 6, 15), "migration-counter", None)
    assert exc.value.field == "person.birth_date"


def test_card_pickup_only_where_the_card_was_applied_for() -> None:
    rule = {"same_location_as_application": True}
    check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "sc-gentbrugge", "sc-gentbrugge")
    check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "sc-gentbrugge", None)  # not known: allowed
    with pytest.raises(RuleViolation) as exc:
        check_eligibility("card-pickup", rule, None, date(2026, 6, 15), "migration-counter", "sc-gentbrugge")
    assert exc.value.field == "location"
    # Other products ignore where a card was applied for.
    check_eligibility("residence-card", {}, None, date(2026, 6, 15), "migration-counter", "sc-gentbrugge")


# --- the slot grid, hours, window and closures -----------------------------------------------

L = ev.Localized(nl="x", en="x", fr="x")
MONDAY = date(2026, 12, 7)
NOW = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a week before


def view() -> CatalogueView:
    v = CatalogueView()
    v.apply(ev.ProductDefined(product_id="residence-card", name=L, description=L, duration_minutes=20))
    v.apply(ev.ProductDefined(product_id="single-permit", name=L, description=L, duration_minutes=20))
    v.apply(
        ev.LocationDefined(
            location_id="mc", name="Migration Counter", address="x", products=["residence-card"], slot_grid_minutes=10
        )
    )
    v.apply(ev.DeskDefined(desk_id="mc-1", location_id="mc", name="1", products=["residence-card"]))
    v.apply(
        ev.SchedulePublished(
            schedule_id="s1",
            desk_id="mc-1",
            location_id="mc",
            effective_from=date(2026, 1, 1),
            weekly={"1": [ev.TimeBlock(start="09:00", end="12:30")]},
        )
    )
    return v


def at(hh: int, mm: int, day: date = MONDAY) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=BRUSSELS)


def violation(v: CatalogueView, product: str, location: str, start: datetime, now: datetime = NOW) -> RuleViolation:
    with pytest.raises(RuleViolation) as exc:
        check_slot(v, product, location, start, now)
    return exc.value


def test_a_good_slot_gives_its_end() -> None:
    assert check_slot(view(), "residence-card", "mc", at(9, 0), NOW) == at(9, 20)
    assert check_slot(view(), "residence-card", "mc", at(12, 10), NOW) == at(12, 30)
    # The same instant written in UTC is the same slot.
    assert check_slot(view(), "residence-card", "mc", at(9, 0).astimezone(UTC), NOW) == at(9, 20)


def test_unknown_product_location_and_not_offered() -> None:
    v = view()
    assert violation(v, "nope", "mc", at(9, 0)).field == "product"
    assert violation(v, "residence-card", "nowhere", at(9, 0)).field == "location"
    assert violation(v, "single-permit", "mc", at(9, 0)).field == "location"


def test_off_grid_outside_hours_and_window() -> None:
    v = view()
    assert "grid" in violation(v, "residence-card", "mc", at(9, 5)).message
    assert violation(v, "residence-card", "mc", at(9, 5)).field == "start"
    assert "opening hours" in violation(v, "residence-card", "mc", at(12, 20)).message  # ends 12:40 > 12:30
    assert "opening hours" in violation(v, "residence-card", "mc", at(8, 50)).message
    assert "opening hours" in violation(v, "residence-card", "mc", at(10, 0, MONDAY + timedelta(days=1))).message
    # Booking window: 24 hours of notice, at most 60 days ahead.
    assert "ahead" in violation(v, "residence-card", "mc", at(9, 0), now=at(9, 0) - timedelta(hours=23)).message
    assert "ahead" in violation(v, "residence-card", "mc", at(9, 0), now=at(9, 0) - timedelta(days=61)).message
    check_slot(v, "residence-card", "mc", at(9, 0), at(9, 0) - timedelta(days=59))


def test_closed_day() -> None:
    v = view()
    v.apply(ev.ClosureDeclared(closure_id="c", location_id=None, day=MONDAY, kind="ad-hoc", reason="strike"))
    found = violation(v, "residence-card", "mc", at(9, 0))
    assert found.field == "start"
    assert "closed" in found.message


def test_dst_hours_are_wall_clock() -> None:
    """5 April 2027 lies after the switch to summer time: 09:00 in Ghent is 07:00 UTC."""
    v = view()
    day = date(2027, 4, 5)
    start = datetime(2027, 4, 5, 7, 0, tzinfo=UTC)
    assert check_slot(v, "residence-card", "mc", start, datetime(2027, 3, 1, tzinfo=UTC)) == at(9, 20, day)
