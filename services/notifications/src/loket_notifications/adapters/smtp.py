"""E-mail over SMTP with aiosmtplib: one connection per message, STARTTLS/login when configured."""

from __future__ import annotations

import aiosmtplib

from loket_notifications.application.ports import PermanentError, TransientError


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
            await aiosmtplib.send(
                message,
                sender=sender,
                recipients=recipients,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                start_tls=self.start_tls,
                use_tls=self.use_tls,
                timeout=self.timeout,
            )
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
