"""The sender loop's decisions with an in-memory store and fake transports: retries, give-up,
permanent errors, stale reminders, messages past their time, and order per booking."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from loket_notifications.application.compose import Composer, ComposeSettings
from loket_notifications.application.ports import (
    Contact,
    DeliveryRow,
    LocationInfo,
    PermanentError,
    ProductInfo,
    TransientError,
)
from loket_notifications.application.sender import Sender, SenderSettings
from loket_notifications.domain.keys import booking_key, notification_id
from loket_notifications.domain.kinds import channel_of
from loket_notifications.domain.planning import BookingView
from loket_notifications.domain.retry import RetryPolicy

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
START = NOW + timedelta(days=1)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class MemoryStore:
    def __init__(self) -> None:
        self.rows: dict[str, DeliveryRow] = {}
        self.next_at: dict[str, datetime] = {}
        self.bookings: dict[str, BookingView] = {}
        self.events: list[Any] = []
        self.finished: dict[str, tuple[str, str | None]] = {}

    def add(self, booking_id: str, kind: str, version: int = 0, due: datetime = NOW, **kw: Any) -> str:
        key = booking_key(booking_id, kind, version)
        row = DeliveryRow(
            id=str(notification_id(key)),
            dedupe_key=key,
            booking_id=booking_id,
            subscription_id=None,
            kind=kind,
            version=version,
            channel=channel_of(kind),
            language="en",
            context={
                "start": START.isoformat(),
                "end": START.isoformat(),
                "product_id": "p",
                "location_id": "l",
                "cancelled_by": "staff",
                "reason": "x",
            },
            status="pending",
            due_at=due,
            not_after=kw.pop("not_after", None),
            attempts=0,
            message_id=None,
            recipient=None,
            payload=None,
        )
        self.rows[row.id] = row
        self.next_at[row.id] = due
        return row.id

    async def booking(self, conn: Any, booking_id: str, lock: bool = False) -> BookingView | None:
        return self.bookings.get(booking_id)

    async def claim_due(self, pool: Any, now: datetime, limit: int, lease: Any, claimer: str) -> list[DeliveryRow]:
        due = [r for r in self.rows.values() if r.status == "pending" and self.next_at[r.id] <= now][:limit]
        for r in due:
            self.rows[r.id] = replace(r, status="sending", attempts=r.attempts + 1)
        return [self.rows[r.id] for r in due]

    async def release(self, pool: Any, delivery_ids: list[str]) -> None:
        for i in delivery_ids:
            if self.rows[i].status == "sending":
                self.rows[i] = replace(self.rows[i], status="pending", attempts=self.rows[i].attempts - 1)

    async def save_rendered(
        self, pool: Any, delivery_id: str, recipient: str, subject: str, message_id: str | None, payload: bytes
    ) -> None:
        self.rows[delivery_id] = replace(
            self.rows[delivery_id], recipient=recipient, payload=payload, message_id=message_id
        )

    async def retry_later(self, pool: Any, delivery_id: str, at: datetime, error: str, fault: bool = False) -> None:
        row = self.rows[delivery_id]
        self.rows[delivery_id] = replace(row, status="pending", last_error=error, faults=row.faults + int(fault))
        self.next_at[delivery_id] = at

    async def finish(
        self, pool: Any, delivery_id: str, status: str, at: datetime, error: str | None, event: Any, key: str
    ) -> bool:
        if self.rows[delivery_id].status not in ("pending", "sending"):
            return False
        self.rows[delivery_id] = replace(self.rows[delivery_id], status=status, last_error=error)
        if event is not None:
            self.events.append(event)
        return True

    async def subscription_active(self, pool: Any, subscription_id: str) -> bool:
        return True


class Catalogue:
    async def product(self, product_id: str) -> ProductInfo | None:
        return ProductInfo("p", {"en": "Residence card", "nl": "Verblijfskaart", "fr": "Carte"})

    async def location(self, location_id: str) -> LocationInfo | None:
        return LocationInfo("l", "Counter", "Street 1")

    def cached_product(self, product_id: str) -> ProductInfo | None:
        return None


class Contacts:
    def __init__(self) -> None:
        self.unknown: set[str] = set()

    async def contact(self, booking_id: str) -> Contact:
        if booking_id in self.unknown:
            raise PermanentError("unknown booking")
        return Contact(f"{booking_id}@example.org", "+32470000000")


class Mail:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes]] = []
        self.failures: list[Exception] = []

    async def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((recipients[0], message))


class Sms:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    async def send(self, to: str, body: str, reference: str) -> None:
        self.sent.append((to, body))


class HangingMail(Mail):
    def __init__(self) -> None:
        super().__init__()
        self.entered = asyncio.Event()

    async def send(self, sender: str, recipients: list[str], message: bytes) -> None:
        self.entered.set()
        await asyncio.Event().wait()


def make(max_attempts: int = 3) -> tuple[Sender, MemoryStore, Mail, Contacts, Clock]:
    store, mail, contacts, clock = MemoryStore(), Mail(), Contacts(), Clock()
    composer = Composer(Catalogue(), contacts, ComposeSettings(), clock)
    sender = Sender(
        pool=None,
        store=store,
        composer=composer,
        mail=mail,
        sms=Sms(),  # type: ignore[arg-type]
        settings=SenderSettings(mail_from="a@b.c", retry=RetryPolicy(max_attempts, 10, 60)),
        clock=clock,
    )
    return sender, store, mail, contacts, clock


async def test_sends_and_publishes_sent() -> None:
    sender, store, mail, _, _ = make()
    row_id = store.add("b1", "confirmation")
    assert await sender.run_once() == 1
    assert store.rows[row_id].status == "sent" and len(mail.sent) == 1
    assert [e.type for e in store.events] == ["notification-sent"]
    assert await sender.run_once() == 0


async def test_transient_errors_back_off_and_are_never_given_up() -> None:
    sender, store, mail, _, clock = make(max_attempts=3)
    mail.failures = [TransientError("451 busy")] * 6
    row_id = store.add("b1", "confirmation")
    await sender.run_once()
    assert store.rows[row_id].status == "pending"
    assert 5 <= (store.next_at[row_id] - NOW).total_seconds() <= 10  # base 10 s, jitter 0.5-1
    assert await sender.run_once() == 0  # not yet due
    for _ in range(6):
        clock.now = store.next_at[row_id]
        await sender.run_once()
    assert store.rows[row_id].status == "sent" and store.rows[row_id].attempts == 7
    assert [e.type for e in store.events] == ["notification-sent"]
    assert store.events[0].data["attempts"] == 7


async def test_retry_resends_the_same_bytes() -> None:
    sender, store, mail, _, clock = make()
    mail.failures = [TransientError("451 busy")]
    row_id = store.add("b1", "confirmation")
    await sender.run_once()
    first_payload = store.rows[row_id].payload
    clock.now = store.next_at[row_id] + timedelta(hours=1)  # the Date header would differ if re-rendered
    await sender.run_once()
    assert mail.sent == [(mail.sent[0][0], first_payload)]


async def test_permanent_error_fails_at_once() -> None:
    sender, store, mail, contacts, _ = make()
    contacts.unknown.add("b1")
    row_id = store.add("b1", "confirmation")
    await sender.run_once()
    assert store.rows[row_id].status == "failed" and store.rows[row_id].attempts == 1
    assert mail.sent == [] and [e.type for e in store.events] == ["notification-failed"]


async def test_reminder_of_a_moved_or_cancelled_booking_is_not_sent() -> None:
    sender, store, mail, _, _ = make()
    view = BookingView("b1", "l", "p", START, None, "en", "confirmed", sequence=1)
    store.bookings["b1"] = view
    stale = store.add("b1", "reminder", version=0)
    current = store.add("b1", "reminder", version=1)
    store.bookings["b2"] = replace(view, booking_id="b2", status="cancelled", sequence=0)
    cancelled = store.add("b2", "reminder", version=0)
    await sender.run_once()
    assert store.rows[stale].status == "cancelled"
    assert store.rows[cancelled].status == "cancelled"
    assert store.rows[current].status == "sent" and len(mail.sent) == 1
    assert [e.type for e in store.events] == ["notification-sent"]


async def test_past_its_time_is_skipped_and_reported() -> None:
    sender, store, mail, _, clock = make()
    row_id = store.add("b1", "confirmation", not_after=NOW + timedelta(minutes=1))
    clock.now = NOW + timedelta(minutes=2)
    await sender.run_once()
    assert store.rows[row_id].status == "skipped" and mail.sent == []
    assert store.events[0].type == "notification-failed" and "too late" in store.events[0].data["error"]


async def test_one_bookings_messages_go_in_order() -> None:
    sender, store, mail, _, _ = make()
    store.add("b1", "cancellation", due=NOW)
    store.add("b1", "confirmation", due=NOW - timedelta(seconds=5))
    store.add("b2", "confirmation", due=NOW)
    await sender.run_once()
    b1 = [m for to, m in mail.sent if to == "b1@example.org"]
    assert [b"confirmed" in m for m in b1] == [True, False]


async def test_shutdown_hands_back_claimed_rows_not_begun() -> None:
    sender, store, _, _, _ = make()
    sender.mail = mail = HangingMail()
    sender._slots = asyncio.Semaphore(1)  # one at a time: the second waits
    first = store.add("b1", "confirmation", due=NOW - timedelta(seconds=1))
    second = store.add("b2", "confirmation")
    task = asyncio.create_task(sender.run_once())
    await asyncio.wait_for(mail.entered.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert store.rows[first].status == "sending"  # mid-send: unknown outcome, the lease decides
    assert store.rows[second].status == "pending" and store.rows[second].attempts == 0
