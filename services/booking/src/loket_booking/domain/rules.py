"""Resident rules, pure: national register numbers, phones, e-mail, eligibility and the slot grid.

Each failed rule raises `RuleViolation(field, message)`, which the API turns into a 422 naming
the field (e.g. `person.national_number`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from loket_runtime.catalogue import BRUSSELS, CatalogueView, local_day


class RuleViolation(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class NationalNumber:
    digits: str
    birth_date: date | None
    bis: bool

    @property
    def formatted(self) -> str:
        d = self.digits
        return f"{d[0:2]}.{d[2:4]}.{d[4:6]}-{d[6:9]}.{d[9:11]}"


def parse_national_number(raw: str, field: str = "person.national_number") -> NationalNumber:
    """Belgian national register (or BIS) number: 11 digits YYMMDDSSSCC with a mod-97 checksum."""
    digits = "".join(ch for ch in raw if ch.isdigit())
    if len(digits) != 11 or any(ch not in "0123456789.- " for ch in raw):
        raise RuleViolation(field, "must be 11 digits, e.g. 85.07.30-033.28")
    base, check = int(digits[:9]), int(digits[9:])
    if 97 - base % 97 == check:
        century = 1900
    elif 97 - (2_000_000_000 + base) % 97 == check:
        century = 2000
    else:
        raise RuleViolation(field, "the check digits do not match: please check the number")
    yy, mm, dd = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    bis = mm >= 20
    if mm >= 40:
        mm -= 40
    elif mm >= 20:
        mm -= 20
    serial = int(digits[6:9])
    if serial in (0, 998, 999) and not bis:
        raise RuleViolation(field, "the serial part is out of range")
    birth: date | None = None
    if mm and dd:  # an unknown month or day is written as 00
        try:
            birth = date(century + yy, mm, dd)
        except ValueError as exc:
            raise RuleViolation(field, "the birth date in the number does not exist") from exc
    return NationalNumber(digits, birth, bis)


def normalise_phone(raw: str, field: str = "contact.phone") -> str:
    """E.164; numbers without a country code are read as Belgian."""
    try:
        number = phonenumbers.parse(raw, "BE")
    except phonenumbers.NumberParseException as exc:
        raise RuleViolation(field, "not a phone number; use e.g. +32 470 12 34 56") from exc
    if not phonenumbers.is_valid_number(number):
        raise RuleViolation(field, "not a valid phone number; use e.g. +32 470 12 34 56")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str, field: str = "contact.email") -> str:
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise RuleViolation(field, str(exc)) from exc


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_eligibility(
    product_id: str,
    eligibility: Mapping[str, object],
    birth: date | None,
    appointment: date,
    location_id: str,
    applied_at: str | None,
) -> None:
    max_age = eligibility.get("max_age_years")
    if isinstance(max_age, int):
        if birth is None:
            raise RuleViolation("person.birth_date", f"{product_id} needs the child's birth date")
        if age_on(birth, appointment) >= max_age:
            raise RuleViolation(
                "person.birth_date", f"{product_id} is for a child under {max_age} on the day of the appointment"
            )
    if eligibility.get("same_location_as_application") and applied_at and applied_at != location_id:
        raise RuleViolation("location", f"pick the card up where you applied for it: {applied_at}")


def check_slot(view: CatalogueView, product_id: str, location_id: str, start: datetime, now: datetime) -> datetime:
    """The product, location and start time make a bookable slot; returns the end."""
    product = view.products.get(product_id)
    if product is None:
        raise RuleViolation("product", f"unknown product {product_id!r}")
    location = view.locations.get(location_id)
    if location is None:
        raise RuleViolation("location", f"unknown location {location_id!r}")
    if product_id not in location.products:
        raise RuleViolation("location", f"{location.name} does not offer {product_id}")
    if start.tzinfo is None:
        raise RuleViolation("start", "give the time with its offset, e.g. 2026-12-01T09:00:00+01:00")
    wall = start.astimezone(BRUSSELS)
    if wall.second or wall.microsecond or (wall.hour * 60 + wall.minute) % location.slot_grid_minutes:
        raise RuleViolation("start", f"appointments start on a {location.slot_grid_minutes}-minute grid")
    if start < now + timedelta(hours=product.min_notice_hours):
        raise RuleViolation("start", f"book at least {product.min_notice_hours} hours ahead")
    if local_day(start) > local_day(now) + timedelta(days=product.max_days_ahead):
        raise RuleViolation("start", f"book at most {product.max_days_ahead} days ahead")
    day = local_day(start)
    closure = view.closure_on(location_id, day)
    if closure is not None:
        raise RuleViolation("start", f"the counter is closed that day ({closure.reason})")
    end = start + timedelta(minutes=product.duration_minutes)
    for desk in view.desks_for(location_id, product_id):
        if any(h.start <= start and end <= h.end for h in view.desk_hours(desk.desk_id, day)):
            return end
    raise RuleViolation("start", "outside the opening hours for this product")
