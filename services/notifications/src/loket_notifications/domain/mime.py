"""The bytes of an e-mail, written directly: headers (RFC 5322, RFC 2047 encoded words) and MIME parts
(RFC 2045-2046).

The standard library's `email.message.EmailMessage` parses every header it is given into objects
and folds it again on output; in a storm that was about a third of this service's CPU per message
(py-spy, bench/README.md). Our messages have one fixed shape (text and HTML alternatives, maybe a
calendar object), so they are written as bytes; `email.header` and `email.utils` still encode what
needs encoding (a subject or name outside ASCII). Pure: the boundary is passed in.

- Text parts are UTF-8, `8bit` (or `7bit` when ASCII) as long as every line fits SMTP's 998
  octets (RFC 5322 2.1.1), else quoted-printable. Lines end in CRLF.
- Headers in ASCII longer than 78 characters, and any outside ASCII, are folded or encoded by
  `email.header.Header`.
"""

from __future__ import annotations

from email import quoprimime
from email.header import Header

CRLF = b"\r\n"
MAX_LINE = 998  # octets per line, CRLF excluded (RFC 5322 2.1.1)
FOLD_AT = 78


def header(name: str, value: str) -> bytes:
    """One header field, CRLF-terminated: as it is when short and ASCII, else folded or encoded."""
    if value.isascii() and len(name) + 2 + len(value) <= FOLD_AT:
        return f"{name}: {value}\r\n".encode("ascii")
    charset = "us-ascii" if value.isascii() else "utf-8"
    encoded = Header(value, charset, maxlinelen=FOLD_AT, header_name=name).encode(linesep="\r\n")
    return f"{name}: {encoded}\r\n".encode("ascii")


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


def text_part(subtype: str, text: str, params: dict[str, str] | None = None, filename: str | None = None) -> bytes:
    """A `text/<subtype>; charset="utf-8"` part (headers, blank line, body), e.g. plain, html or
    calendar; `filename` makes it an attachment."""
    body = _crlf(text)
    if not body.endswith("\r\n"):
        body += "\r\n"
    data = body.encode("utf-8")
    if max(len(line) for line in data.split(CRLF)) > MAX_LINE:
        encoding = "quoted-printable"
        data = quoprimime.body_encode(body, maxlinelen=76, eol="\r\n").encode("ascii")
        if not data.endswith(CRLF):
            data += CRLF
    else:
        encoding = "7bit" if data.isascii() else "8bit"
    extra = "".join(f'; {key}="{value}"' for key, value in (params or {}).items())
    head = f'Content-Type: text/{subtype}; charset="utf-8"{extra}\r\nContent-Transfer-Encoding: {encoding}\r\n'
    if filename:
        head += f'Content-Disposition: attachment; filename="{filename}"\r\n'
    return head.encode("ascii") + CRLF + data


def multipart(subtype: str, parts: list[bytes], boundary: str) -> bytes:
    """A `multipart/<subtype>` part holding `parts` (each as `text_part` or `multipart` made it).
    `boundary` must occur in none of them (a random one does not)."""
    mark = f"--{boundary}".encode("ascii")
    # The CRLF before a delimiter belongs to it (RFC 2046 5.1.1): one more, so a part keeps its last line end.
    body = b"".join(mark + CRLF + part + CRLF for part in parts) + mark + b"--" + CRLF
    return f'Content-Type: multipart/{subtype}; boundary="{boundary}"\r\n'.encode("ascii") + CRLF + body


def message(headers: list[tuple[str, str]], body: bytes) -> bytes:
    """The whole message: `headers` in order, MIME-Version, then `body` (a part with its own
    Content-Type and other headers first, as `multipart` or `text_part` return it)."""
    return b"".join(header(name, value) for name, value in headers) + b"MIME-Version: 1.0\r\n" + body
