"""What the page tells a resident before and after booking: the city's pointers, the child's birth
date as required, the confirmation with the reference, what to bring, the fee, the address and where
the e-mail went (no desk id); and the language of the link, else of the browser."""

from __future__ import annotations

import re

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import Pages, assert_accessible, book_first_free, shot
from tests.conftest import RunningStack
from tests.e2e.helpers import free_slots, open_day


def test_the_booking_page_says_what_the_city_page_says(pages: Pages) -> None:
    page = pages.new()
    page.goto("/?lang=nl")
    notes = page.locator("#city-notes")
    expect(notes).to_contain_text("Deze afspraak is niet bedoeld om informatie te vragen")
    expect(notes).to_contain_text("Infopunt Migratie")
    expect(notes).to_contain_text("alleen op de locatie waar u ze aanvroeg")
    notes.get_by_text("Zonder afspraak, per e-mail (migratie@stad.gent)").click()
    expect(notes.locator("#by-email li")).to_have_count(7)
    expect(notes.locator("#by-email")).to_contain_text("Uw bijlage 35 verlengen")

    # Picking up a card: the rule is repeated where the location is chosen.
    page.get_by_role("radio", name=re.compile(r"^Verblijfskaart afhalen")).check()
    expect(page.locator("#pickup-location-rule")).to_be_visible()
    shot(page, "tells-1-city-notes")
    assert_accessible(page, "tells-1-city-notes")


def test_the_child_card_marks_the_birth_date_required(pages: Pages) -> None:
    page = pages.new()
    page.goto("/?lang=en")
    birth = page.locator("#f-person-birth_date")
    expect(page.locator("label[for=f-person-birth_date]")).to_contain_text("(optional)")
    page.get_by_role("radio", name=re.compile(r"^Identity document for a child under 12")).check()
    expect(page.locator("label[for=f-person-birth_date]")).to_have_text(
        re.compile(r"^Child's date of birth.*\(required\)")
    )
    expect(birth).to_have_attribute("aria-required", "true")

    # Left empty, it is named with the other missing fields, all at once, each at its field.
    page.locator("input[name=location]").first.check()
    page.locator("#times-fieldset input[type=radio]").first.check()
    page.get_by_role("button", name="Book this appointment").click()
    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary.locator("li")).to_have_count(4)  # given name, family name, birth date, e-mail
    expect(page.locator("#f-person-birth_date-field .field-error")).to_have_text("Please fill this in.")
    expect(birth).to_have_attribute("aria-invalid", "true")
    shot(page, "tells-2-child-birth-date")
    assert_accessible(page, "tells-2-child-birth-date")


def test_the_confirmation_shows_reference_documents_fee_address_and_e_mail(pages: Pages, live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, "child-card", "sc-oostakker", min_free=1)
    start = free_slots(client, "child-card", "sc-oostakker", day)[0]["start"]

    page = pages.new()
    page.goto(f"/?product=child-card&location=sc-oostakker&date={day.isoformat()}&lang=nl")
    page.locator(f"#times-fieldset input[value='{start}']").check()
    page.get_by_label(re.compile(r"^Voornaam")).fill("Noor")
    page.get_by_label(re.compile(r"^Achternaam")).fill("Haddad")
    page.get_by_label(re.compile(r"^Geboortedatum van het kind")).fill("2021-03-14")
    page.get_by_label(re.compile(r"^E-mailadres")).fill("noor.haddad@example.org")
    page.get_by_role("button", name="Afspraak bevestigen").click()

    card = page.locator("#decision-card")
    expect(card).to_have_attribute("data-status", "confirmed")
    answer = page.evaluate("window.__lastBooking")
    assert re.fullmatch(r"[0-9A-HJKMNP-TV-Z]{8}", answer["reference"]), answer
    expect(page.locator("#booking-reference")).to_have_text(answer["reference"])
    expect(page.locator("#decision-bring")).to_have_text("Pasfoto van het kind, Bewijs van ouderlijk gezag")
    expect(page.locator("#decision-fee")).to_have_text(re.compile(r"^€\s8,50$"))
    expect(page.locator("#decision-address")).to_have_text("Dienstencentrum Oostakker, Oostakker, 9041 Gent")
    expect(page.locator("#decision-email")).to_have_text("We stuurden een e-mail naar noor.haddad@example.org.")
    expect(card).to_contain_text("(Brusselse tijd)")
    assert answer["desk"] not in card.inner_text(), "no internal desk id on the confirmation"
    shot(page, "tells-3-confirmation")
    assert_accessible(page, "tells-3-confirmation")

    # The manage page shows the same reference.
    page.locator("#manage-link").click()
    expect(page.locator("#booking-reference")).to_have_text(answer["reference"])


def test_the_language_comes_from_the_link_then_from_the_browser(pages: Pages, live: RunningStack) -> None:
    # A French browser without a choice of its own: French.
    page = pages.new(locale="fr-BE")
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("heading", level=1)).to_have_text("Prendre rendez-vous")

    # An English browser opening the link of an e-mail in Dutch: Dutch.
    booking = book_first_free(live, "short-stay", "sc-ledeberg", language="nl")
    page = pages.new(locale="en-GB")
    page.goto(f"/manage/{booking['id']}?token={booking['manage_token']}&lang=nl")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    expect(page.get_by_role("heading", level=1)).to_have_text("Mijn afspraak")
    expect(page.locator("#booking-when")).to_contain_text("(Brusselse tijd)")
    expect(page.locator("#manage details summary")).to_have_text("Geschiedenis (Brusselse tijd)")
    page.locator("#manage details summary").click()
    expect(page.locator("#manage details ol")).to_contain_text("Afspraak bevestigd")
    expect(page.locator("#manage details ol")).not_to_contain_text("booking-")
    manage = {"Authorization": f"Bearer {booking['manage_token']}"}
    httpx.post(f"{live.base_url}/api/v1/bookings/{booking['id']}/cancel", headers=manage)
