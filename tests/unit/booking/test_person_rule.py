"""Who a person is for "one appointment for one person and product" (`domain.rules.same_person`),
and which contact a product needs (`check_contact`).

Properties over variants of one person (the e-mail in any case or with its domain in punycode,
the phone in any notation, the name in any case or spacing, a contact added, a birth date or a
national number given once and not the other time) and over different people who share a contact
(a parent booking for children, siblings, namesakes with their own national numbers). Both hold
on the normalised values and on the keyed hashes the booking service stores. Through the
service's validation: `test_person_rule_service.py`.
"""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from loket_booking.domain.rules import (
    Person,
    RuleViolation,
    check_contact,
    email_identity,
    name_identity,
    normalise_email,
    normalise_phone,
    person_of,
    same_person,
)

SECRET = b"test-secret"
# Each example parses phones and addresses: no per-example deadline on a busy machine.
RELAXED = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- what a person writes, in several ways -----------------------------------------------------

GIVEN = ["Anna", "Jörg", "Anne-Marie", "Mohammed", "Aïcha", "Łukasz", "Oğuz", "Nguyễn Văn", "Zoë", "Grete"]
FAMILY = ["Peeters", "De Smet", "Müller", "El Amrani", "Van den Broeck", "Straße", "O'Brien", "Kowalski"]
# One number, several notations: E.164, national, with the 00 prefix, with dots and dashes.
PHONES = [
    ["+32470123456", "0470 12 34 56", "0032 470 12 34 56", "+32 (0)470-12.34.56", "+32 470 12 34 56"],
    ["+33612345678", "+33 6 12 34 56 78", "0033 6 12 34 56 78", "+33 (0)6 12 34 56 78"],
    ["+3292667111", "09 266 71 11", "+32 9 266 71 11", "0032 9 266 71 11"],
    ["+14155552671", "+1 415 555 2671", "+1 (415) 555-2671", "001 415 555 2671"],
]
# Valid national (and BIS) numbers with their birth dates, in two notations each.
NUMBERS = [
    (("85073003328", "85.07.30-033.28"), date(1985, 7, 30)),
    (("94021300145", "94.02.13-001.45"), date(1994, 2, 13)),
    (("06070500252", "06.07.05-002.52"), date(2006, 7, 5)),
    (("85273003371", "85.27.30-033.71"), date(1985, 7, 30)),  # BIS: month + 20
]
LOCAL = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z0-9]{1,8})?", fullmatch=True)
DOMAINS = [("example.org", "example.org"), ("bücher.example", "xn--bcher-kva.example"), ("stad.gent", "stad.gent")]


def recase(draw: st.DrawFn, text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(ch.upper() if flip else ch.lower() for ch, flip in zip(text, flips, strict=True))


def respace(draw: st.DrawFn, text: str) -> str:
    words = text.replace("-", " ").split() if draw(st.booleans()) else text.split()
    gap = draw(st.sampled_from([" ", "  ", " \t "]))
    return draw(st.sampled_from(["", " "])) + gap.join(words) + draw(st.sampled_from(["", "  "]))


@st.composite
def residents(draw: st.DrawFn) -> dict[str, object]:
    """One resident as they might fill in the form: a name, maybe a birth date or a national
    number, an e-mail and/or a phone."""
    number = draw(st.none() | st.sampled_from(NUMBERS))
    birth = number[1] if number else draw(st.none() | st.dates(date(1930, 1, 1), date(2025, 12, 31)))
    phone = draw(st.none() | st.sampled_from(PHONES))
    email = None if phone and draw(st.booleans()) else (draw(LOCAL), draw(st.sampled_from(DOMAINS)))
    return {
        "given": draw(st.sampled_from(GIVEN)),
        "family": draw(st.sampled_from(FAMILY)),
        "birth": birth,
        "number": number[0] if number else None,
        "email": email,
        "phone": phone,
    }


@st.composite
def as_written(draw: st.DrawFn, r: dict[str, object], contact: str = "both", keep: str = "") -> Person:
    """The resident as written one time: case, spacing and notation as they come; the birth date
    and the national number given or left out (`keep` "birth" or "number" keeps it). `contact`:
    "both" keeps what they have, "shared" at least one of their contacts."""
    given, family = str(r["given"]), str(r["family"])
    email = phone = None
    if r["email"]:
        local, (domain, ascii_domain) = r["email"]  # type: ignore[misc]
        email = recase(draw, local) + "@" + recase(draw, draw(st.sampled_from([domain, ascii_domain])))
    if r["phone"]:
        phone = draw(st.sampled_from(r["phone"]))  # type: ignore[arg-type]
    if contact == "shared" and email and phone:  # keep one of the two, at least
        kept = draw(st.sampled_from(["email", "phone", "both"]))
        email, phone = (email if kept != "phone" else None), (phone if kept != "email" else None)
    number = None
    if r["number"] and (keep == "number" or draw(st.booleans())):
        number = draw(st.sampled_from(r["number"]))  # type: ignore[arg-type]
    birth = r["birth"] if r["birth"] and (keep == "birth" or draw(st.booleans())) else None
    return person_of(
        respace(draw, recase(draw, given) if draw(st.booleans()) else given),
        respace(draw, recase(draw, family) if draw(st.booleans()) else family),
        None if number else birth,  # type: ignore[arg-type]
        number,
        email,
        phone,
    )


@st.composite
def one_person_twice(draw: st.DrawFn) -> tuple[Person, Person]:
    """Two requests of one resident. What ties them: a national number on both sides, or the
    same birth date on both sides, or (when a birth date is missing) a contact they share."""
    r = draw(residents())
    a = draw(as_written(r))
    b = draw(as_written(r, contact="shared"))
    if not (a.national and b.national) and not (a.birth and b.birth):
        # Without a number or a birth date on both sides, a shared contact is what ties them.
        assume(a.contacts & b.contacts)
    return a, b


@st.composite
def two_people_one_contact(draw: st.DrawFn) -> tuple[Person, Person]:
    """Two residents with the same e-mail address or phone: a parent and a child, two siblings,
    or two namesakes with their own national numbers."""
    first = draw(residents())
    second = draw(residents())
    how = draw(st.sampled_from(["another name", "another birth date", "another number"]))
    second["email"], second["phone"] = first["email"], first["phone"]
    if how == "another name":
        assume(name_identity(str(first["given"]), "") != name_identity(str(second["given"]), ""))
        second["family"] = first["family"]  # one family, two given names
    elif how == "another birth date":
        second["given"], second["family"], second["number"] = first["given"], first["family"], None
        first["number"] = None
        first["birth"] = first["birth"] or date(1990, 1, 1)
        second["birth"] = first["birth"] + timedelta(days=draw(st.integers(1, 4000)))  # type: ignore[operator]
    else:
        second["given"], second["family"] = first["given"], first["family"]
        numbers = draw(st.permutations(NUMBERS))
        (first["number"], first["birth"]), (second["number"], second["birth"]) = numbers[0], numbers[1]
    keep = {"another name": "", "another birth date": "birth", "another number": "number"}[how]
    a = draw(as_written(first, keep=keep))
    b = draw(as_written(second, keep=keep))
    if how == "another name":
        assume(not (a.national and a.national == b.national))  # one number is one person, whatever the name
    return a, b


@RELAXED
@given(one_person_twice())
def test_variants_of_one_person_are_one_person(pair: tuple[Person, Person]) -> None:
    a, b = pair
    assert same_person(a, b) and same_person(b, a)
    sealed_a, sealed_b = a.sealed(SECRET), b.sealed(SECRET)
    assert same_person(sealed_a, sealed_b)  # the rule holds on what the service stores, too
    assert set(sealed_a.lock_keys) & set(sealed_b.lock_keys)  # so their requests queue on one lock


@RELAXED
@given(two_people_one_contact())
def test_different_people_may_share_a_contact(pair: tuple[Person, Person]) -> None:
    a, b = pair
    assert not same_person(a, b) and not same_person(b, a)
    assert not same_person(a.sealed(SECRET), b.sealed(SECRET))


@RELAXED
@given(residents())
def test_a_person_is_the_same_person_as_themselves(r: dict[str, object]) -> None:
    person = person_of(
        str(r["given"]),
        str(r["family"]),
        r["birth"],  # type: ignore[arg-type]
        r["number"][0] if r["number"] else None,  # type: ignore[index]
        f"{r['email'][0]}@{r['email'][1][0]}" if r["email"] else None,  # type: ignore[index]
        r["phone"][0] if r["phone"] else None,  # type: ignore[index]
    )
    assert same_person(person, person)
    assert person.sealed(SECRET) == person.sealed(SECRET)
    assert person.sealed(SECRET) != person.sealed(b"another secret")


# --- the examples ----------------------------------------------------------------------


@RELAXED
@given(st.data(), residents())
def test_a_request_validated_once_gives_the_same_person_as_one_parsed_again(
    data: st.DataObject, r: dict[str, object]
) -> None:
    """The booking service builds the person from the contacts it already normalised
    (`contacts_normalised=True`): the same person as from the contacts as written."""
    email = phone = None
    if r["email"]:
        local, (domain, ascii_domain) = r["email"]  # type: ignore[misc]
        email = recase(data.draw, local) + "@" + data.draw(st.sampled_from([domain, ascii_domain]))
    if r["phone"]:
        phone = data.draw(st.sampled_from(r["phone"]))  # type: ignore[arg-type]
    number = data.draw(st.sampled_from(r["number"])) if r["number"] else None  # type: ignore[arg-type]
    as_written = person_of(str(r["given"]), str(r["family"]), r["birth"], number, email, phone)  # type: ignore[arg-type]
    normalised = person_of(
        str(r["given"]),
        str(r["family"]),
        r["birth"],  # type: ignore[arg-type]
        number,
        normalise_email(email) if email else None,
        normalise_phone(phone) if phone else None,
        contacts_normalised=True,
    )
    assert normalised == as_written


def anna(email: str | None = "anna.x@example.org", phone: str | None = None) -> Person:
    return person_of("Anna", "Peeters", email=email, phone=phone)


@pytest.mark.parametrize(
    "again",
    [
        anna("Anna.X@example.org"),
        anna("ANNA.X@EXAMPLE.ORG"),
        anna("anna.x@example.org", phone="+32 470 12 34 56"),
        person_of(" anna ", "PEETERS", email="Anna.X@Example.Org"),
    ],
)
def test_the_same_resident_with_another_case_or_a_phone_is_one_person(again: Person) -> None:
    assert same_person(anna(), again)


def test_a_parent_booking_for_two_children_with_one_address_books_for_two_people() -> None:
    first = person_of("Lina", "Peeters", date(2018, 3, 1), email="anna.x@example.org")
    second = person_of("Noor", "Peeters", date(2020, 9, 12), email="ANNA.X@example.org")
    assert not same_person(first, second)
    twins = person_of("Lina", "Peeters", date(2018, 3, 1)), person_of("Noor", "Peeters", date(2018, 3, 1))
    assert not same_person(*twins)  # same birth date, another name: twins


def test_namesakes_without_a_shared_contact_or_birth_date_are_two_people() -> None:
    assert not same_person(anna("anna.x@example.org"), anna("anna.peeters@example.com"))
    assert same_person(  # ... but one birth date on both sides makes them one, whatever the address
        person_of("Anna", "Peeters", date(1990, 5, 1), email="a@example.org"),
        person_of("Anna", "Peeters", date(1990, 5, 1), email="b@example.org"),
    )


def test_a_national_number_decides_when_both_give_one() -> None:
    one = person_of("Anna", "Peeters", national_number="85073003328", email="a@example.org")
    assert same_person(one, person_of("Anna Maria", "Peeters-Janssens", national_number="85.07.30-033.28"))
    assert not same_person(one, person_of("Anna", "Peeters", national_number="94021300145", email="a@example.org"))
    # Given once and not the other time: the name and the birth date in the number decide.
    assert same_person(one, person_of("ANNA", "peeters", date(1985, 7, 30), phone="+32 470 00 00 00"))
    assert not same_person(one, person_of("Anna", "Peeters", date(1985, 7, 31), email="a@example.org"))


def test_normalised_names_and_addresses() -> None:
    assert name_identity("  Anne-Marie ", "DE  SMET") == "anne marie|de smet"
    assert name_identity("Jörg", "Straße") == name_identity("JORG", "strasse")
    assert email_identity("ANNA.X@EXAMPLE.ORG") == "anna.x@example.org"
    assert (
        email_identity("Jörg@XN--BCHER-KVA.example") == email_identity("jörg@Bücher.Example") == "jörg@bücher.example"
    )


# --- what a contact must be able to receive ----------------------------------------------------


def test_a_product_that_must_be_confirmed_needs_an_e_mail_address() -> None:
    check_contact("a@example.org", None, requires_confirmation=True)
    check_contact(None, "+32470123456", requires_confirmation=False)
    with pytest.raises(RuleViolation) as refused:
        check_contact(None, "+32470123456", requires_confirmation=True)
    assert refused.value.field == "contact.email" and "e-mail" in refused.value.message
    with pytest.raises(RuleViolation) as nothing:
        check_contact(None, None, requires_confirmation=False)
    assert nothing.value.field == "contact"


def test_international_addresses_are_kept_or_refused_by_what_the_mail_server_can_carry() -> None:
    assert normalise_email("anna@BÜCHER.example") == "anna@bücher.example"  # sent as xn--bcher-kva
    assert normalise_email("anna@xn--bcher-kva.example", smtputf8=False) == "anna@bücher.example"
    assert normalise_email("jörg@example.org") == "jörg@example.org"  # needs SMTPUTF8: offered
    with pytest.raises(RuleViolation) as refused:
        normalise_email("jörg@example.org", smtputf8=False)
    assert refused.value.field == "contact.email" and "ASCII" in refused.value.message
