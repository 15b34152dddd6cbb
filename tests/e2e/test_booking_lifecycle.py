"""The booking lifecycle through HTTP against the real stack: held and confirmed bookings, the
hold running out, rejections with alternatives, Idempotency-Key under concurrency, manage tokens,
reschedules (also two at once), the ICS file, staff actions and their limits, and erasure."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import icalendar
import pytest

from loket_runtime import clock
from tests.conftest import RunningStack
from tests.e2e.helpers import ENGLISH, booking_body, disjoint, free_slots, open_day, wait_until


@pytest.fixture(scope="module")
def client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH)


def day_with_slots(
    client: httpx.Client, product: str, location: str, weekday: int
) -> tuple[date, list[dict[str, str]]]:
    """An open `weekday` with at least five free starts that no other test books, and its free starts."""
    day = open_day(client, product, location, weekday=weekday, exclusive=True)
    return day, free_slots(client, product, location, day)


def book(client: httpx.Client, product: str, location: str, start: str, **extra: Any) -> httpx.Response:
    return client.post(
        "/api/v1/bookings", json=booking_body(product, location, start, **extra), headers={"Prefer": "wait=10"}
    )


def booked(client: httpx.Client, product: str, location: str, start: str, status: str = "confirmed") -> dict[str, Any]:
    r = book(client, product, location, start)
    assert r.status_code == 201, r.text
    assert r.json()["status"] == status
    result: dict[str, Any] = r.json()
    return result


def auth(booking: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {booking['manage_token']}"}


def show(client: httpx.Client, booking: dict[str, Any]) -> dict[str, Any]:
    r = client.get(f"/api/v1/bookings/{booking['id']}", headers=auth(booking))
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def events(shown: dict[str, Any]) -> list[str]:
    return [h["event"] for h in shown["history"]]


def refused(r: httpx.Response, status: int = 409) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert problem["status"] == status and problem["detail"]
    return problem


def db(live: RunningStack, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(live.dsn(service))
        try:
            return list(await conn.fetch(query, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def all_at_once(*calls: Callable[[], httpx.Response]) -> list[httpx.Response]:
    """Run the calls in threads released together, so the requests arrive at the same moment."""
    barrier = threading.Barrier(len(calls))

    def go(call: Callable[[], httpx.Response]) -> httpx.Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(go, calls))


# --- held bookings: confirm, and the hold running out -------------------------------------------


def test_held_booking_is_confirmed_by_the_resident(client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "long-stay", "migration-counter", 1)
    start = slots[0]["start"]
    held = booked(client, "long-stay", "migration-counter", start, status="held")
    assert held["hold_expires_at"] and held["desk"]
    assert refused(client.post(f"/api/v1/bookings/{held['id']}/confirm", headers={"Authorization": "Bearer x"}), 404)
    r = client.post(f"/api/v1/bookings/{held['id']}/confirm", headers=auth(held))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "confirmed" and r.json()["hold_expires_at"] is None
    again = client.post(f"/api/v1/bookings/{held['id']}/confirm", params={"token": held["manage_token"]})
    assert again.status_code == 200  # the link opened twice
    shown = show(client, held)
    assert events(shown) == ["booking-requested", "booking-held", "booking-confirmed"]
    assert shown["history"][-1]["by"] == "resident"
    # Cancel, then every further transition is refused with the booking's status named.
    assert client.post(f"/api/v1/bookings/{held['id']}/cancel", headers=auth(held)).json()["status"] == "cancelled"
    for action in ("confirm", "reschedule"):
        r = client.post(f"/api/v1/bookings/{held['id']}/{action}", headers=auth(held), json={"start": start})
        problem = refused(r)
        assert problem["booking_status"] == "cancelled" and "cancelled" in problem["detail"]
    assert events(show(client, held))[-1] == "booking-cancelled"


def test_confirmed_booking_cannot_be_confirmed_as_held(client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "annex-35", "migration-counter", 3)
    start = slots[0]["start"]
    confirmed = booked(client, "annex-35", "migration-counter", start)
    # Confirm of an already confirmed booking is a no-op; a rejected or expired one is refused (below).
    assert client.post(f"/api/v1/bookings/{confirmed['id']}/confirm", headers=auth(confirmed)).status_code == 200


def test_the_hold_running_out_expires_the_booking_and_frees_the_slot(live: RunningStack, client: httpx.Client) -> None:
    day, slots = day_with_slots(
        client, "long-stay", "sc-wondelgem", 5
    )  # Friday at Wondelgem: one desk serves long-stay
    start = slots[0]["start"]
    held = booked(client, "long-stay", "sc-wondelgem", start, status="held")
    assert wait_until(lambda: start not in [s["start"] for s in free_slots(client, "long-stay", "sc-wondelgem", day)])
    # The calendar's hold timer decides expiry from its reservation; make this hold due now
    # instead of waiting the product's 30 minutes (the test stack checks every 0.2 s, no grace).
    # "Now" is the stack's clock, not PostgreSQL's: under LOKET_TEST_NOW the two differ.
    db(
        live,
        "calendar",
        "UPDATE reservations SET hold_expires_at = $2 WHERE booking_id = $1",
        held["id"],
        clock.now() - timedelta(seconds=1),
    )
    assert wait_until(lambda: show(client, held)["status"] == "expired"), show(client, held)
    assert events(show(client, held)) == ["booking-requested", "booking-held", "booking-expired"]
    assert wait_until(lambda: start in [s["start"] for s in free_slots(client, "long-stay", "sc-wondelgem", day)])
    problem = refused(client.post(f"/api/v1/bookings/{held['id']}/confirm", headers=auth(held)))
    assert problem["booking_status"] == "expired"
    assert (
        refused(client.post(f"/api/v1/bookings/{held['id']}/cancel", headers=auth(held)))["booking_status"] == "expired"
    )
    # Someone else can now have the slot.
    assert booked(client, "long-stay", "sc-wondelgem", start, status="held")["start"] == start


# --- decisions: Prefer: wait, rejection with alternatives ---------------------------------------


def test_a_taken_slot_is_a_409_with_alternatives(client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "short-stay", "sc-ledeberg", 1)  # Ledeberg: one desk
    start = slots[0]["start"]
    booked(client, "short-stay", "sc-ledeberg", start)
    r = book(client, "short-stay", "sc-ledeberg", start)
    problem = refused(r)
    assert problem["reason"] == "slot-taken"
    assert problem["alternatives"] and all({"start", "end", "location"} <= a.keys() for a in problem["alternatives"])
    assert start not in [a["start"] for a in problem["alternatives"] if a["location"] == "sc-ledeberg"]
    rejected = client.get(r.headers["location"], params={"token": r.json()["manage_token"]})
    assert rejected.json()["status"] == "rejected"
    assert events(rejected.json()) == ["booking-requested", "booking-rejected"]
    # A rejected booking cannot be cancelled or confirmed.
    assert refused(client.post(f"/api/v1/bookings/{problem['id']}/cancel", params={"token": r.json()["manage_token"]}))


def test_prefer_wait_answers_202_when_no_decision_comes_in_time(client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "residence-card", "migration-counter", 3)
    start = slots[0]["start"]
    body = booking_body("residence-card", "migration-counter", start)
    r = client.post("/api/v1/bookings", json=body, headers={"Prefer": "wait=0.001"})
    assert r.status_code in (201, 202)  # a decision in one millisecond is possible, though rare
    if r.status_code == 202:
        assert r.json()["status"] == "requested" and r.json()["manage_token"]


# --- Idempotency-Key ------------------------------------------------------------------------


def test_the_same_idempotency_key_sent_twice_at_once_makes_one_booking(
    live: RunningStack, client: httpx.Client
) -> None:
    _day, slots = day_with_slots(client, "residence-card", "sc-gentbrugge", 5)
    start = slots[0]["start"]
    body = booking_body("residence-card", "sc-gentbrugge", start)
    key = str(uuid.uuid4())

    def send() -> httpx.Response:
        with httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH) as c:
            return c.post("/api/v1/bookings", json=body, headers={"Idempotency-Key": key, "Prefer": "wait=10"})

    answers = all_at_once(send, send, send)
    assert [a.status_code for a in answers] == [201, 201, 201], [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert len({a.json()["manage_token"] for a in answers}) == 1
    family = body["person"]["family_name"]
    rows = db(live, "booking", "SELECT id FROM bookings WHERE family_name = $1", family)
    assert len(rows) == 1


# --- manage tokens ------------------------------------------------------------------------


def test_manage_tokens_are_random_hashed_and_a_wrong_one_is_404(live: RunningStack, client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "residence-card", "migration-counter", 2)
    a = booked(client, "residence-card", "migration-counter", slots[0]["start"])
    b = booked(client, "residence-card", "migration-counter", slots[1]["start"])
    assert a["manage_token"] != b["manage_token"]
    assert len(a["manage_token"]) >= 22  # 128 bits, URL-safe base64
    base = f"/api/v1/bookings/{a['id']}"
    for token in ("", "wrong", b["manage_token"], a["manage_token"][:-1]):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path in (("GET", base), ("GET", f"{base}/calendar.ics"), ("POST", f"{base}/cancel")):
            problem = refused(client.request(method, path, headers=headers), 404)
            assert "token" in problem["detail"]
        refused(client.post(f"{base}/reschedule", headers=headers, json={"start": slots[2]["start"]}), 404)
    assert client.get(base, params={"token": a["manage_token"]}).status_code == 200
    # Stored only as a hash.
    row = db(live, "booking", "SELECT token_hash, bookings::text AS everything FROM bookings WHERE id = $1", a["id"])[0]
    assert bytes(row["token_hash"]) == hashlib.sha256(a["manage_token"].encode()).digest()
    assert a["manage_token"] not in row["everything"]
    stream = db(live, "booking", "SELECT count(*) AS n FROM events WHERE data::text LIKE $1", f"%{a['manage_token']}%")
    assert stream[0]["n"] == 0


# --- reschedule -------------------------------------------------------------------------------


def test_reschedule_moves_the_booking_and_a_taken_time_keeps_the_old_one(client: httpx.Client) -> None:
    day, slots = day_with_slots(client, "short-stay", "sc-drongen", 1)  # Drongen: one desk
    slots = disjoint(slots)
    other = booked(client, "short-stay", "sc-drongen", slots[0]["start"])
    mine = booked(client, "short-stay", "sc-drongen", slots[1]["start"])
    # The new time is taken by the other booking: 409, and mine stays where it was.
    r = client.post(f"/api/v1/bookings/{mine['id']}/reschedule", headers=auth(mine), json={"start": other["start"]})
    problem = refused(r)
    assert problem["booking"]["start"] == mine["start"] and "old time" in problem["detail"]
    shown = show(client, mine)
    assert shown["start"] == mine["start"] and shown["status"] == "confirmed"
    assert events(shown)[-2:] == ["reschedule-requested", "reschedule-rejected"]
    # A free time: moved, and the old time is free again.
    new = slots[2]["start"]
    r = client.post(f"/api/v1/bookings/{mine['id']}/reschedule", headers=auth(mine), json={"start": new})
    assert r.status_code == 200, r.text
    assert r.json()["start"] == new and r.json()["status"] == "confirmed"
    assert events(show(client, mine))[-1] == "booking-rescheduled"
    assert wait_until(
        lambda: mine["start"] in [s["start"] for s in free_slots(client, "short-stay", "sc-drongen", day)]
    )
    # Rule violations of the new time are 422 naming start.
    off_grid = (datetime.fromisoformat(new) + timedelta(minutes=3)).isoformat()
    r = client.post(f"/api/v1/bookings/{mine['id']}/reschedule", headers=auth(mine), json={"start": off_grid})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "start"
    same = client.post(f"/api/v1/bookings/{mine['id']}/reschedule", headers=auth(mine), json={"start": new})
    assert refused(same)["type"].endswith("same-time")


def test_two_reschedules_of_one_booking_at_once_exactly_one_wins(live: RunningStack, client: httpx.Client) -> None:
    day, slots = day_with_slots(client, "short-stay", "sc-mariakerke", 3)  # Mariakerke: one desk
    slots = disjoint(slots)
    mine = booked(client, "short-stay", "sc-mariakerke", slots[0]["start"])
    targets = [slots[1]["start"], slots[2]["start"]]
    seen = client.get(f"/api/v1/bookings/{mine['id']}", headers=auth(mine))
    version = seen.headers["etag"]

    def move(to: str, if_match: str | None) -> Callable[[], httpx.Response]:
        headers = auth(mine) | ({"If-Match": if_match} if if_match else {})

        def call() -> httpx.Response:
            with httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH) as c:
                return c.post(f"/api/v1/bookings/{mine['id']}/reschedule", headers=headers, json={"start": to})

        return call

    # Both made from the same view of the booking (If-Match: its ETag): exactly one wins, whatever
    # the timing; the other is told the booking changed.
    answers = all_at_once(move(targets[0], version), move(targets[1], version))
    assert sorted(a.status_code for a in answers) == [200, 412], [a.text for a in answers]
    winner = next(a for a in answers if a.status_code == 200).json()
    loser = next(a for a in answers if a.status_code == 412).json()
    assert loser["type"].endswith("precondition-failed")
    shown = show(client, mine)
    assert shown["start"] == winner["start"] and shown["start"] in targets
    assert events(shown).count("booking-rescheduled") == 1
    assert_one_reservation(live, client, mine["id"], winner["start"], day, free=[slots[0]["start"], *targets])

    # Without If-Match, two reschedules that overlap cannot both be pending: the second is refused
    # (reschedule-pending) or, when the first was decided already, it moves the booking once more.
    # Either way the booking holds exactly one desk-time.
    targets = [slots[3]["start"], slots[4]["start"]]
    answers = all_at_once(move(targets[0], None), move(targets[1], None))
    codes = sorted(a.status_code for a in answers)
    assert codes in ([200, 200], [200, 409]), [a.text for a in answers]
    for a in answers:
        if a.status_code == 409:
            assert a.json()["type"].endswith("reschedule-pending")
    final = show(client, mine)
    assert final["start"] in targets and not final["reschedule_pending"]
    assert events(final).count("booking-rescheduled") == 1 + codes.count(200)
    assert_one_reservation(live, client, mine["id"], final["start"], day, free=[winner["start"], *targets])


def assert_one_reservation(
    live: RunningStack, client: httpx.Client, booking_id: str, start: str, day: date, free: list[str]
) -> None:
    """The calendar holds exactly one desk-time for the booking, at `start`; the other times are free."""
    rows = db(live, "calendar", "SELECT lower(during) AS start FROM reservations WHERE booking_id = $1", booking_id)
    assert [r["start"] for r in rows] == [datetime.fromisoformat(start)]

    def released() -> bool:
        offered = {s["start"] for s in free_slots(client, "short-stay", "sc-mariakerke", day)}
        return start not in offered and all(t in offered for t in free if t != start)

    assert wait_until(released)


# --- the ICS file ------------------------------------------------------------------------------


def test_calendar_ics_parses_with_the_right_times(client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "residence-card", "migration-counter", 2)
    start = slots[0]["start"]
    b = booked(client, "residence-card", "migration-counter", start)
    r = client.get(f"/api/v1/bookings/{b['id']}/calendar.ics", headers=auth(b))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/calendar")
    cal = icalendar.Calendar.from_ical(r.content)
    [event] = cal.walk("VEVENT")
    assert event.decoded("dtstart") == datetime.fromisoformat(start)
    assert event.decoded("dtend") == datetime.fromisoformat(b["end"])
    assert event.decoded("dtend") - event.decoded("dtstart") == timedelta(minutes=20)
    assert str(event["uid"]) == f"booking-{b['id']}@loket.gent"  # the UID of the e-mailed invitation too
    assert "Woodrow Wilsonplein" in str(event["location"])
    assert str(event["status"]) == "CONFIRMED"


# --- staff --------------------------------------------------------------------------------------


def test_staff_actions_their_limits_and_staff_cancel(live: RunningStack, client: httpx.Client) -> None:
    _day, slots = day_with_slots(client, "residence-card", "migration-counter", 5)
    start = slots[0]["start"]
    b = booked(client, "residence-card", "migration-counter", start)
    base = f"/api/v1/bookings/{b['id']}"
    staff = {"Authorization": f"Bearer {live.token('staff')}"}
    elsewhere = {"Authorization": f"Bearer {live.token('staff-gentbrugge')}"}
    ops = {"Authorization": f"Bearer {live.token('ops')}"}
    for action in ("check-in", "no-show", "complete", "cancel"):
        assert refused(client.post(f"{base}/{action}", headers=elsewhere, json={"reason": "x"}), 403)
    for action in ("check-in", "no-show", "complete"):
        refused(client.post(f"{base}/{action}", headers=ops), 403)
        refused(client.post(f"{base}/{action}"), 401)
    # Too early for check-in (more than 10 minutes before) and for a no-show; complete needs a check-in.
    assert "10 minutes" in refused(client.post(f"{base}/check-in", headers=staff))["detail"]
    refused(client.post(f"{base}/no-show", headers=staff))
    assert refused(client.post(f"{base}/complete", headers=staff))["booking_status"] == "confirmed"
    # Staff cancel at any time, with a reason.
    r = client.post(f"{base}/cancel", headers=staff)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "reason"
    r = client.post(f"{base}/cancel", headers=staff, json={"reason": "the counter is short of staff"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    last = show(client, b)["history"][-1]
    assert last == last | {"event": "booking-cancelled", "by": "staff", "reason": "the counter is short of staff"}
    assert refused(client.post(f"{base}/check-in", headers=staff))["booking_status"] == "cancelled"


# --- personal data ------------------------------------------------------------------------------


def test_erasing_a_person_makes_contacts_unreadable_but_keeps_the_booking(
    live: RunningStack, client: httpx.Client
) -> None:
    _day, slots = day_with_slots(client, "orange-card", "migration-counter", 2)
    start = slots[0]["start"]
    body = booking_body("orange-card", "migration-counter", start)
    body["person"]["national_number"] = "85073003328"
    body["contact"]["phone"] = "+32 470 11 22 33"
    r = client.post("/api/v1/bookings", json=body, headers={"Prefer": "wait=10"})
    assert r.status_code == 201, r.text
    b = r.json()
    # Nothing personal beyond the name is stored in the clear.
    everything = " ".join(
        str(row[0])
        for query in (
            "SELECT bookings::text FROM bookings",
            "SELECT booking_private::text FROM booking_private",
            "SELECT data::text FROM events",
        )
        for row in db(live, "booking", query)
    )
    for secret in ("85073003328", "+32470112233", body["contact"]["email"]):
        assert secret not in everything
    booking_service = f"http://127.0.0.1:{live.config.booking}"
    internal = {"X-Internal-Token": "local-internal-token"}
    contact = httpx.get(f"{booking_service}/internal/bookings/{b['id']}/contact", headers=internal)
    assert contact.status_code == 200 and contact.json()["phone"] == "+32470112233"

    # The erasure endpoint lives in the booking service; the gateway routes /api/v1/ops/persons there.
    erase = f"{live.base_url}/api/v1/ops/persons/{b['id']}"
    assert refused(httpx.delete(erase, headers={"Authorization": f"Bearer {live.token('staff')}"}), 403)
    assert refused(httpx.delete(erase), 401)
    ops = {"Authorization": f"Bearer {live.token('ops')}"}
    assert httpx.delete(erase, headers=ops).status_code == 204
    assert httpx.delete(erase, headers=ops).status_code == 204  # erasing twice is harmless
    assert refused(httpx.delete(f"{live.base_url}/api/v1/ops/persons/nope", headers=ops), 404)

    assert httpx.get(f"{booking_service}/internal/bookings/{b['id']}/contact", headers=internal).status_code == 404
    assert not db(
        live,
        "booking",
        "SELECT 1 FROM person_keys k JOIN booking_private p USING (person_key) WHERE p.booking_id = $1",
        b["id"],
    )
    shown = show(client, b)  # the booking itself stands: the counter still expects someone
    assert shown["status"] == "confirmed" and shown["person"]["given_name"] == body["person"]["given_name"]
    # The same person may book again (a new key is made for them).
    again = booking_body("orange-card", "migration-counter", start)
    again["person"]["national_number"] = "85073003328"
    assert client.post("/api/v1/bookings", json=again).status_code == 202
