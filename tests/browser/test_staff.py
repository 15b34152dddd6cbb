"""A staff member, signed in, sees a new booking appear live on the agenda (Server-Sent Events),
is not offered check-in or no-show for it (check-in opens 10 minutes before the start, and bookings
need 24 hours' notice), steps to the next day and back, and cancels it with a reason (which, the
page says, is sent to the resident).
The print view shows the day without the controls."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import Pages, assert_accessible, shot
from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day

LOCATION = "migration-counter"
PRODUCT = "short-stay"


def sign_in(page: Any, username: str) -> None:
    page.get_by_label("Gebruikersnaam").fill(username)
    page.get_by_label("Wachtwoord").fill("demo")
    page.get_by_role("button", name="Aanmelden").click()


def test_staff_sees_a_booking_live_and_handles_it(pages: Pages, live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, exclusive=True)  # a day no other test books: its agenda is ours
    slots = free_slots(client, PRODUCT, LOCATION, day)
    assert slots, f"free slots on {day}"

    page = pages.new()
    page.goto("/staff")
    expect(page.get_by_role("heading", level=1)).to_have_text("Agenda")
    assert_accessible(page, "staff-1-sign-in")
    sign_in(page, "staff")
    page.get_by_label("Datum").fill(day.isoformat())
    page.get_by_role("button", name="Tonen").click()
    expect(page.locator("#agenda .desk").first).to_be_visible()
    expect(page.locator("#live-indicator")).to_have_attribute("data-on", "true")
    expect(page.locator("#agenda-zone")).to_have_text("Alle uren in Brusselse tijd.")
    page.evaluate("window.__notReloaded = true")
    shot(page, "staff-2-agenda-before")
    assert_accessible(page, "staff-2-agenda")

    # A resident books (through the API, as any frontend would): the agenda shows it, live.
    body = booking_body(PRODUCT, LOCATION, slots[-1]["start"])
    body["person"] = {"given_name": "Oksana", "family_name": "Kovalenko"}
    booked = client.post("/api/v1/bookings", json=body, headers={"Prefer": "wait=5"})
    assert booked.status_code == 201, booked.text
    booking = booked.json()
    card = page.locator(f"#appt-{booking['id']}")
    expect(card).to_be_visible(timeout=10_000)
    expect(card).to_contain_text("Oksana Kovalenko")
    expect(card).to_have_attribute("data-status", "confirmed")
    assert page.evaluate("window.__notReloaded === true"), "the agenda updated without a page reload"
    shot(page, "staff-3-booking-appeared")

    # This far ahead neither check-in nor no-show can succeed: they are not offered.
    expect(card.get_by_role("button", name="Annuleren")).to_be_visible()
    expect(card.get_by_role("button", name="Inchecken")).to_have_count(0)
    expect(card.get_by_role("button", name="Niet gekomen")).to_have_count(0)
    shot(page, "staff-4-no-check-in-ahead")

    # The next and the previous day, one click each.
    page.get_by_role("button", name="Volgende dag").click()
    expect(page.get_by_label("Datum")).to_have_value((day + timedelta(days=1)).isoformat())
    expect(card).to_have_count(0)
    page.get_by_role("button", name="Vorige dag").click()
    expect(page.get_by_label("Datum")).to_have_value(day.isoformat())
    expect(card).to_be_visible()

    # Cancel with a reason.
    card.get_by_role("button", name="Annuleren").click()
    expect(card).to_contain_text("De reden wordt naar de bewoner gestuurd.")
    card.get_by_label("Reden van annulering").fill("Loket gesloten wegens opleiding")
    card.get_by_role("button", name="Annulering bevestigen").click()
    expect(card).to_have_attribute("data-status", "cancelled")
    expect(card.locator(".badge")).to_have_text("geannuleerd")
    shot(page, "staff-5-cancelled")
    shown = client.get(
        f"/api/v1/bookings/{booking['id']}", headers={"Authorization": f"Bearer {booking['manage_token']}"}
    ).json()
    assert shown["status"] == "cancelled"
    assert any("opleiding" in str(entry) for entry in shown["history"]), shown["history"]

    # The print view of the day: the agenda without the controls.
    page.emulate_media(media="print")
    expect(page.locator(".toolbar")).to_be_hidden()
    expect(page.locator("#agenda")).to_be_visible()
    shot(page, "staff-6-print")
    page.emulate_media(media="screen")
