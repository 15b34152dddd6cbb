"""Issue 15, part 3: an outage of another part never ends a message; only its own faults do.

Before, every failed try counted: after `max_attempts` tries (8, about 5 to 11 minutes) with
booking's contact endpoint, the mail server or the SMS gateway unreachable, the message was failed
for good and the resident never told. Now such a message waits the outage out, its wait capped by
the policy, and a permanent error (address refused, erased person) or repeated faults of its own
still end it with `notification-failed` and the reason."""

from __future__ import annotations

from datetime import timedelta

import asyncpg

from loket_notifications.application.ports import Contact, PermanentError, TransientError
from loket_notifications.domain.retry import RetryPolicy
from tests.unit.notifications.test_notifications_sender import make


class FlakyContacts:
    """Booking's contact endpoint: down for the first `down` calls, then answering."""

    def __init__(self, down: int, then: Exception | None = None) -> None:
        self.down = down
        self.then = then
        self.calls = 0

    async def contact(self, booking_id: str) -> Contact:
        self.calls += 1
        if self.calls <= self.down:
            raise TransientError("booking service unreachable: ConnectError")
        if self.then is not None:
            raise self.then
        return Contact(f"{booking_id}@example.org", None)


def test_the_wait_is_capped_however_long_the_outage() -> None:
    policy = RetryPolicy(max_attempts=8, base_seconds=5, max_seconds=600)
    assert policy.delay(1) == timedelta(seconds=5)
    assert policy.delay(8) == timedelta(seconds=600)
    assert policy.delay(10_000) == timedelta(seconds=600)  # no overflow after days of an outage


async def test_booking_down_for_longer_than_every_try_still_delivers_once() -> None:
    sender, store, mail, _, clock = make(max_attempts=3)
    contacts = FlakyContacts(down=50)
    sender.composer.contacts = contacts  # type: ignore[assignment]
    row_id = store.add("b1", "confirmation")
    for _ in range(51):
        await sender.run_once()
        row = store.rows[row_id]
        if row.status != "pending":
            break
        assert (store.next_at[row_id] - clock.now) <= timedelta(seconds=60)  # capped (make: 60 s)
        clock.now = store.next_at[row_id]
    row = store.rows[row_id]
    assert row.status == "sent", row.last_error
    assert row.attempts == 51 and row.faults == 0
    assert len(mail.sent) == 1 and [e.type for e in store.events] == ["notification-sent"]


async def test_mail_server_and_own_database_outages_are_waited_out() -> None:
    sender, store, mail, _, clock = make(max_attempts=2)
    mail.failures = [TransientError("SMTP unavailable")] * 5 + [ConnectionRefusedError()] * 3
    mail.failures += [asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")] * 3
    row_id = store.add("b1", "confirmation")
    for _ in range(12):
        await sender.run_once()
        if store.rows[row_id].status != "pending":
            break
        clock.now = store.next_at[row_id]
    assert store.rows[row_id].status == "sent" and store.rows[row_id].faults == 0
    assert len(mail.sent) == 1


async def test_an_erased_person_fails_at_once_after_an_outage_with_the_reason() -> None:
    sender, store, mail, _, clock = make(max_attempts=3)
    sender.composer.contacts = FlakyContacts(down=10, then=PermanentError("no contact details (erased)"))  # type: ignore[assignment]
    row_id = store.add("b1", "confirmation")
    for _ in range(11):
        await sender.run_once()
        if store.rows[row_id].status != "pending":
            break
        clock.now = store.next_at[row_id]
    row = store.rows[row_id]
    assert row.status == "failed" and row.attempts == 11 and mail.sent == []
    assert [e.type for e in store.events] == ["notification-failed"]
    assert "erased" in store.events[0].data["error"]


async def test_faults_of_the_message_itself_still_end_it() -> None:
    sender, store, mail, _, clock = make(max_attempts=3)
    mail.failures = [ValueError("a bug")] * 3
    row_id = store.add("b1", "confirmation")
    for _ in range(3):
        await sender.run_once()
        if store.rows[row_id].status != "pending":
            break
        clock.now = store.next_at[row_id]
    row = store.rows[row_id]
    assert row.status == "failed" and "gave up after 3 faults" in (row.last_error or "")
    assert [e.type for e in store.events] == ["notification-failed"]
