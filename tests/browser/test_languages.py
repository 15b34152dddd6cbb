"""Per language (nl, en, fr) a resident books a product that needs e-mail confirmation, confirms it
on the manage page, moves it to another day and cancels it, and every text the page shows is in
that language: the page's own texts of the other two languages appear nowhere, and the history
speaks in words, not event names."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Pages, assert_accessible, shot
from tests.conftest import RunningStack

PRODUCT = "long-stay"  # needs confirmation by e-mail: held first
LOCATION = "sc-wondelgem"

WORDS: dict[str, dict[str, str]] = {
    "nl": {
        "product": r"^Inschrijving lang verblijf",
        "location": r"^Dienstencentrum Wondelgem",
        "given": r"^Voornaam",
        "family": r"^Achternaam",
        "email": "E-mailadres",
        "submit": "Afspraak bevestigen",
        "held": "Bevestig uw afspraak via e-mail",
        "needs": "Na het boeken bevestigt u deze afspraak nog via de link in uw e-mail.",
        "manage": "Mijn afspraak bekijken of wijzigen",
        "status_held": "wacht op uw bevestiging",
        "confirm": "Afspraak bevestigen",
        "confirmed": "Uw afspraak is bevestigd.",
        "reschedule": "Ander uur kiezen",
        "day": "Dag",
        "move": "Naar dit uur verplaatsen",
        "moved": "Uw afspraak is verplaatst naar",
        "cancel": "Afspraak annuleren",
        "yes": "Ja, annuleren",
        "cancelled": "Uw afspraak is geannuleerd.",
        "history": "Geschiedenis",
        "history_confirmed": "Afspraak bevestigd",
        "history_cancelled": "Afspraak geannuleerd",
        "brussels": "(Brusselse tijd)",
        "deadline": "Bevestig uw afspraak vóór",
    },
    "en": {
        "product": r"^Long stay registration",
        "location": r"^Dienstencentrum Wondelgem",
        "given": r"^Given name",
        "family": r"^Family name",
        "email": "E-mail address",
        "submit": "Book this appointment",
        "held": "Confirm your appointment by e-mail",
        "needs": "After booking, you confirm this appointment through the link in your e-mail.",
        "manage": "View or change my appointment",
        "status_held": "waiting for your confirmation",
        "confirm": "Confirm appointment",
        "confirmed": "Your appointment is confirmed.",
        "reschedule": "Choose another time",
        "day": "Day",
        "move": "Move to this time",
        "moved": "Your appointment was moved to",
        "cancel": "Cancel appointment",
        "yes": "Yes, cancel",
        "cancelled": "Your appointment is cancelled.",
        "history": "History",
        "history_confirmed": "Appointment confirmed",
        "history_cancelled": "Appointment cancelled",
        "brussels": "(Brussels time)",
        "deadline": "Please confirm your appointment before",
    },
    "fr": {
        "product": r"^Inscription long séjour",
        "location": r"^Dienstencentrum Wondelgem",
        "given": r"^Prénom",
        "family": r"^Nom\b",
        "email": "Adresse e-mail",
        "submit": "Confirmer le rendez-vous",
        "held": "Confirmez votre rendez-vous par e-mail",
        "needs": "Après la réservation, vous confirmez ce rendez-vous via le lien de votre e-mail.",
        "manage": "Voir ou modifier mon rendez-vous",
        "status_held": "en attente de votre confirmation",
        "confirm": "Confirmer le rendez-vous",
        "confirmed": "Votre rendez-vous est confirmé.",
        "reschedule": "Choisir une autre heure",
        "day": "Jour",
        "move": "Déplacer à cette heure",
        "moved": "Votre rendez-vous a été déplacé au",
        "cancel": "Annuler le rendez-vous",
        "yes": "Oui, annuler",
        "cancelled": "Votre rendez-vous est annulé.",
        "history": "Historique",
        "history_confirmed": "Rendez-vous confirmé",
        "history_cancelled": "Rendez-vous annulé",
        "brussels": "(heure de Bruxelles)",
        "deadline": "Veuillez confirmer votre rendez-vous avant le",
    },
}

NAMES = {"nl": ("Lotte", "Vermeulen"), "en": ("Grace", "Okafor"), "fr": ("Élodie", "Lambert")}


def foreign_texts(page: Any, code: str) -> list[str]:
    """The page's own texts of the other languages that the page shows: none should be found.
    Each text is cut at its placeholders; fragments too short to be telling are left out."""
    return list(
        page.evaluate(
            """async (code) => {
                const { DICT } = await import('/js/i18n.js');
                const shown = document.body.innerText;
                const found = new Set();
                for (const [other, texts] of Object.entries(DICT)) {
                    if (other === code) continue;
                    for (const [key, text] of Object.entries(texts)) {
                        if (text === DICT[code][key]) continue;
                        for (const part of text.split(/\\{\\w+\\}/)) {
                            const fragment = part.trim();
                            if (fragment.length < 10 || !shown.includes(fragment)) continue;
                            found.add(`${other} ${key}: ${fragment}`);
                        }
                    }
                }
                return [...found];
            }""",
            code,
        )
    )


def event_names_shown(page: Any) -> list[str]:
    return re.findall(r"\b(?:booking|reschedule|reservation|attendance)-[a-z]+\b", page.locator("body").inner_text())


def assert_in_language(page: Any, code: str, step: str) -> None:
    expect(page.locator("html")).to_have_attribute("lang", code)
    assert not foreign_texts(page, code), f"{step}: texts of another language: {foreign_texts(page, code)}"
    assert not event_names_shown(page), f"{step}: event names shown: {event_names_shown(page)}"


@pytest.mark.parametrize("code", ["nl", "en", "fr"])
def test_a_resident_books_confirms_reschedules_and_cancels_in_one_language(
    pages: Pages, live: RunningStack, code: str
) -> None:
    words = WORDS[code]
    given, family = NAMES[code]
    page = pages.new(locale={"nl": "nl-BE", "en": "en-GB", "fr": "fr-BE"}[code])
    page.goto(f"/?lang={code}")
    page.get_by_role("radio", name=re.compile(words["product"])).check()
    expect(page.get_by_text(words["needs"]).first).to_be_visible()  # said before booking
    page.get_by_role("radio", name=re.compile(words["location"])).check()
    page.get_by_label(words["day"], exact=True).select_option(index=2)  # not the days other tests take first
    expect(page.locator("#times-fieldset legend")).to_contain_text(words["brussels"].strip("()"))
    page.locator("#times-fieldset input[type=radio]").first.check()
    page.get_by_label(re.compile(words["given"])).fill(given)
    page.get_by_label(re.compile(words["family"])).fill(family)
    page.get_by_label(words["email"]).fill(f"{given.lower()}.{code}@example.org".replace("é", "e"))
    assert_in_language(page, code, "form")
    page.get_by_role("button", name=words["submit"]).click()

    expect(page.locator("#decision-title")).to_have_text(words["held"])
    expect(page.locator("#decision-card")).to_contain_text(words["brussels"])
    assert_in_language(page, code, "held")
    shot(page, f"language-{code}-1-held")
    assert_accessible(page, f"language-{code}-1-held")

    # The manage page: the deadline, the confirm action, then another day, then cancelled.
    page.get_by_role("link", name=words["manage"]).click()
    expect(page.locator("#booking-status")).to_have_text(words["status_held"])
    expect(page.locator("#hold-deadline")).to_contain_text(words["deadline"])
    expect(page.locator("#hold-deadline")).to_contain_text(words["brussels"])
    assert_in_language(page, code, "manage held")
    page.get_by_role("button", name=words["confirm"]).click()
    expect(page.locator("#manage-status")).to_have_text(words["confirmed"])

    booking = page.evaluate("window.__lastBooking")
    page.get_by_role("button", name=words["reschedule"]).click()
    before = page.locator("#booking-when").inner_text()
    page.locator("#reschedule").get_by_label(words["day"], exact=True).select_option(index=1)
    new_start = str(page.locator("#reschedule-times input[type=radio]").first.get_attribute("value"))
    page.get_by_role("button", name=words["move"]).click()
    expect(page.locator("#manage-status")).to_contain_text(words["moved"])
    expect(page.locator("#booking-when")).not_to_have_text(before)
    assert_in_language(page, code, "rescheduled")
    shot(page, f"language-{code}-2-rescheduled")

    page.get_by_role("button", name=words["cancel"]).click()
    page.get_by_role("button", name=words["yes"]).click()
    expect(page.locator("#manage-status")).to_have_text(words["cancelled"])
    page.locator("#manage details summary").click()
    history = page.locator("#manage details ol")
    expect(history).to_contain_text(words["history_confirmed"])
    expect(page.locator("#manage details summary")).to_have_text(f"{words['history']} {words['brussels']}")
    # The resident's own cancellation is said in words alone: no reason of the server's making.
    expect(history.locator("li").last).to_have_text(re.compile(re.escape(words["history_cancelled"]) + "$"))
    assert_in_language(page, code, "cancelled")
    shot(page, f"language-{code}-3-cancelled")
    assert_accessible(page, f"language-{code}-3-cancelled")

    shown = httpx.get(
        f"{live.base_url}/api/v1/bookings/{booking['id']}",
        headers={"Authorization": f"Bearer {booking['manage_token']}"},
    ).json()
    assert shown["status"] == "cancelled" and shown["start"] == new_start and shown["language"] == code
