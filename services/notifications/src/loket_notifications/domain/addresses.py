"""E-mail addresses as SMTP carries them: internationalised domains and local parts.

- A domain in Unicode (`anna@bücher.example`) is sent IDNA-encoded (`anna@xn--bcher-kva.example`,
  IDNA 2008 with the UTS #46 mapping) in the envelope and in the `To:` header: every server takes it.
- A local part outside ASCII (`jörg@example.org`) can only travel with SMTPUTF8 (RFC 6531): the
  envelope and the `To:` header carry it in UTF-8, and the server must offer the extension. (An
  RFC 2047 encoded word, `=?utf-8?q?j=C3=B6rg?=@...`, is not allowed inside an address.)
"""

from __future__ import annotations

import re
import unicodedata

import idna


class UndeliverableAddress(ValueError):
    """An address no SMTP server can be given (its domain has no IDNA form)."""


def split(address: str) -> tuple[str, str]:
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain:
        raise UndeliverableAddress(f"not an e-mail address: {address!r}")
    return local, domain


def ascii_domain(domain: str) -> str:
    if domain.isascii():
        return domain.lower()
    try:
        return idna.encode(unicodedata.normalize("NFC", domain), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise UndeliverableAddress(f"the domain {domain!r} has no IDNA form: {exc}") from exc


def needs_smtputf8(address: str) -> bool:
    """Whether the address can travel only with SMTPUTF8: a local part outside ASCII."""
    local, _ = split(address)
    return not local.isascii()


def envelope_address(address: str) -> str:
    """The address for `MAIL FROM` / `RCPT TO`: the domain IDNA-encoded, the local part as it is
    (UTF-8 on the wire when `needs_smtputf8`)."""
    local, domain = split(address)
    return f"{unicodedata.normalize('NFC', local)}@{ascii_domain(domain)}"


_TO = re.compile(rb"^To:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*\r?\n", re.IGNORECASE | re.MULTILINE)


def with_recipient_header(message: bytes, address: str) -> bytes:
    """The message with its top-level `To:` header naming `address` as SMTP can carry it: an
    ASCII address as it is, a Unicode domain IDNA-encoded, and an address that needs SMTPUTF8 in
    UTF-8 (as RFC 6532 allows in such a message). Everything else, bodies included, is left byte
    for byte. A plain ASCII address changes nothing."""
    if address.isascii():
        return message
    header_value = envelope_address(address)
    end = message.find(b"\r\n\r\n")
    end = len(message) if end < 0 else end + 2
    head, body = message[:end], message[end:]
    line = b"To: " + header_value.encode("utf-8") + b"\r\n"
    head, replaced = _TO.subn(lambda _: line, head, count=1)
    if not replaced:
        head = line + head
    return head + body
