"""Messages leave through the channel the resident gave.

E-mail to an internationalised address (an IDN domain, a UTF-8 local part) is delivered, with the
domain IDNA-encoded and SMTPUTF8 where the server offers it, or fails at once (permanent) where
it does not: never a UnicodeEncodeError retried until it gives up. The SMTP server is aiosmtpd in
this process (the stack's own `MailFolder`), with and without SMTPUTF8.

SMS texts stand alone: a resident who gave only a phone number is never sent to an e-mail, and the
manage link still fits one SMS with the longest date and a long public address.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from loket_notifications.adapters.smtp import SmtpTransport
from loket_notifications.application.compose import Composer, ComposeSettings
from loket_notifications.application.ports import Contact, DeliveryRow, LocationInfo, PermanentError, ProductInfo
from loket_notifications.domain.addresses import (
    UndeliverableAddress,
    envelope_address,
    needs_smtputf8,
    with_recipient_header,
)
from loket_notifications.domain.keys import booking_key
from loket_notifications.domain.kinds import Kind, channel_of
from loket_notifications.domain.sms import is_gsm7, septets
from loket_stack.sinks import MailFolder, mail_server
from tests.conftest import free_ports

START = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)

# --- addresses as SMTP carries them -------------------------------------------------------------


def test_an_idn_domain_travels_idna_encoded_and_needs_nothing_else() -> None:
    assert envelope_address("anna@bücher.example") == "anna@xn--bcher-kva.example"
    assert envelope_address("anna@BÜCHER.Example") == "anna@xn--bcher-kva.example"
    assert envelope_address("anna@xn--bcher-kva.example") == "anna@xn--bcher-kva.example"
    assert envelope_address("anna@straße.de") == "anna@xn--strae-oqa.de"  # IDNA 2008: ß is kept
    assert not needs_smtputf8("anna@bücher.example")


def test_a_utf8_local_part_needs_smtputf8() -> None:
    assert needs_smtputf8("jörg@example.org")
    assert envelope_address("jörg@bücher.example") == "jörg@xn--bcher-kva.example"
    with pytest.raises(UndeliverableAddress):
        envelope_address("no-at-sign")
    with pytest.raises(UndeliverableAddress):
        envelope_address("anna@☃.example")  # no IDNA 2008 form: a symbol


def message_to(address: str) -> bytes:
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = "Uw afspraak is bevestigd: woensdag"
    message["From"] = "Stad Gent <afspraken@loket.gent>"
    message["To"] = address
    message["Reply-To"] = "migratie@stad.gent"
    message.set_content("Beste Jörg,\n\nTot woensdag.\n")
    message.add_alternative("<p>Beste Jörg,</p>", subtype="html")
    return message.as_bytes(policy=policy.SMTP)


@pytest.mark.parametrize(
    ("address", "header"),
    [
        ("anna@bücher.example", "anna@xn--bcher-kva.example"),
        ("jörg@example.org", "jörg@example.org"),
        ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
    ],
)
def test_the_to_header_names_the_address_as_smtp_carries_it(address: str, header: str) -> None:
    original = message_to(address)
    assert b"=?utf-8?" in original.split(b"\r\n\r\n")[0]  # what the email package writes: no address
    fixed = with_recipient_header(original, address)
    parsed = message_from_bytes(fixed, policy=policy.SMTPUTF8)
    assert parsed["To"] == header and parsed["Reply-To"] == "migratie@stad.gent"
    assert fixed.split(b"\r\n\r\n", 1)[1] == original.split(b"\r\n\r\n", 1)[1]  # bodies byte for byte
    assert with_recipient_header(fixed, address) == fixed  # the same bytes on every retry
    plain = message_to("anna@example.org")
    assert with_recipient_header(plain, "anna@example.org") == plain  # an ASCII address: untouched


# --- against a real SMTP server ------------------------------------------------------------------


_ports = free_ports(590)  # this run's range, apart from the integration tests' servers


def free_port() -> int:
    return next(_ports)


class Recording(MailFolder):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.envelopes: list[tuple[str, list[str], bool]] = []

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), "SMTPUTF8" in envelope.mail_options))
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture
def smtputf8_server(tmp_path: Path) -> Iterator[tuple[Controller, Path]]:
    server = mail_server(tmp_path / "mail", free_port())  # the stack's own SMTP sink
    server.handler = Recording(tmp_path / "mail")
    server.start()
    yield server, tmp_path / "mail"
    server.stop()


@pytest.fixture
def plain_server(tmp_path: Path) -> Iterator[Controller]:
    server = Controller(Recording(tmp_path / "plain"), hostname="127.0.0.1", port=free_port(), enable_SMTPUTF8=False)
    server.start()
    yield server
    server.stop()


class Catalogue:
    async def product(self, product_id: str) -> ProductInfo | None:
        return ProductInfo("residence-card", {"nl": "Verblijfskaart"}, [], 25.0)

    async def location(self, location_id: str) -> LocationInfo | None:
        return LocationInfo("counter", "Migratieloket", "Woodrow Wilsonplein 1, 9000 Gent")

    def cached_product(self, product_id: str) -> ProductInfo | None:
        return None


class Contacts:
    def __init__(self, email: str | None, phone: str | None = None, manage_url: str | None = None) -> None:
        self.value = Contact(email, phone, "nl", manage_url or "http://web/manage/b1?token=t", None, "Jörg", "Müller")

    async def contact(self, booking_id: str) -> Contact:
        return self.value


def row(kind: Kind, language: str = "nl", **context: object) -> DeliveryRow:
    ctx = {
        "start": START.isoformat(),
        "end": (START + timedelta(minutes=20)).isoformat(),
        "product_id": "residence-card",
        "location_id": "counter",
        **context,
    }
    return DeliveryRow(
        id="00000000-0000-0000-0000-000000000001",
        dedupe_key=booking_key("b1", kind.value, 0),
        booking_id="b1",
        subscription_id=None,
        kind=kind.value,
        version=0,
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


async def rendered_for(address: str) -> bytes:
    composer = Composer(Catalogue(), Contacts(address), ComposeSettings(), clock=lambda: START)
    return (await composer.render(row(Kind.CONFIRMATION))).payload


@pytest.mark.parametrize(
    ("address", "rcpt", "utf8"),
    [
        ("anna.x@bücher.example", "anna.x@xn--bcher-kva.example", False),
        ("jörg.müller@example.org", "jörg.müller@example.org", True),
        ("jörg@bücher.example", "jörg@xn--bcher-kva.example", True),
    ],
)
async def test_a_confirmation_to_an_international_address_is_delivered(
    smtputf8_server: tuple[Controller, Path], address: str, rcpt: str, utf8: bool
) -> None:
    server, folder = smtputf8_server
    transport = SmtpTransport("127.0.0.1", server.port)
    await transport.send("afspraken@loket.gent", [address], await rendered_for(address))
    handler = server.handler
    assert isinstance(handler, Recording)
    assert handler.envelopes == [("afspraken@loket.gent", [rcpt], utf8)]
    (eml,) = folder.glob("*.eml")
    kept = message_from_bytes(eml.read_bytes(), policy=policy.SMTPUTF8)
    assert kept["To"] == rcpt
    assert "Müller" in kept.get_body(("plain",)).get_content()


async def test_a_utf8_local_part_fails_at_once_where_the_server_has_no_smtputf8(plain_server: Controller) -> None:
    transport = SmtpTransport("127.0.0.1", plain_server.port)
    with pytest.raises(PermanentError, match="SMTPUTF8"):  # permanent: failed and published, not retried
        await transport.send("afspraken@loket.gent", ["jörg@example.org"], await rendered_for("jörg@example.org"))
    # An IDN domain needs no extension: it goes to the same server.
    await transport.send("afspraken@loket.gent", ["anna@bücher.example"], await rendered_for("anna@bücher.example"))
    handler = plain_server.handler
    assert isinstance(handler, Recording)
    assert handler.envelopes == [("afspraken@loket.gent", ["anna@xn--bcher-kva.example"], False)]


# --- SMS for a resident who gave only a phone ----------------------------------------------------

# A manage link as long as production's: https, a city host name, the UUIDv7 and a 22-character token.
LONG_LINK = "https://afspraken.stad.gent/manage/0190f8a2-7c3e-7b51-9a2d-4f6e8c1b2a3d?token=" + "x" * 22
LONGEST_DAY = datetime(2026, 2, 13, 8, 30, tzinfo=UTC)  # "ven. 13 févr. 09:30": the longest short date


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
@pytest.mark.parametrize("cancelled_by", ["staff", "system"])
async def test_a_cancellation_sms_stands_alone_and_carries_the_manage_link(language: str, cancelled_by: str) -> None:
    assert len(LONG_LINK) >= 100
    composer = Composer(Catalogue(), Contacts(None, "+32470123456", LONG_LINK), ComposeSettings())
    sms = await composer.render(
        row(Kind.CANCELLATION_SMS, language, start=LONGEST_DAY.isoformat(), cancelled_by=cancelled_by, reason="ziek")
    )
    body = sms.payload.decode()
    assert sms.recipient == "+32470123456"
    assert "mail" not in body.lower()  # "more in your e-mail" to someone who gave no e-mail address
    assert body.endswith(" " + LONG_LINK)  # the reason, the history and a new booking are one tap away
    assert is_gsm7(body) and septets(body) <= 160


@pytest.mark.parametrize("language", ["nl", "en", "fr"])
async def test_a_reminder_sms_does_not_point_to_an_e_mail(language: str) -> None:
    composer = Composer(Catalogue(), Contacts(None, "+32470123456", LONG_LINK), ComposeSettings())
    body = (await composer.render(row(Kind.REMINDER_SMS, language))).payload.decode()
    assert "mail" not in body.lower() and septets(body) <= 160
