"""Resident rules, pure: national register numbers, phones, e-mail, who a person is, eligibility
and the slot grid.

Each failed rule raises `RuleViolation(field, message)`, which the API turns into a 422 naming
the field (e.g. `person.national_number`); the message is a `Text` (`tr`), which the answer gives
in the resident's language, and names a product by its name, never by its id.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from loket_contracts.events import Localized
from loket_runtime.catalogue import BRUSSELS, CatalogueView, local_day
from loket_runtime.i18n import Text, tr


class RuleViolation(ValueError):
    """`field` is machine-readable (the request's path, e.g. `contact.email`); `message` is a `Text`."""

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
        raise RuleViolation(field, tr("must be 11 digits, e.g. 85.07.30-033.28"))
    base, check = int(digits[:9]), int(digits[9:])
    if 97 - base % 97 == check:
        century = 1900
    elif 97 - (2_000_000_000 + base) % 97 == check:
        century = 2000
    else:
        raise RuleViolation(field, tr("the check digits do not match: please check the number"))
    yy, mm, dd = int(digits[0:2]), int(digits[2:4]), int(digits[4:6])
    bis = mm >= 20
    if mm >= 40:
        mm -= 40
    elif mm >= 20:
        mm -= 20
    serial = int(digits[6:9])
    if serial in (0, 998, 999) and not bis:
        raise RuleViolation(field, tr("the serial part is out of range"))
    if mm > 12:  # no month, even with an unknown day (00)
        raise RuleViolation(field, tr("the birth date in the number does not exist"))
    birth: date | None = None
    if mm and dd:  # an unknown month or day is written as 00
        try:
            birth = date(century + yy, mm, dd)
        except ValueError as exc:
            raise RuleViolation(field, tr("the birth date in the number does not exist")) from exc
    return NationalNumber(digits, birth, bis)


def normalise_phone(raw: str, field: str = "contact.phone") -> str:
    """E.164; numbers without a country code are read as Belgian."""
    try:
        number = phonenumbers.parse(raw, "BE")
    except phonenumbers.NumberParseException as exc:
        raise RuleViolation(field, tr("not a phone number; use e.g. +32 470 12 34 56")) from exc
    if not phonenumbers.is_valid_number(number):
        raise RuleViolation(field, tr("not a valid phone number; use e.g. +32 470 12 34 56"))
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(raw: str, field: str = "contact.email", *, smtputf8: bool = True) -> str:
    """The address as e-mail is sent to it (domain lower-cased, in Unicode; local part as written).

    A domain in Unicode (`bücher.example`) is always deliverable: it is sent IDNA-encoded
    (`xn--bcher-kva.example`). A local part outside ASCII (`jörg@...`) needs a mail server that
    offers SMTPUTF8 (RFC 6531): `smtputf8=False` refuses such an address here, at booking time,
    rather than accepting a booking whose messages could never leave."""
    try:
        address = validate_email(raw, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise RuleViolation(field, tr("not a valid e-mail address; use e.g. name@example.org")) from exc
    if address.smtputf8 and not smtputf8:
        raise RuleViolation(
            field,
            tr(
                "our mail server cannot deliver to an address with accents or other non-ASCII characters"
                " before the @; give another address"
            ),
        )
    return address.normalized


def email_identity(address: str) -> str:
    """An address as the per-person rule compares it: case-insensitive, whatever form the domain
    was written in (`ANNA.X@EXAMPLE.ORG` is `anna.x@example.org`, `xn--bcher-kva` is `bücher`)."""
    return _email_identity_of(normalise_email(address))


def _email_identity_of(normalised: str) -> str:
    return unicodedata.normalize("NFC", normalised).casefold()


# --- who a person is: the per-person rule ------------------------------------------------------


def name_identity(given_name: str, family_name: str) -> str:
    """A name as the per-person rule compares it: case, accents, spacing and punctuation aside
    (`Anne-Marie  DE SMET` is `anne marie|de smet`, `Jörg` is `jorg`, `ß` is `ss`)."""

    def words(raw: str) -> str:
        decomposed = unicodedata.normalize("NFKD", raw)
        bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
        return " ".join(re.findall(r"[^\W_]+", bare.casefold()))

    return f"{words(given_name)}|{words(family_name)}"


@dataclass(frozen=True)
class Person:
    """Who a booking is for, as the per-person rule ("one appointment for one person and product")
    tells people apart. Every field is compared for equality only, so the same rule holds on the
    normalised values (`person_of`) and on their keyed hashes (`Person.sealed`), which is what the
    booking service stores: no personal data beyond the name is kept in the clear."""

    name: str
    birth: str | None = None
    national: str | None = None
    email: str | None = None
    phone: str | None = None

    @property
    def contacts(self) -> frozenset[str]:
        return frozenset(f"{kind}:{value}" for kind, value in (("email", self.email), ("phone", self.phone)) if value)

    def sealed(self, secret: bytes) -> Person:
        """Each field as an HMAC-SHA256 (hex) under `secret`: equal exactly when the values are."""

        def seal(kind: str, value: str) -> str:
            return hmac.new(secret, f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()

        def maybe(kind: str, value: str | None) -> str | None:
            return None if value is None else seal(kind, value)

        return Person(
            name=seal("name", self.name),
            birth=maybe("birth", self.birth),
            national=maybe("national", self.national),
            email=maybe("email", self.email),
            phone=maybe("phone", self.phone),
        )

    @property
    def lock_keys(self) -> list[str]:
        """Advisory-lock names that any two requests `same_person` could match share (the name or
        the national number), in one order so that two requests never wait on each other crosswise."""
        return sorted(f"{kind}:{value}" for kind, value in (("name", self.name), ("nn", self.national)) if value)


def person_of(
    given_name: str,
    family_name: str,
    birth_date: date | None = None,
    national_number: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    *,
    contacts_normalised: bool = False,
) -> Person:
    """The person of a booking request, normalised: the national or BIS number as its 11 digits,
    the birth date (given, or read from the number), e-mail case-insensitive, phone in E.164.
    `contacts_normalised`: the e-mail and phone are already what `normalise_email` and
    `normalise_phone` made of them (a request validated once is not parsed twice)."""
    national = parse_national_number(national_number) if national_number else None
    birth = birth_date or (national.birth_date if national else None)
    if contacts_normalised:
        email_key, phone_key = (_email_identity_of(email) if email else None), phone
    else:
        email_key = email_identity(email) if email else None
        phone_key = normalise_phone(phone) if phone else None
    return Person(
        name=name_identity(given_name, family_name),
        birth=birth.isoformat() if birth else None,
        national=national.digits if national else None,
        email=email_key,
        phone=phone_key,
    )


def same_person(a: Person, b: Person) -> bool:
    """The per-person rule's idea of "the same person", in this order:

    1. Both give a national (or BIS) number: the same number is the same person, another number
       another person, whatever the names and contacts.
    2. Otherwise another name is another person: a parent booking for two children with one
       e-mail address books for three people.
    3. The same name with two different birth dates is two people; with the same birth date, one.
    4. The same name where a birth date is missing: one person when they share a contact (the
       e-mail, case-insensitive, or the phone in E.164), two namesakes when they share none.

    A contact alone never makes two requests one person: one address may serve a whole family."""
    if a.national and b.national:
        return a.national == b.national
    if a.name != b.name:
        return False
    if a.birth and b.birth:
        return a.birth == b.birth
    return bool(a.contacts & b.contacts)


def check_contact(email: str | None, phone: str | None, requires_confirmation: bool) -> None:
    """The contact must be able to receive what the product needs. Every booking needs a way to
    reach the resident; a product that must be confirmed needs an e-mail address, because the
    confirm link goes by e-mail and a hold nobody can confirm only expires."""
    if not email and not phone:
        raise RuleViolation("contact", tr("give an e-mail address or a phone number so we can reach you"))
    if requires_confirmation and not email:
        raise RuleViolation(
            "contact.email",
            tr(
                "this appointment must be confirmed with a link we send by e-mail: give an e-mail address"
                " (a phone number alone cannot receive it)"
            ),
        )


def age_on(birth: date, day: date) -> int:
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def check_eligibility(
    product: str | Localized,
    eligibility: Mapping[str, object],
    birth: date | None,
    appointment: date,
    location_id: str,
    applied_at: str | None,
) -> None:
    """The product's eligibility rules (`max_age_years`, `same_location_as_application`) hold for
    the person; `product` is its name as the resident reads it (a catalogue `Localized`)."""
    max_age = eligibility.get("max_age_years")
    if isinstance(max_age, int):
        if birth is None:
            raise RuleViolation("person.birth_date", tr("%(product)s needs the child's birth date", product=product))
        if age_on(birth, appointment) >= max_age:
            raise RuleViolation(
                "person.birth_date",
                tr(
                    "%(product)s is for a child under %(age)s on the day of the appointment",
                    product=product,
                    age=max_age,
                ),
            )
    if eligibility.get("same_location_as_application") and applied_at and applied_at != location_id:
        raise RuleViolation(
            "location", tr("pick the card up where you applied for it: %(location)s", location=applied_at)
        )


def check_slot(view: CatalogueView, product_id: str, location_id: str, start: datetime, now: datetime) -> datetime:
    """The product, location and start time make a bookable slot; returns the end."""
    product = view.products.get(product_id)
    if product is None:
        raise RuleViolation("product", tr("unknown product %(product)r", product=product_id))
    location = view.locations.get(location_id)
    if location is None:
        raise RuleViolation("location", tr("unknown location %(location)r", location=location_id))
    if product_id not in location.products:
        raise RuleViolation(
            "location", tr("%(location)s does not offer %(product)s", location=location.name, product=product.name)
        )
    if start.tzinfo is None:
        raise RuleViolation("start", tr("give the time with its offset, e.g. 2026-12-01T09:00:00+01:00"))
    wall = start.astimezone(BRUSSELS)
    if wall.second or wall.microsecond or (wall.hour * 60 + wall.minute) % location.slot_grid_minutes:
        raise RuleViolation(
            "start", tr("appointments start on a %(minutes)s-minute grid", minutes=location.slot_grid_minutes)
        )
    if start < now + timedelta(hours=product.min_notice_hours):
        raise RuleViolation("start", tr("book at least %(hours)s hours ahead", hours=product.min_notice_hours))
    if local_day(start) > local_day(now) + timedelta(days=product.max_days_ahead):
        raise RuleViolation("start", tr("book at most %(days)s days ahead", days=product.max_days_ahead))
    day = local_day(start)
    closure = view.closure_on(location_id, day)
    if closure is not None:
        # The city's closing days are named by the catalogue's marked texts (a holiday's name), which
        # the catalogues translate; an ad-hoc closure's reason is the admin's own words.
        reason = closure.reason if closure.kind == "ad-hoc" else Text(closure.reason)
        raise RuleViolation("start", tr("the counter is closed that day (%(reason)s)", reason=reason))
    end = start + timedelta(minutes=product.duration_minutes)
    for desk in view.desks_for(location_id, product_id):
        if any(h.start <= start and end <= h.end for h in view.desk_hours(desk.desk_id, day)):
            return end
    raise RuleViolation("start", tr("outside the opening hours for this product"))
