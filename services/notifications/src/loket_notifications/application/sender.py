"""The sender loop: takes due deliveries from PostgreSQL and sends them, with retries.

Exactly once in effect, and the trade-off we chose:
- A message is planned once per (booking, kind, booking version): redelivered events plan nothing new.
- Before the first attempt the row is claimed ('sending', with a lease) and the rendered bytes and
  Message-ID are stored; after the SMTP server or SMS gateway accepted it, the row becomes 'sent'
  and `notification-sent` is queued in the same transaction (outbox).
- A crash after the server accepted the message and before 'sent' was recorded leaves the row
  'sending'; when its lease runs out it is sent again with the same bytes and the same Message-ID.
  So SMTP delivery is at-least-once, and the rare duplicate (only in that crash window) carries
  the same Message-ID, which mail clients and servers recognise as the same message. The
  alternative, at-most-once (never resend a 'sending' row), would silently lose messages, which is
  the complaint we are here to fix.
- Transient errors (an outage of another part: booking or the catalogue unreachable, SMTP 4xx,
  connection refused, timeouts, 5xx of the SMS gateway, our own database gone) are retried with
  exponential backoff capped at `RetryPolicy.max_seconds`, for as long as the outage lasts: they
  never count towards giving up (issue 15: confirmations were lost for good after 8 tries while
  booking was down for ten minutes). Only a permanent error (address refused by the mail server,
  erased person, unknown booking) fails the row at once, and a fault of the message itself (an
  unexpected exception) `RetryPolicy.max_attempts` times; then the row becomes 'failed' and
  `notification-failed` is published with the reason. Ops list failed rows and resend them.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from prometheus_client import Counter

from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_notifications.application.compose import Composer, NoRecipient
from loket_notifications.application.ports import (
    DeliveryRow,
    MailTransport,
    PermanentError,
    SmsGateway,
    Store,
    TransientError,
)
from loket_notifications.domain.kinds import REMINDER_KINDS, Kind
from loket_notifications.domain.planning import reminder_still_valid
from loket_notifications.domain.retry import RetryPolicy
from loket_runtime.clock import now as clock_now
from loket_runtime.consumer import TRANSIENT_ERRORS
from loket_runtime.logging import bound, get_logger

log = get_logger(__name__)

OUTCOMES = Counter("loket_notifications_total", "Deliveries finished", ["kind", "channel", "status"])
ATTEMPTS = Counter("loket_notification_attempts_total", "Send attempts", ["channel", "result"])
RETRIES = Counter(
    "loket_notification_retries_total",
    "Retries scheduled: for an outage (never given up) or a fault",
    ["channel", "cause"],
)

SOURCE = "loket/notifications"

# A test seam: called at "rendered" (claimed, bytes stored, nothing sent) and "sent" (the server
# accepted it, not recorded yet). Tests raise from it to simulate a crash at that point.
CrashPoint = Callable[[str, DeliveryRow], Awaitable[None]]


@dataclass
class SenderSettings:
    mail_from: str
    retry: RetryPolicy
    lease: timedelta = timedelta(seconds=60)
    batch_size: int = 100
    concurrency: int = 100
    poll_seconds: float = 1.0
    instance_id: str = "local-1"


class Sender:
    def __init__(
        self,
        *,
        pool: object,
        store: Store,
        composer: Composer,
        mail: MailTransport,
        sms: SmsGateway,
        settings: SenderSettings,
        clock: Callable[[], datetime] = clock_now,
        crash_point: CrashPoint | None = None,
    ) -> None:
        self.pool = pool
        self.store = store
        self.composer = composer
        self.mail = mail
        self.sms = sms
        self.settings = settings
        self.clock = clock
        self.crash_point = crash_point
        self._wakeup = asyncio.Event()
        self._slots = asyncio.Semaphore(settings.concurrency)

    def wake(self) -> None:
        self._wakeup.set()

    async def run(self) -> None:
        while True:
            handled = await self.run_once()
            if handled < self.settings.batch_size:
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.settings.poll_seconds)

    async def run_once(self) -> int:
        """Claim the due deliveries and process them; return how many were claimed."""
        rows = await self.store.claim_due(
            self.pool, self.clock(), self.settings.batch_size, self.settings.lease, self.settings.instance_id
        )
        # One booking's messages go out one after the other, in the order they were planned (a
        # confirmation before the cancellation that followed it); different bookings in parallel.
        by_booking: dict[str, list[DeliveryRow]] = {}
        for row in sorted(rows, key=lambda r: r.due_at):
            by_booking.setdefault(row.booking_id or row.id, []).append(row)
        started: set[str] = set()
        try:
            if rows:
                async with asyncio.TaskGroup() as group:
                    for chain in by_booking.values():
                        group.create_task(self._in_order(chain, started))
        except asyncio.CancelledError:
            # Shutting down: hand back what was claimed but not begun, so another instance (or our
            # successor) takes it now rather than when the lease runs out. Begun ones keep their lease:
            # whether the server accepted them is unknown.
            untouched = [row.id for row in rows if row.id not in started]
            if untouched:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.store.release(self.pool, untouched))
            raise
        return len(rows)

    async def _in_order(self, chain: list[DeliveryRow], started: set[str]) -> None:
        async with self._slots:
            for row in chain:
                started.add(row.id)
                await self._guarded(row)

    async def _guarded(self, row: DeliveryRow) -> None:
        with bound(booking_id=row.booking_id, notification_id=row.id, kind=row.kind):
            try:
                await self.process(row)
            except TRANSIENT_ERRORS as exc:  # our database or the network gone: wait it out
                log.warning("delivery interrupted by an outage", error=repr(exc))
                with contextlib.suppress(Exception):
                    await self._retry_or_fail(row, f"outage: {exc!r}")
            except Exception as exc:  # a bug: a fault of this message, counted towards giving up
                log.exception("delivery crashed")
                with contextlib.suppress(Exception):
                    await self._retry_or_fail(row, f"internal error: {exc!r}", fault=True)

    async def process(self, row: DeliveryRow) -> None:
        now = self.clock()
        if row.kind in REMINDER_KINDS:
            view = await self.store.booking(self.pool, row.booking_id or "")
            if not reminder_still_valid(view, row.version):
                await self._finish(row, "cancelled", "booking no longer confirmed at this time")
                return
        if row.subscription_id and not await self.store.subscription_active(self.pool, row.subscription_id):
            await self._finish(row, "cancelled", "unsubscribed")
            return
        if row.not_after is not None and now > row.not_after:
            await self._finish(row, "skipped", f"too late: not sent after {row.not_after.isoformat()}", publish=True)
            return
        if row.payload is None:
            try:
                rendered = await self.composer.render(row)
            except NoRecipient as exc:
                await self._finish(row, "skipped", str(exc))
                return
            except PermanentError as exc:
                await self._finish(row, "failed", f"cannot compose: {exc}", publish=True)
                return
            except TransientError as exc:
                await self._retry_or_fail(row, f"cannot compose yet: {exc}")
                return
            await self.store.save_rendered(
                self.pool, row.id, rendered.recipient, rendered.subject, rendered.message_id, rendered.payload
            )
            recipient, payload = rendered.recipient, rendered.payload
        else:
            recipient, payload = row.recipient or "", row.payload
        if self.crash_point is not None:
            await self.crash_point("rendered", row)
        try:
            if row.channel == "email":
                await self.mail.send(self.settings.mail_from, [recipient], payload)
            else:
                await self.sms.send(recipient, payload.decode(), row.id)
        except TransientError as exc:
            ATTEMPTS.labels(row.channel, "transient").inc()
            await self._retry_or_fail(row, str(exc))
            return
        except PermanentError as exc:
            ATTEMPTS.labels(row.channel, "permanent").inc()
            await self._finish(row, "failed", str(exc), publish=True)
            return
        ATTEMPTS.labels(row.channel, "ok").inc()
        if self.crash_point is not None:
            await self.crash_point("sent", row)
        await self._finish(row, "sent", None, publish=True)

    async def _retry_or_fail(self, row: DeliveryRow, error: str, fault: bool = False) -> None:
        """Try again later. An outage (`fault` false) is waited out however long it lasts, the wait
        capped by the policy; only faults of the message itself count towards giving up."""
        faults = row.faults + (1 if fault else 0)
        if fault and self.settings.retry.gives_up(faults):
            await self._finish(
                row, "failed", f"gave up after {faults} faults in {row.attempts} attempts: {error}", publish=True
            )
            return
        at = self.clock() + self.settings.retry.delay(row.attempts, random.uniform(0.5, 1.0))
        log.warning("send failed, will retry", error=error, attempts=row.attempts, retry_at=at.isoformat())
        RETRIES.labels(row.channel, "fault" if fault else "outage").inc()
        await self.store.retry_later(self.pool, row.id, at, error, fault=fault)

    async def _finish(self, row: DeliveryRow, status: str, error: str | None, publish: bool = False) -> None:
        now = self.clock()
        event: ev.Event | None = None
        channel = "sms" if row.channel == "sms" else "email"
        if publish and status == "sent":
            event = ev.NotificationSent(
                notification_id=row.id,
                booking_id=row.booking_id,
                kind=row.kind,
                channel=channel,
                attempts=row.attempts,
                sent_at=now,
            )
        elif publish:
            event = ev.NotificationFailed(
                notification_id=row.id,
                booking_id=row.booking_id,
                kind=row.kind,
                channel=channel,
                attempts=row.attempts,
                error=error or status,
                failed_at=now,
            )
        envelope = None
        if event is not None:
            envelope = Envelope(
                type=event.TYPE,
                source=SOURCE,
                subject=row.booking_id or row.subscription_id,
                time=now,
                schemaversion=event.VERSION,
                data=event.model_dump(mode="json"),
            )
        key = row.booking_id or f"waitlist:{row.subscription_id}"
        if await self.store.finish(self.pool, row.id, status, now, error, envelope, key):
            OUTCOMES.labels(row.kind, row.channel, status).inc()
            log.info("delivery finished", status=status, attempts=row.attempts, error=error, kind=Kind(row.kind).value)
