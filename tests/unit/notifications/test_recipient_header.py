"""The `To:` header of a message to an international address, byte by byte: which header is
rewritten (the message's own, however it is written and wherever it stands among the headers),
what happens without one, and that the body is never touched, not even a body line that looks
like a header."""

from __future__ import annotations

import pytest

from loket_notifications.domain.addresses import UndeliverableAddress, envelope_address, split, with_recipient_header

ADDRESS = "jörg@bücher.example"
TO = "To: jörg@xn--bcher-kva.example\r\n".encode()  # what SMTP can carry (with SMTPUTF8)


def test_an_address_has_a_local_part_an_at_sign_and_a_domain() -> None:
    assert split(" anna@example.org ") == ("anna", "example.org")
    assert split('"a@b"@example.org') == ('"a@b"', "example.org")  # the last @ separates the domain
    for wrong in ("anna", "@example.org", "anna@", "@", ""):
        with pytest.raises(UndeliverableAddress, match="not an e-mail address"):
            split(wrong)
    with pytest.raises(UndeliverableAddress):
        envelope_address("@bücher.example")


def test_the_to_header_is_replaced_where_it_stands() -> None:
    message = b"From: noreply@loket.gent\r\nTo: =?utf-8?q?j=C3=B6rg?=@b\xc3\xbccher\r\nSubject: x\r\n\r\nHello\r\n"
    fixed = with_recipient_header(message, ADDRESS)
    assert fixed == b"From: noreply@loket.gent\r\n" + TO + b"Subject: x\r\n\r\nHello\r\n"


def test_a_lower_case_or_folded_to_header_is_replaced_whole() -> None:
    lower = b"Subject: x\r\nto: someone\r\n\r\nHello\r\n"
    assert with_recipient_header(lower, ADDRESS) == b"Subject: x\r\n" + TO + b"\r\nHello\r\n"
    folded = b"Subject: x\r\nTo: =?utf-8?q?j=C3=B6rg?=\r\n @bucher\r\nX-Id: 1\r\n\r\nHello\r\n"
    assert with_recipient_header(folded, ADDRESS) == b"Subject: x\r\n" + TO + b"X-Id: 1\r\n\r\nHello\r\n"


def test_the_last_header_line_is_found_as_well() -> None:
    message = b"Subject: x\r\nTo: old\r\n\r\nHello\r\n"
    assert with_recipient_header(message, ADDRESS) == b"Subject: x\r\n" + TO + b"\r\nHello\r\n"


def test_without_a_to_header_one_is_added_and_the_body_is_left_alone() -> None:
    # The body starts with a line that looks like a header: it is text, not the message's To:.
    message = b"Subject: x\r\n\r\nTo: the resident\r\nHello\r\n"
    assert with_recipient_header(message, ADDRESS) == TO + b"Subject: x\r\n\r\nTo: the resident\r\nHello\r\n"


def test_a_message_without_headers_gets_a_to_header_and_keeps_its_body() -> None:
    message = b"\r\n\r\nTo: the resident\r\n"
    assert with_recipient_header(message, ADDRESS) == TO + message


def test_a_message_that_is_only_headers_has_its_to_header_replaced() -> None:
    assert with_recipient_header(b"Subject: x\r\nTo: old\r\n", ADDRESS) == b"Subject: x\r\n" + TO


def test_a_long_header_does_not_stretch_over_the_body() -> None:
    message = b"Subject: your appointment at the Migratieloket\r\n\r\nTo: the resident\r\nHello\r\n"
    assert with_recipient_header(message, ADDRESS) == TO + message
