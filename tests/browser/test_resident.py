"""A resident books in Dutch, then cancels from the manage page (the link of the e-mail)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import Pages, assert_accessible, book_first_free, shot
from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_by_day, today

BRUSSELS = ZoneInfo("Europe/Brussels")


def choose_first_free_time(page: Any) -> str:
    page.get_by_role("radio", name=re.compile(r"^Verblijfskaart \(vernieuwing")).check()
    page.get_by_role("radio", name=re.compile(r"^Loket Migratie")).check()
    first = page.locator("#times-fieldset input[type=radio]").first
    first.check()
    return str(first.get_attribute("value"))


def test_resident_books_in_dutch_and_cancels_from_the_manage_page(pages: Pages, live: RunningStack) -> None:
    page = pages.new()
    page.goto("/")
    expect(page.locator("html")).to_have_attribute("lang", "nl")
    expect(page.get_by_role("heading", level=1)).to_have_text("Een afspraak maken")
    assert_accessible(page, "resident-1-start")

    start = choose_first_free_time(page)
    page.get_by_label("Voornaam").fill("Amina")
    page.get_by_label("Achternaam").fill("El Amrani")
    page.get_by_label("Rijksregisternummer").fill("85.07.30-033.29")  # wrong check digits
    page.get_by_label("E-mailadres").fill("amina.elamrani@example.org")
    expect(page.locator("#choice-summary")).to_contain_text("Verblijfskaart")
    shot(page, "resident-1-form")

    # The API's 422 names the field: its message is shown next to that field, and summarised.
    page.get_by_role("button", name="Afspraak bevestigen").click()
    field_error = page.locator("#f-person-national_number-field .field-error")
    expect(field_error).to_contain_text("de controlecijfers kloppen niet")  # in the page's language
    expect(page.get_by_label("Rijksregisternummer")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#error-summary")).to_be_focused()
    shot(page, "resident-2-validation")
    assert_accessible(page, "resident-2-validation")

    page.get_by_label("Rijksregisternummer").fill("85.07.30-033.28")
    page.get_by_role("button", name="Afspraak bevestigen").click()
    card = page.locator("#decision-card")
    expect(card).to_have_attribute("data-status", "confirmed")
    expect(page.locator("#decision-title")).to_have_text("Uw afspraak is bevestigd")
    expect(page.locator("#decision")).to_have_attribute("aria-live", "polite")
    shot(page, "resident-3-confirmed")
    assert_accessible(page, "resident-3-confirmed")

    answer = page.evaluate("window.__lastBooking")
    assert answer["status"] == "confirmed" and answer["start"] == start
    manage_url = str(page.locator("#manage-link").get_attribute("href"))
    assert manage_url == f"/manage/{answer['id']}?token={answer['manage_token']}"

    # The link from the e-mail, opened in a fresh browser.
    manage = pages.new()
    manage.goto(manage_url)
    expect(manage.get_by_role("heading", level=1)).to_have_text("Mijn afspraak")
    expect(manage.locator("#booking-status")).to_have_text("bevestigd")
    expect(manage.get_by_role("link", name="Toevoegen aan mijn agenda")).to_have_attribute(
        "href", re.compile(r"/calendar\.ics\?token=")
    )
    shot(manage, "resident-4-manage")
    assert_accessible(manage, "resident-4-manage")

    manage.get_by_role("button", name="Afspraak annuleren").click()
    manage.get_by_role("button", name="Ja, annuleren").click()
    expect(manage.locator("#booking-status")).to_have_text("geannuleerd")
    expect(manage.locator("#manage-status")).to_have_text("Uw afspraak is geannuleerd.")
    shot(manage, "resident-5-cancelled")

    shown = httpx.get(
        f"{live.base_url}/api/v1/bookings/{answer['id']}",
        headers={"Authorization": f"Bearer {answer['manage_token']}"},
    )
    assert shown.json()["status"] == "cancelled"


def test_the_booking_page_fits_a_phone_and_speaks_three_languages(pages: Pages) -> None:
    page = pages.new(viewport=(375, 740))
    page.goto("/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Een afspraak maken")
    choose_first_free_time(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 375, "no sideways scrolling on a phone"

    page.get_by_label("Taal").select_option("en")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.get_by_role("heading", level=1)).to_have_text("Book an appointment")
    expect(page.get_by_role("radio", name=re.compile(r"^Residence card"))).to_be_checked()  # choices are kept

    page.get_by_label("Language").select_option("fr")
    expect(page.locator("html")).to_have_attribute("lang", "fr")
    expect(page.get_by_role("heading", level=1)).to_have_text("Prendre rendez-vous")
    expect(page.get_by_role("radio", name=re.compile(r"^Carte de séjour"))).to_be_visible()
    shot(page, "resident-6-phone-fr")
    assert_accessible(page, "resident-6-phone-fr")


def test_a_slot_taken_meanwhile_offers_the_alternatives_and_the_waitlist(pages: Pages, live: RunningStack) -> None:
    page = pages.new()
    page.goto("/?lang=nl")
    page.get_by_role("radio", name=re.compile(r"^Verblijfskaart \(vernieuwing")).check()
    page.get_by_role("radio", name=re.compile(r"^Dienstencentrum Drongen")).check()
    page.get_by_label("Dag", exact=True).select_option(index=1)  # not the first day: the resident test's day stays free
    first = page.locator("#times-fieldset input[type=radio]").first
    first.check()
    start = str(first.get_attribute("value"))
    page.get_by_label("Voornaam").fill("Jean")
    page.get_by_label("Achternaam").fill("Mukendi")
    page.get_by_label("E-mailadres").fill("jean.mukendi@example.org")

    # Meanwhile other residents take every desk at that time.
    client = httpx.Client(base_url=live.base_url, timeout=30)
    for _ in range(12):
        r = client.post(
            "/api/v1/bookings",
            json=booking_body("residence-card", "sc-drongen", start),
            headers={"Prefer": "wait=5"},
        )
        if r.status_code == 409:
            break
        assert r.status_code == 201, r.text
    else:
        raise AssertionError("the slot never filled up")

    page.get_by_role("button", name="Afspraak bevestigen").click()
    alternatives = page.locator("#alternatives")
    expect(alternatives.get_by_role("heading", level=2)).to_have_text("Dit uur is net volzet")
    expect(alternatives.get_by_role("heading", level=2)).to_be_focused()
    offered = alternatives.locator("button.alternative")
    expect(offered.first).to_be_visible()
    expect(alternatives.get_by_label("E-mailadres voor de wachtlijst")).to_have_value("jean.mukendi@example.org")
    shot(page, "resident-7-slot-gone")
    assert_accessible(page, "resident-7-slot-gone")

    alternatives.get_by_role("button", name="Zet me op de wachtlijst").click()
    expect(alternatives.locator(".status-line")).to_have_text(
        "U staat op de wachtlijst. We mailen u als er een uur vrijkomt."
    )

    offered.first.click()
    expect(page.locator("#decision-card")).to_have_attribute("data-status", "confirmed")
    answer = page.evaluate("window.__lastBooking")
    assert answer["start"] != start
    shot(page, "resident-8-alternative-confirmed")

    # Reschedule from the manage page.
    page.locator("#manage-link").click()
    expect(page.locator("#booking-status")).to_have_text("bevestigd")
    page.get_by_role("button", name="Ander uur kiezen").click()
    reschedule = page.locator("#reschedule")
    reschedule.get_by_label("Dag", exact=True).select_option(index=1)  # a day picker: any free day, not a capped list
    chosen = reschedule.locator("#reschedule-times input[type=radio]").nth(1)
    chosen.check()
    new_start = str(chosen.get_attribute("value"))
    page.get_by_role("button", name="Naar dit uur verplaatsen").click()
    expect(page.locator("#manage-status")).to_contain_text("Uw afspraak is verplaatst naar")
    shot(page, "resident-9-rescheduled")
    shown = client.get(
        f"/api/v1/bookings/{answer['id']}", headers={"Authorization": f"Bearer {answer['manage_token']}"}
    ).json()
    assert shown["start"] == new_start


def test_a_held_booking_is_confirmed_from_the_e_mail_link(pages: Pages, live: RunningStack) -> None:
    held = book_first_free(live, "long-stay", "migration-counter", language="en")
    assert held["status"] == "held", held

    page = pages.new()
    page.goto(f"/manage/{held['id']}?token={held['manage_token']}&confirm=1&lang=en")
    expect(page.locator("#booking-status")).to_have_text("waiting for your confirmation")
    shot(page, "resident-10-held")
    page.get_by_role("button", name="Confirm appointment").click()
    expect(page.locator("#booking-status")).to_have_text("confirmed")
    expect(page.locator("#manage-status")).to_have_text("Your appointment is confirmed.")


def free_days(live: RunningStack, product: str, location: str, days: int = 21) -> dict[str, int]:
    """The Brussels days with free times in the next `days` days (ISO dates), and how many each has."""
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        by_day = free_by_day(client, product, location, today(), today() + timedelta(days=days))
    return {day.isoformat(): len(slots) for day, slots in by_day.items()}


def test_an_e_mail_link_preselects_the_product_the_location_and_the_day(pages: Pages, live: RunningStack) -> None:
    counts = free_days(live, "residence-card", "migration-counter")
    assert len(counts) >= 3, counts
    day = sorted(counts)[2]  # not the first day, which the page would show anyway

    page = pages.new()
    page.goto(f"/?product=residence-card&location=migration-counter&date={day}")
    expect(page.get_by_role("radio", name=re.compile(r"^Verblijfskaart \(vernieuwing"))).to_be_checked()
    expect(page.get_by_role("radio", name=re.compile(r"^Loket Migratie"))).to_be_checked()
    expect(page.get_by_label("Dag", exact=True)).to_have_value(day)
    times = page.locator("#times-fieldset input[type=radio]")
    expect(times).to_have_count(counts[day])
    expect(page.locator("#link-notice")).to_be_empty()
    shot(page, "resident-11-link-preselected")
    assert_accessible(page, "resident-11-link-preselected")

    # One click away: the time; then the details and the booking as usual.
    times.first.check()
    start = str(times.first.get_attribute("value"))
    expect(page.locator("#choice-summary")).to_contain_text("Verblijfskaart")
    page.get_by_label("Voornaam").fill("Fatima")
    page.get_by_label("Achternaam").fill("Benali")
    page.get_by_label("E-mailadres").fill("fatima.benali@example.org")
    page.get_by_role("button", name="Afspraak bevestigen").click()
    expect(page.locator("#decision-card")).to_have_attribute("data-status", "confirmed")
    answer = page.evaluate("window.__lastBooking")
    assert answer["start"] == start and answer["location"] == "migration-counter"
    assert datetime.fromisoformat(start).astimezone(BRUSSELS).date().isoformat() == day

    # The language switch keeps the preselection of a link (and does not apply it again).
    other = pages.new()
    other.goto(f"/?product=residence-card&location=migration-counter&date={day}")
    expect(other.get_by_label("Dag", exact=True)).to_have_value(day)
    other.get_by_label("Dag", exact=True).select_option(sorted(counts)[1])
    other.get_by_label("Taal").select_option("fr")
    expect(other.get_by_role("radio", name=re.compile(r"^Carte de séjour"))).to_be_checked()
    expect(other.get_by_label("Jour", exact=True)).to_have_value(sorted(counts)[1])


def test_an_e_mail_link_with_unknown_values_falls_back_with_a_message(pages: Pages, live: RunningStack) -> None:
    day = sorted(free_days(live, "residence-card", "migration-counter"))[0]

    # An unknown product: a message, and the normal start.
    page = pages.new()
    page.goto(f"/?product=no-such-product&location=migration-counter&date={day}")
    notice = page.locator("#link-notice")
    expect(notice).to_contain_text("De dienst uit uw link bestaat niet (meer).")
    expect(page.locator("input[name=product]:checked")).to_have_count(0)
    expect(page.locator("input[name=location]")).to_have_count(0)
    shot(page, "resident-12-link-unknown-product")
    assert_accessible(page, "resident-12-link-unknown-product")
    page.get_by_role("radio", name=re.compile(r"^Verblijfskaart \(vernieuwing")).check()
    page.get_by_role("radio", name=re.compile(r"^Loket Migratie")).check()
    expect(page.locator("#times-fieldset input[type=radio]").first).to_be_visible()
    expect(notice).to_be_empty()  # the resident's own choice: the note has served

    # A known product at an unknown location (in English): the product is chosen, the location is not.
    page = pages.new()
    page.goto(f"/?product=residence-card&location=atlantis&date={day}&lang=en")
    expect(page.locator("#link-notice")).to_contain_text("The location in your link does not (or no longer) offer")
    expect(page.get_by_role("radio", name=re.compile(r"^Residence card"))).to_be_checked()
    expect(page.locator("input[name=location]").first).to_be_visible()
    expect(page.locator("input[name=location]:checked")).to_have_count(0)
    assert_accessible(page, "resident-13-link-unknown-location")

    # A day without free times (in the past), and a date that is no date (in French).
    first = sorted(free_days(live, "residence-card", "migration-counter"))[0]
    page = pages.new()
    page.goto("/?product=residence-card&location=migration-counter&date=2020-01-06")
    expect(page.locator("#link-notice")).to_contain_text("Op maandag 6 januari is er geen vrij uur meer.")
    expect(page.get_by_role("radio", name=re.compile(r"^Loket Migratie"))).to_be_checked()
    expect(page.get_by_label("Dag", exact=True)).to_have_value(first)
    shot(page, "resident-14-link-day-full")
    assert_accessible(page, "resident-14-link-day-full")

    page = pages.new()
    page.goto("/?product=residence-card&location=migration-counter&date=2026-02-30&lang=fr")
    expect(page.locator("#link-notice")).to_contain_text("La date de votre lien n'est pas valable.")
    expect(page.get_by_label("Jour", exact=True)).to_have_value(first)
