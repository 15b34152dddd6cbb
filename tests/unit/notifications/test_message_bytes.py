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


def test_a_short_ascii_header_is_written_as_it_is_and_a_longer_one_is_folded_at_78() -> None:
    fits = "abc" + " word" * 13 + "x"  # "Subject: " + 69 characters: 78 on the line
    assert len("Subject: " + fits) == 78
    assert mime.header("Subject", fits) == f"Subject: {fits}\r\n".encode()
    longer = fits + "y"  # 79: folded at a space, every line within 78, the value unchanged
    folded = mime.header("Subject", longer)
    lines = folded.decode().split("\r\n")[:-1]
    assert len(lines) > 1 and all(len(line) <= 78 for line in lines)
    assert message_from_bytes(folded + b"\r\n", policy=policy.SMTP)["Subject"] == longer


def test_a_non_ascii_header_is_encoded_in_utf_8_and_an_ascii_one_never_is() -> None:
    assert b"=?utf-8?" in mime.header("Subject", "Uw afspraak in Gentbrugge – bevestigd")
    long_ascii = "Your appointment at the Migration Counter " * 3
    assert b"=?" not in mime.header("Subject", long_ascii)


def test_a_line_of_998_octets_is_sent_as_it_is_and_one_of_999_quoted_printable() -> None:
    at_limit = mime.text_part("plain", "a" * 998)
    assert b"Content-Transfer-Encoding: 7bit" in at_limit and (b"a" * 998 + b"\r\n") in at_limit
    over = mime.text_part("plain", "a" * 999)
    assert b"Content-Transfer-Encoding: quoted-printable" in over
    assert over.endswith(b"\r\n") and not over.endswith(b"\r\n\r\n")
