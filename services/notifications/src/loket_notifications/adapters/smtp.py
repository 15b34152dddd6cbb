"""E-mail over SMTP with aiosmtplib: one connection per message, STARTTLS/login when configured.

Addresses go on the wire as SMTP can carry them (`domain.addresses`): a Unicode domain
IDNA-encoded; a local part outside ASCII in UTF-8, with SMTPUTF8 asked for in `MAIL FROM`. A
server that does not offer SMTPUTF8 then fails the message at once (permanent,
`notification-failed`), never a retry loop; the booking service refuses such addresses at booking
time when told the server lacks it (`LOKET_EMAIL_SMTPUTF8=false`).
"""

from __future__ import annotations

import aiosmtplib

from loket_notifications.application.ports import PermanentError, TransientError
from loket_notifications.domain.addresses import (
    UndeliverableAddress,
    envelope_address,
    needs_smtputf8,
    with_recipient_header,
)


class SmtpTransport:
    def __init__(
        self,
        host: str,
        port: int,
        username: str | None = None,
        password: str | None = None,
        start_tls: bool = False,
        use_tls: bool = False,
        timeout: float = 15.0,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.start_tls = start_tls
        self.use_tls = use_tls
        self.timeout = timeout

    async def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        try:
            envelope = [envelope_address(r) for r in recipients]
            from_address = envelope_address(sender)
            utf8 = any(needs_smtputf8(address) for address in [sender, *recipients])
        except UndeliverableAddress as exc:
            raise PermanentError(str(exc)) from exc
        if len(recipients) == 1:
            # The rendered message names the resident in RFC 2047 words, which an address may not
            # hold: the To: header goes as SMTP carries it (the same bytes on every retry).
            message = with_recipient_header(message, recipients[0])
        try:
            await aiosmtplib.send(
                message,
                sender=from_address,
                recipients=envelope,
                mail_options=["SMTPUTF8"] if utf8 else None,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                start_tls=self.start_tls,
                use_tls=self.use_tls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPNotSupported as exc:
            raise PermanentError(f"the mail server cannot carry this address: {exc}") from exc
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [err.code for err in exc.recipients]
            if all(500 <= code < 600 for code in codes):
                raise PermanentError(f"recipient refused: {exc}") from exc
            raise TransientError(f"recipient deferred: {exc}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentError(f"SMTP {exc.code}: {exc.message}") from exc
            raise TransientError(f"SMTP {exc.code}: {exc.message}") from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise TransientError(f"SMTP unavailable: {exc!r}") from exc
