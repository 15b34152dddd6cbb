"""The calendar objects of real bookings on the whole stack: the `calendar.ics` download (booking)
and the e-mailed invitations, updates and cancellations (notifications, from the mail sink), taken
at every step of a booking's life and imported in order into a calendar application
(tests/calendar_app.py): one event per booking, shared by the download and the e-mails, that ends
cancelled; STATUS and METHOD true to the booking's state at each step."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import asyncpg
import httpx
import pytest

from loket_notifications.domain.keys import booking_key, message_id
from loket_runtime import clock
from tests.calendar_app import CalendarApp, Parsed, check
from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, disjoint, free_slots, open_day, wait_until

MAIL_DOMAIN = "loket.gent"


@pytest.fixture(scope="module")
def client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30)


def auth(booking: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {booking['manage_token']}"}


def book(client: httpx.Client, product: str, location: str, start: str, status: str) -> dict[str, Any]:
    r = client.post(
        "/api/v1/bookings",
        json=booking_body(product, location, start, language="en"),
        headers={"Prefer": "wait=10"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["status"] == status, r.json()
    result: dict[str, Any] = r.json()
    return result


def download(client: httpx.Client, booking: dict[str, Any]) -> bytes:
    r = client.get(f"/api/v1/bookings/{booking['id']}/calendar.ics", params={"token": booking["manage_token"]})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/calendar")
    return r.content


def mail(live: RunningStack, booking_id: str, kind: str, version: int) -> EmailMessage:
    """The e-mail of this kind and booking version, once the sink has it."""
    mid = message_id(booking_key(booking_id, kind, version), MAIL_DOMAIN).strip("<>")

    def found() -> list[EmailMessage]:
        return [
            message_from_bytes(p.read_bytes(), policy=policy.default)  # type: ignore[misc]
            for p in sorted(live.mail_dir.glob(f"*-{mid}.eml"))
        ]

    messages = wait_until(found, timeout=30)
    assert messages, f"no {kind} e-mail (v{version}) for {booking_id}"
    return messages[0]


def ics_of(message: EmailMessage) -> bytes | None:
    for part in message.iter_attachments():
        if part.get_content_type() == "text/calendar":
            content = part.get_content()
            ics = content.encode() if isinstance(content, str) else bytes(content)
            assert part.get_param("method") == check(ics).method
            return ics
    return None


def expect(ics: bytes | None, method: str, status: str, sequence: int, start: str) -> Parsed:
    assert ics is not None
    obj = check(ics)
    assert (obj.method, obj.status, obj.sequence) == (method, status, sequence), obj
    assert obj.start == datetime.fromisoformat(start), (obj.start, start)
    return obj


def status_of(client: httpx.Client, booking: dict[str, Any]) -> dict[str, Any]:
    r = client.get(f"/api/v1/bookings/{booking['id']}", headers=auth(booking))
    assert r.status_code == 200, r.text
    shown: dict[str, Any] = r.json()
    return shown


def reschedule(client: httpx.Client, booking: dict[str, Any], start: str, status: str) -> None:
    r = client.post(f"/api/v1/bookings/{booking['id']}/reschedule", headers=auth(booking), json={"start": start})
    assert r.status_code == 200, r.text
    assert (r.json()["start"], r.json()["status"]) == (start, status), r.json()


def test_a_bookings_whole_life_imports_as_one_event_that_ends_cancelled(
    live: RunningStack, client: httpx.Client
) -> None:
    """Requested and held, moved while held, confirmed, moved, cancelled: the download after each
    step and every e-mailed object are one event, its SEQUENCE never going down."""
    day = open_day(client, "long-stay", "migration-counter", min_free=4, exclusive=True)
    first, second, third = (s["start"] for s in disjoint(free_slots(client, "long-stay", "migration-counter", day))[:3])
    b = book(client, "long-stay", "migration-counter", first, status="held")
    uid = f"booking-{b['id']}@{MAIL_DOMAIN}"
    given: list[tuple[str, bytes]] = []  # every object in the order the resident got it

    # held: the download is TENTATIVE; the please-confirm carries no invitation
    given.append(("download held", download(client, b)))
    held = expect(given[-1][1], "PUBLISH", "TENTATIVE", 0, first)
    assert held.uid == uid and "Woodrow Wilsonplein 1" in held.location and "Loket Migratie" in held.location
    assert ics_of(mail(live, b["id"], "please-confirm", 0)) is None

    # moved while held: still TENTATIVE, at the new time, in the notice and the download
    reschedule(client, b, second, "held")
    given.append(("mail moved while held", ics_of(mail(live, b["id"], "rescheduled", 1)) or b""))
    expect(given[-1][1], "REQUEST", "TENTATIVE", 3, second)
    given.append(("download moved while held", download(client, b)))
    expect(given[-1][1], "PUBLISH", "TENTATIVE", 3, second)

    # confirmed: the invitation
    r = client.post(f"/api/v1/bookings/{b['id']}/confirm", headers=auth(b))
    assert r.status_code == 200 and r.json()["status"] == "confirmed", r.text
    given.append(("mail confirmed", ics_of(mail(live, b["id"], "confirmation", 1)) or b""))
    invitation = expect(given[-1][1], "REQUEST", "CONFIRMED", 4, second)
    assert invitation.attendee is not None and invitation.attendee.endswith("@example.org")
    given.append(("download confirmed", download(client, b)))
    expect(given[-1][1], "PUBLISH", "CONFIRMED", 4, second)

    # moved
    reschedule(client, b, third, "confirmed")
    given.append(("mail moved", ics_of(mail(live, b["id"], "rescheduled", 2)) or b""))
    expect(given[-1][1], "REQUEST", "CONFIRMED", 7, third)
    given.append(("download moved", download(client, b)))
    expect(given[-1][1], "PUBLISH", "CONFIRMED", 7, third)

    # cancelled: the CANCEL, by mail and in the download
    r = client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=auth(b))
    assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
    given.append(("mail cancelled", ics_of(mail(live, b["id"], "cancellation", 2)) or b""))
    expect(given[-1][1], "CANCEL", "CANCELLED", 8, third)
    given.append(("download cancelled", download(client, b)))
    expect(given[-1][1], "CANCEL", "CANCELLED", 8, third)

    assert {check(ics).uid for _, ics in given} == {uid}  # the download and the e-mails: one UID
    sequences = [check(ics).sequence for _, ics in given]
    assert sequences == sorted(sequences), list(zip([step for step, _ in given], sequences, strict=True))
    app = CalendarApp()
    for _, ics in given:
        app.apply(ics)
    assert not app.stale and list(app.events) == [uid]
    event = app.events[uid]
    assert (event.status, event.start) == ("CANCELLED", datetime.fromisoformat(third))


def test_an_expired_hold_is_cancelled_by_mail_and_in_the_download(live: RunningStack, client: httpx.Client) -> None:
    day = open_day(client, "long-stay", "sc-wondelgem", min_free=2, exclusive=True)
    start = free_slots(client, "long-stay", "sc-wondelgem", day)[0]["start"]
    b = book(client, "long-stay", "sc-wondelgem", start, status="held")
    tentative = download(client, b)
    expect(tentative, "PUBLISH", "TENTATIVE", 0, start)
    # The calendar's hold timer decides expiry from its reservation: make this hold due now.
    asyncio.run(expire_hold(live, b["id"]))
    assert wait_until(lambda: status_of(client, b)["status"] == "expired", timeout=30)
    cancel = ics_of(mail(live, b["id"], "expired", 0))
    expect(cancel, "CANCEL", "CANCELLED", 2, start)
    expect(download(client, b), "CANCEL", "CANCELLED", 2, start)
    app = CalendarApp()
    for ics in (tentative, cancel or b""):
        app.apply(ics)
    assert [e.status for e in app.events.values()] == ["CANCELLED"]


async def expire_hold(live: RunningStack, booking_id: str) -> None:
    conn = await asyncpg.connect(live.dsn("calendar"))
    try:
        # The stack's clock, not PostgreSQL's now(): under LOKET_TEST_NOW the two differ.
        await conn.execute(
            "UPDATE reservations SET hold_expires_at = $2 WHERE booking_id = $1",
            booking_id,
            clock.now() - timedelta(seconds=1),
        )
    finally:
        await conn.close()


def test_a_rejected_booking_downloads_as_no_appointment(client: httpx.Client) -> None:
    day = open_day(client, "short-stay", "sc-oostakker", exclusive=True)  # Oostakker: one desk
    start = free_slots(client, "short-stay", "sc-oostakker", day)[0]["start"]
    book(client, "short-stay", "sc-oostakker", start, status="confirmed")
    r = client.post(
        "/api/v1/bookings", json=booking_body("short-stay", "sc-oostakker", start), headers={"Prefer": "wait=10"}
    )
    assert r.status_code == 409, r.text
    rejected = {"id": r.json()["id"], "manage_token": r.json()["manage_token"]}
    assert status_of(client, rejected)["status"] == "rejected"
    expect(download(client, rejected), "CANCEL", "CANCELLED", 2, start)
