"""E-mail over SMTP with aiosmtplib: connections kept open and reused for message after message.

A connection costs a TCP handshake, EHLO, possibly STARTTLS and a login, and QUIT: several times the
cost of the message itself (one per message once took most of this service's time in a storm). So
clients stay connected (`connections`, 1 by default; `LOKET_SMTP_CONNECTIONS`); messages go over
each one transaction after the other (MAIL, RCPT, DATA), while the sender composes the next ones.
Neither aiosmtplib nor the stack's server speaks PIPELINING (RFC 2920), so a transaction costs
four round trips: a second connection overlaps them when the server is far or the machine busy.

When the connection is gone (the server restarted, closed an idle connection, or answered 421):
- before DATA, the server holds nothing of the message: reconnect at once and send it again;
- during DATA, whether the server accepted it is unknown: the connection is dropped and the message
  raises TransientError, so the sender's ledger sends the same bytes with the same Message-ID later
  (at-least-once, the trade-off described in `application.sender`). Never lost, never doubled
  except in that window.

Addresses go on the wire as SMTP can carry them (`domain.addresses`): a Unicode domain
IDNA-encoded; a local part outside ASCII in UTF-8, with SMTPUTF8 asked for in `MAIL FROM`. A
server that does not offer SMTPUTF8 then fails the message at once (permanent,
`notification-failed`), never a retry loop; the booking service refuses such addresses at booking
time when told the server lacks it (`LOKET_EMAIL_SMTPUTF8=false`).
"""

from __future__ import annotations

import asyncio
import contextlib

import aiosmtplib

from loket_notifications.application.ports import PermanentError, TransientError
from loket_notifications.domain.addresses import (
    UndeliverableAddress,
    envelope_address,
    needs_smtputf8,
    with_recipient_header,
)
from loket_runtime.logging import get_logger

log = get_logger(__name__)

# The connection is gone, or the server is closing it (421): nothing of the current message was taken.
_GONE = (aiosmtplib.SMTPServerDisconnected, ConnectionError, aiosmtplib.SMTPTimeoutError)
SERVICE_CLOSING = 421


class _Reconnect(Exception):
    """The connection went away before the message was handed over: safe to send it on a new one."""


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
        connections: int = 1,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self.password = password
        self.start_tls = start_tls
        self.use_tls = use_tls
        self.timeout = timeout
        self.connections_opened = 0  # for tests and metrics: how many times we (re)connected
        # Each connection carries one transaction at a time; a message takes whichever is free.
        self._idle: asyncio.Queue[_Connection] = asyncio.Queue()
        self._all = [_Connection(self) for _ in range(max(1, connections))]
        for connection in self._all:
            self._idle.put_nowait(connection)

    async def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        """Send one message. Raises PermanentError (refused for good) or TransientError (try later)."""
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
        connection = await self._idle.get()
        try:
            try:
                await connection.transaction(from_address, envelope, message, utf8)
            except _Reconnect:
                # once: a connection that fails again right after it was opened is an outage
                await connection.transaction(from_address, envelope, message, utf8, fresh=True)
        finally:
            self._idle.put_nowait(connection)

    async def aclose(self) -> None:
        """QUIT politely (on shutdown); a connection already gone is simply forgotten."""
        for connection in self._all:
            await connection.close()


class _Connection:
    """One SMTP connection of the transport, opened when first needed and again after it dropped."""

    def __init__(self, transport: SmtpTransport) -> None:
        self.transport = transport
        self._client: aiosmtplib.SMTP | None = None

    async def transaction(
        self, sender: str, recipients: list[str], message: bytes, utf8: bool, fresh: bool = False
    ) -> None:
        client = await self._connected()
        encoding = "utf-8" if utf8 else "ascii"
        try:
            if utf8 and not client.supports_extension("smtputf8"):
                raise PermanentError("the mail server cannot carry this address: SMTPUTF8 is not supported")
            await client.mail(sender, options=["SMTPUTF8"] if utf8 else None, encoding=encoding)
            refused = []
            for recipient in recipients:
                try:
                    await client.rcpt(recipient, encoding=encoding)
                except aiosmtplib.SMTPRecipientRefused as exc:
                    if exc.code == SERVICE_CLOSING:
                        raise
                    refused.append(exc)
            if len(refused) == len(recipients):
                await self._reset(client)
                if all(500 <= err.code < 600 for err in refused):
                    raise PermanentError(f"recipient refused: {aiosmtplib.SMTPRecipientsRefused(refused)}")
                raise TransientError(f"recipient deferred: {aiosmtplib.SMTPRecipientsRefused(refused)}")
        except _GONE as exc:
            self._drop()
            if fresh:
                raise TransientError(f"SMTP unavailable: {exc!r}") from exc
            raise _Reconnect from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == SERVICE_CLOSING:
                self._drop()
                if fresh:
                    raise TransientError(f"SMTP {exc.code}: {exc.message}") from exc
                raise _Reconnect from exc
            await self._reset(client)
            raise _classified(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientError(f"SMTP unavailable: {exc!r}") from exc
        # From here the server may hold the message: no immediate second try.
        try:
            await client.data(message)
        except _GONE as exc:
            self._drop()
            raise TransientError(f"SMTP connection lost during DATA (accepted or not: unknown): {exc!r}") from exc
        except aiosmtplib.SMTPResponseException as exc:
            if exc.code == SERVICE_CLOSING:
                self._drop()
            else:
                await self._reset(client)
            raise _classified(exc) from exc
        except (aiosmtplib.SMTPException, OSError) as exc:
            self._drop()
            raise TransientError(f"SMTP failed during DATA (accepted or not: unknown): {exc!r}") from exc

    async def _connected(self) -> aiosmtplib.SMTP:
        if self._client is not None and self._client.is_connected:
            return self._client
        self._drop()
        t = self.transport
        client = aiosmtplib.SMTP(
            hostname=t.host,
            port=t.port,
            username=t.username,
            password=t.password,
            start_tls=t.start_tls,
            use_tls=t.use_tls,
            timeout=t.timeout,
        )
        try:
            await client.connect()
            await client.ehlo()  # the extensions (SMTPUTF8) are known before the first MAIL
        except aiosmtplib.SMTPResponseException as exc:
            client.close()
            raise _classified(exc) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            client.close()
            raise TransientError(f"SMTP unavailable: {exc!r}") from exc
        t.connections_opened += 1
        log.info("SMTP connection opened", host=t.host, port=t.port, count=t.connections_opened)
        self._client = client
        return client

    async def _reset(self, client: aiosmtplib.SMTP) -> None:
        """RSET after a refused transaction, so the next message starts clean; drop the connection if
        even that fails."""
        try:
            await client.rset()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            self._drop()

    def _drop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await self._client.quit()
        self._drop()


def _classified(exc: aiosmtplib.SMTPResponseException) -> Exception:
    """5xx is for good (the message or address is refused), anything else is worth another try."""
    if 500 <= exc.code < 600:
        return PermanentError(f"SMTP {exc.code}: {exc.message}")
    return TransientError(f"SMTP {exc.code}: {exc.message}")
