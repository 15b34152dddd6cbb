"""The per-person rule and the contact rule through the booking service's validation (no
database): every variant of one resident is sealed to one person, different people are not, and
a contact that cannot receive what the product needs is refused with a 422 naming the field. The
rule itself: `test_person_rule.py`."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from loket_booking.application.service import BookingPolicy, BookingService, NewBooking
from loket_booking.domain.rules import RuleViolation, same_person
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS, CatalogueView

L = {"nl": "x", "en": "x", "fr": "x"}
MONDAY = date(2031, 3, 3)  # far from today's clock: the rules get `now` passed in
NOW = datetime(2031, 2, 24, 9, 0, tzinfo=UTC)


def catalogue() -> CatalogueView:
    v = CatalogueView()
    v.apply(ev.ProductDefined(product_id="residence-card", name=L, description=L, duration_minutes=20))
    v.apply(
        ev.ProductDefined(
            product_id="long-stay", name=L, description=L, duration_minutes=20, requires_confirmation=True
        )
    )
    v.apply(
        ev.LocationDefined(
            location_id="mc", name="MC", address="x", products=["residence-card", "long-stay"], slot_grid_minutes=10
        )
    )
    v.apply(ev.DeskDefined(desk_id="mc-1", location_id="mc", name="1", products=["residence-card", "long-stay"]))
    v.apply(
        ev.SchedulePublished(
            schedule_id="s1",
            desk_id="mc-1",
            location_id="mc",
            effective_from=date(2031, 1, 1),
            weekly={"1": [ev.TimeBlock(start="09:00", end="12:30")]},
        )
    )
    return v


def request(product: str = "residence-card", **overrides: object) -> NewBooking:
    fields: dict[str, object] = {
        "product": product,
        "location": "mc",
        "start": datetime(MONDAY.year, MONDAY.month, MONDAY.day, 9, 0, tzinfo=BRUSSELS),
        "given_name": "Anna",
        "family_name": "Peeters",
        "birth_date": None,
        "national_number": None,
        "nationality": None,
        "email": "anna.x@example.org",
        "phone": None,
        "language": "nl",
    }
    return NewBooking(**(fields | overrides))  # type: ignore[arg-type]


def test_the_service_seals_one_person_the_same_way_for_every_variant() -> None:
    service = BookingService(catalogue(), "secret", BookingPolicy())
    _, private, first = service.validate(request(), NOW)
    for variant in (
        request(email="ANNA.X@EXAMPLE.ORG"),
        request(email="Anna.X@example.org", phone="0470 12 34 56"),
        request(given_name="ANNA", family_name=" peeters "),
    ):
        assert same_person(first, service.validate(variant, NOW)[2])
    assert private["email"] == "anna.x@example.org"  # kept as written (the local part's case too)
    assert "anna" not in repr(first).lower()  # sealed: no personal data in the clear
    child = request(given_name="Noor", birth_date=date(2020, 9, 12))
    assert not same_person(first, service.validate(child, NOW)[2])


def test_the_service_refuses_a_phone_alone_for_a_product_that_must_be_confirmed() -> None:
    service = BookingService(catalogue(), "secret", BookingPolicy())
    service.validate(request("long-stay"), NOW)
    service.validate(request("residence-card", email=None, phone="+32 470 12 34 56"), NOW)
    with pytest.raises(RuleViolation) as refused:
        service.validate(request("long-stay", email=None, phone="+32 470 12 34 56"), NOW)
    assert refused.value.field == "contact.email"


def test_the_service_refuses_a_utf8_local_part_when_the_mail_server_cannot_carry_it() -> None:
    accepting = BookingService(catalogue(), "secret", BookingPolicy())
    assert accepting.validate(request(email="jörg@bücher.example"), NOW)[1]["email"] == "jörg@bücher.example"
    refusing = BookingService(catalogue(), "secret", BookingPolicy(smtputf8=False))
    refusing.validate(request(email="anna@bücher.example"), NOW)  # an IDN domain always goes (IDNA)
    with pytest.raises(RuleViolation) as refused:
        refusing.validate(request(email="jörg@bücher.example"), NOW)
    assert refused.value.field == "contact.email"
