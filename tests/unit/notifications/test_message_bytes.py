"""The e-mail bytes written without the standard library's message objects (`domain.mime`) read back
as the same message in any mail client: headers decoded, bodies intact, the calendar attached."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage

from loket_notifications.domain import mime


def read(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def build(text: str, html: str = "<p>x</p>", ics: str | None = None, subject: str = "Afspraak") -> bytes:
    body = mime.multipart("alternative", [mime.text_part("plain", text), mime.text_part("html", html)], "=_loket_alt")
    if ics is not None:
        attachment = mime.text_part("calendar", ics, params={"method": "REQUEST"}, filename="appointment.ics")
        body = mime.multipart("mixed", [body, attachment], "=_loket_mix")
    return mime.message([("Subject", subject), ("To", "anna@example.org"), ("Message-ID", "<m1@loket.gent>")], body)


def test_headers_outside_ascii_or_long_read_back_as_written() -> None:
    subject = "Bevestiging: uw afspraak op dinsdag 1 december 2026 om 10:30 – Verblijfskaart, Migratieloket Gent"
    raw = build("Hallo", subject=subject)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii() and all(len(line) <= 78 for line in head.split(b"\r\n"))
    message = read(raw)
    assert message["Subject"] == subject
    assert message["Message-ID"] == "<m1@loket.gent>" and message["MIME-Version"] == "1.0"


def test_text_and_html_alternatives_keep_every_character() -> None:
    text = "Beste Zoë,\n\nuw afspraak: € 25, à 10:30.\n"
    message = read(build(text, html="<p>Beste Zoë</p>"))
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    assert plain.get_content().replace("\r\n", "\n") == text
    assert "Beste Zoë" in html.get_content()


def test_a_line_longer_than_smtp_allows_is_sent_quoted_printable() -> None:
    link = "https://loket.gent/?" + "a=b&" * 400  # 1,620 characters on one line
    raw = build(f"Klik: {link}\n")
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    plain = read(raw).get_body(("plain",))
    assert plain is not None and plain["Content-Transfer-Encoding"] == "quoted-printable"
    assert link in plain.get_content()


def test_the_calendar_object_is_an_attachment_beside_the_alternatives() -> None:
    ics = "BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    message = read(build("Hallo", ics=ics))
    assert message.get_content_type() == "multipart/mixed"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/calendar"
    assert attachment.get_param("method") == "REQUEST" and attachment.get_filename() == "appointment.ics"
    assert attachment.get_content().replace("\r\n", "\n") == ics.replace("\r\n", "\n")
    assert message.get_body(("plain",)) is not None


def test_every_line_ends_in_crlf() -> None:
    raw = build("een\ntwee\rdrie\r\nvier", ics="BEGIN:VCALENDAR\nEND:VCALENDAR")
    assert b"\n" not in raw.replace(b"\r\n", b"") and b"\r" not in raw.replace(b"\r\n", b"")
