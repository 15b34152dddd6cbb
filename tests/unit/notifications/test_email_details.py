"""The lines of an appointment e-mail a resident reads first, in each language (issue 16): when (in
Brussels time, said so), where (the location's name and street address), what the appointment is
for, and the fee written as the page writes it in that language (Babel, the page's locales); and
links that open their pages in the message's language."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from urllib.parse import parse_qs, urlsplit

import pytest

from loket_notifications.application.compose import Composer, ComposeSettings
from loket_notifications.application.ports import Contact, LocationInfo, ProductInfo
from loket_notifications.domain.kinds import Kind
from tests.unit.notifications.test_notifications_compose import FakeCatalogue, FakeContacts, row

START = datetime(2026, 12, 2, 8, 30, tzinfo=UTC)  # 09:30 in Brussels
CHILD_CARD = ProductInfo(
    "child-card",
    {"nl": "Kinderkaart", "en": "Child's identity document", "fr": "Carte d'identité enfant"},
    [{"nl": "Pasfoto", "en": "Photo", "fr": "Photo"}],
    8.5,
)
COUNTER = LocationInfo("counter", "Loket Migratie", "Woodrow Wilsonplein 1, 9000 Gent")


class Catalogue(FakeCatalogue):
    location_info = COUNTER

    async def product(self, product_id: str) -> ProductInfo | None:
        return CHILD_CARD


async def email_text(kind: Kind, language: str) -> str:
    at = {
        "start": START.isoformat(),
        "end": (START + timedelta(minutes=15)).isoformat(),
        "product_id": "child-card",
        "location_id": "counter",
        "hold_expires_at": (START - timedelta(days=1)).isoformat(),
        "old_start": (START - timedelta(days=1)).isoformat(),
    }
    manage = "http://web/manage/b1?token=t"
    contact = Contact("r@example.org", None, language, manage, manage + "&confirm=1", "Ana", "Peeters")
    settings = ComposeSettings(public_base_url="http://web")
    composer = Composer(Catalogue(), FakeContacts(contact), settings, clock=lambda: START)
    rendered = await composer.render(row(kind, language, **at))
    text: str = message_from_bytes(rendered.payload, policy=policy.default).get_body(("plain",)).get_content()
    return text


LINES = {
    "nl": [
        "Wanneer: woensdag 2 december 2026 om 09:30 (Brusselse tijd)",
        "Waar: Loket Migratie, Woodrow Wilsonplein 1, 9000 Gent",
        "Afspraak voor: Kinderkaart",
        "Kostprijs: €\u00a08,50",
    ],
    "en": [
        "When: Wednesday, 2 December 2026 at 09:30 (Brussels time)",
        "Where: Loket Migratie, Woodrow Wilsonplein 1, 9000 Gent",
        "Appointment for: Child's identity document",
        "Fee: €8.50",
    ],
    "fr": [
        "Quand\u00a0: mercredi 2 décembre 2026 à 09:30 (heure de Bruxelles)",
        "Où\u00a0: Loket Migratie, Woodrow Wilsonplein 1, 9000 Gent",
        "Rendez-vous pour\u00a0: Carte d'identité enfant",
        "Coût\u00a0: 8,50\u00a0€",
    ],
}


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
@pytest.mark.parametrize("kind", [Kind.PLEASE_CONFIRM, Kind.CONFIRMATION, Kind.REMINDER, Kind.RESCHEDULED])
async def test_an_appointment_e_mail_says_when_where_what_and_the_fee(kind: Kind, language: str) -> None:
    lines = (await email_text(kind, language)).splitlines()
    for line in LINES[language]:
        assert line in lines, (line, lines)


async def test_the_hold_deadline_is_labelled_brussels_time_too() -> None:
    text = await email_text(Kind.PLEASE_CONFIRM, "en")
    assert "until Tuesday, 1 December 2026 at 09:30 (Brussels time)" in text


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
async def test_every_link_in_an_e_mail_opens_its_page_in_the_message_language(language: str) -> None:
    links = re.findall(r"https?://\S+", await email_text(Kind.PLEASE_CONFIRM, language))
    assert links and all(parse_qs(urlsplit(link).query)["lang"] == [language] for link in links), links
    assert "http://web/manage/b1?token=t&confirm=1&lang=" + language in links  # the token as it was
