"""Rendering with fake catalogue and contacts: every kind in every language makes a sound message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from icalendar import Calendar

from loket_notifications.application.compose import Composer, ComposeSettings, NoRecipient
from loket_notifications.application.ports import Contact, DeliveryRow, LocationInfo, ProductInfo
from loket_notifications.domain.keys import booking_key, message_id
from loket_notifications.domain.kinds import Kind, channel_of
from loket_notifications.domain.sms import is_gsm7, septets

START = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


class FakeCatalogue:
    product_info = ProductInfo(
        "residence-card",
        {"nl": "Verblijfskaart", "en": "Residence card", "fr": "Carte de séjour"},
        [{"nl": "Paspoort", "en": "Passport", "fr": "Passeport"}],
        25.0,
    )
    location_info = LocationInfo("counter", "Migratieloket", "Woodrow Wilsonplein 1, 9000 Gent")

    async def product(self, product_id: str) -> ProductInfo | None:
        return self.product_info if product_id == "residence-card" else None

    async def location(self, location_id: str) -> LocationInfo | None:
        return self.location_info if location_id == "counter" else None

    def cached_product(self, product_id: str) -> ProductInfo | None:
        return None


class FakeContacts:
    def __init__(self, contact: Contact) -> None:
        self.value = contact

    async def contact(self, booking_id: str) -> Contact:
        return self.value


CONTACT = Contact(
    "r@example.org", "+32470000000", "en", "http://web/manage/b1?token=t", "http://web/confirm/b1?t=t", "Ana", "Peeters"
)


def row(kind: Kind, language: str, version: int = 0, **context: object) -> DeliveryRow:
    ctx = {
        "start": START.isoformat(),
        "end": (START + timedelta(minutes=20)).isoformat(),
        "product_id": "residence-card",
        "location_id": "counter",
        **context,
    }
    key = booking_key("b1", kind.value, version)
    return DeliveryRow(
        id="00000000-0000-0000-0000-000000000001",
        dedupe_key=key,
        booking_id="b1",
        subscription_id="11111111-1111-1111-1111-111111111111" if kind is Kind.WAITLIST else None,
        kind=kind.value,
        version=version,
        channel=channel_of(kind),
        language=language,
        context=ctx,
        status="sending",
        due_at=START,
        not_after=None,
        attempts=1,
        message_id=None,
        recipient=None,
        payload=None,
    )


EXTRA = {
    Kind.PLEASE_CONFIRM: {"hold_expires_at": START.isoformat()},
    Kind.REJECTION: {
        "reason": "slot-taken",
        "alternatives": [
            {"start": (START + timedelta(hours=1)).isoformat(), "end": START.isoformat(), "location_id": "counter"}
        ],
    },
    Kind.CANCELLATION: {"cancelled_by": "staff", "reason": "Closed for a public holiday", "ics_sequence": 1},
    Kind.RESCHEDULED: {"old_start": (START - timedelta(days=1)).isoformat()},
    Kind.WAITLIST: {"email": "w@example.org"},
}

composer = Composer(
    FakeCatalogue(), FakeContacts(CONTACT), ComposeSettings(public_base_url="http://web"), clock=lambda: START
)


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
@pytest.mark.parametrize("kind", [k for k in Kind if channel_of(k) == "email"])
async def test_email_renders(kind: Kind, language: str) -> None:
    rendered = await composer.render(row(kind, language, **EXTRA.get(kind, {})))
    message = message_from_bytes(rendered.payload, policy=policy.default)
    assert message["Message-ID"] == message_id(booking_key("b1", kind.value, 0), "loket.gent")
    assert message["Content-Language"] == language
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "<html" in html and "b1" in text
    if kind not in (Kind.REJECTION, Kind.WAITLIST, Kind.EXPIRED):
        assert "Migratieloket" in text
    if kind in (Kind.CONFIRMATION, Kind.REMINDER, Kind.PLEASE_CONFIRM, Kind.RESCHEDULED):
        assert "10" in text and {"nl": "Paspoort", "en": "Passport", "fr": "Passeport"}[language] in text
        assert "http://web/manage/b1?token=t" in text
    attachments = [part for part in message.iter_attachments() if part.get_content_type() == "text/calendar"]
    assert bool(attachments) == (kind in (Kind.CONFIRMATION, Kind.RESCHEDULED, Kind.CANCELLATION))
    if attachments:
        cal = Calendar.from_ical(attachments[0].get_content())
        assert cal["METHOD"] == ("CANCEL" if kind is Kind.CANCELLATION else "REQUEST")


async def test_please_confirm_links_to_confirm_url() -> None:
    rendered = await composer.render(row(Kind.PLEASE_CONFIRM, "en", **EXTRA[Kind.PLEASE_CONFIRM]))
    text = message_from_bytes(rendered.payload, policy=policy.default).get_body(("plain",)).get_content()
    assert "http://web/confirm/b1?t=t" in text and "Dear Ana Peeters" in text


async def test_html_escapes_names() -> None:
    evil = Composer(
        FakeCatalogue(),
        FakeContacts(Contact("r@example.org", None, given_name="<script>")),
        ComposeSettings(),
        clock=lambda: START,
    )
    rendered = await evil.render(row(Kind.CONFIRMATION, "en"))
    html = message_from_bytes(rendered.payload, policy=policy.default).get_body(("html",)).get_content()
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
@pytest.mark.parametrize("kind", [Kind.REMINDER_SMS, Kind.CANCELLATION_SMS])
async def test_sms_fits_one_gsm7_message(kind: Kind, language: str) -> None:
    rendered = await composer.render(row(kind, language, **EXTRA.get(kind, {})))
    body = rendered.payload.decode()
    assert rendered.recipient == "+32470000000"
    assert is_gsm7(body) and septets(body) <= 160


async def test_no_phone_means_no_sms() -> None:
    no_phone = Composer(FakeCatalogue(), FakeContacts(Contact("r@example.org", None)), ComposeSettings())
    with pytest.raises(NoRecipient):
        await no_phone.render(row(Kind.REMINDER_SMS, "nl"))
