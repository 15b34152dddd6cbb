"""Resident rules through HTTP: each bad input is a problem+json 422 naming the field."""

from __future__ import annotations

import itertools
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from loket_runtime import clock
from tests.conftest import RunningStack
from tests.e2e.helpers import (
    ENGLISH,
    MAX_DAYS_AHEAD,
    beyond_window,
    booking_body,
    closures,
    free_slots,
    open_day,
    today,
    wait_until,
    wall,
)

_phones = itertools.count(10)


@pytest.fixture(scope="module")
def client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH)


def unique_phone() -> str:
    return f"+32 470 {next(_phones) % 100:02d} {uuid.uuid4().int % 100:02d} {uuid.uuid4().int % 100:02d}"


def refused(r: httpx.Response, field: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= problem.keys()
    assert field in [e["field"] for e in problem["errors"]], problem
    return problem


def post(client: httpx.Client, body: dict[str, Any], **headers: str) -> httpx.Response:
    return client.post("/api/v1/bookings", json=body, headers=headers)


@pytest.fixture(scope="module")
def wed(client: httpx.Client) -> date:
    """An open Wednesday: the migration counter's hours are 09:00-12:30 and 14:00-16:00."""
    return open_day(client, "residence-card", "migration-counter", weekday=3)


@pytest.fixture(scope="module")
def mon(client: httpx.Client) -> date:
    return open_day(client, "residence-card", "migration-counter", weekday=1)


def test_national_numbers(client: httpx.Client, wed: date) -> None:
    for good in ("85073003328", "85.07.30-033.28", "94021300145", "85273003371"):  # the last a BIS number
        body = booking_body("annex-35", "migration-counter", wall(wed, 9, 0))
        body["person"]["national_number"] = good
        body["person"]["given_name"] = "Checked"
        r = post(client, body)
        assert r.status_code == 202, r.text
        cancel = client.post(f"/api/v1/bookings/{r.json()['id']}/cancel", params={"token": r.json()["manage_token"]})
        assert cancel.status_code == 200, cancel.text  # frees the person for the next number
    for bad in ("85073003329", "8507300332", "85O73003328", "06070500253"):
        body = booking_body("annex-35", "migration-counter", wall(wed, 9, 0))
        body["person"]["national_number"] = bad
        refused(post(client, body), "person.national_number")


def test_national_number_and_birth_date_must_agree(client: httpx.Client, wed: date) -> None:
    body = booking_body("annex-35", "migration-counter", wall(wed, 9, 10))
    body["person"] |= {"national_number": "94021300145", "birth_date": "1994-02-14"}
    refused(post(client, body), "person.birth_date")


def test_phones_and_email(client: httpx.Client, wed: date) -> None:
    for phone in ("+33 6 12 34 56 78", "0470 12 34 56", "+1 415 555 2671", "09 266 71 11"):
        body = booking_body("short-stay", "sc-oostakker", wall(wed, 9, 0))
        body["contact"] = {"phone": phone}
        r = post(client, body)
        assert r.status_code == 202, (phone, r.text)
    body = booking_body("short-stay", "sc-oostakker", wall(wed, 9, 0))
    body["contact"] = {"phone": "12345"}
    assert "+32" in refused(post(client, body), "contact.phone")["errors"][0]["message"]
    body["contact"] = {"email": "not-an-address"}
    refused(post(client, body), "contact.email")
    body["contact"] = {}
    refused(post(client, body), "contact")


def test_one_active_booking_per_person_and_product(client: httpx.Client, wed: date, mon: date) -> None:
    # By national number, across names and contacts.
    first = booking_body("single-permit", "migration-counter", wall(mon, 9, 0))
    first["person"]["national_number"] = "06070500252"
    assert post(client, first).status_code == 202
    again = booking_body("single-permit", "migration-counter", wall(wed, 9, 0))
    again["person"]["national_number"] = "06.07.05-002.52"
    problem = refused(post(client, again), "person")
    assert "active booking" in problem["detail"]
    # Another product for the same person is fine.
    other = booking_body("annex-3bis", "migration-counter", wall(mon, 9, 0))
    other["person"]["national_number"] = "06070500252"
    assert post(client, other).status_code == 202
    # Without a national number: by the name, with a contact they share (the e-mail in any case, or
    # the phone); a contact alone does not make a person (tests/e2e/test_person_and_contact.py).
    phone = unique_phone()
    a = booking_body("identity-change", "migration-counter", wall(mon, 9, 0))
    a["contact"]["phone"] = phone
    assert post(client, a).status_code == 202
    b = booking_body("identity-change", "migration-counter", wall(mon, 10, 0))
    b["person"] = dict(a["person"])
    b["contact"] = {"email": a["contact"]["email"].upper(), "phone": unique_phone()}  # a new phone
    refused(post(client, b), "person")
    c = booking_body("identity-change", "migration-counter", wall(mon, 10, 0))
    c["contact"] = dict(a["contact"])
    assert post(client, c).status_code == 202  # the same contacts, another name: another person


def test_child_card_under_12_on_the_appointment_date(client: httpx.Client, wed: date) -> None:
    day = wed
    twelfth = date(day.year - 12, day.month, day.day)  # turns 12 on the day of the appointment
    body = booking_body("child-card", "migration-counter", wall(day, 9, 0))
    body["person"]["birth_date"] = twelfth.isoformat()
    problem = refused(post(client, body), "person.birth_date")
    assert "under 12" in problem["detail"]
    body["person"]["birth_date"] = (twelfth + timedelta(days=1)).isoformat()  # still 11 that day
    assert post(client, body).status_code == 202
    no_birth = booking_body("child-card", "migration-counter", wall(day, 9, 0))
    refused(post(client, no_birth), "person.birth_date")
    # The birth date can come from the child's national number (born 2010: 12 or older now).
    from_number = booking_body("child-card", "migration-counter", wall(day, 9, 0))
    from_number["person"]["national_number"] = "10010100121"
    refused(post(client, from_number), "person.birth_date")


def test_card_pickup_only_where_applied(client: httpx.Client, wed: date) -> None:
    body = booking_body("card-pickup", "migration-counter", wall(wed, 9, 0), applied_at_location="sc-gentbrugge")
    problem = refused(post(client, body), "location")
    assert "sc-gentbrugge" in problem["detail"]
    body["location"] = "sc-gentbrugge"
    assert post(client, body).status_code == 202


def test_product_location_and_time(client: httpx.Client, wed: date, live: RunningStack) -> None:
    refused(post(client, booking_body("no-such-product", "migration-counter", wall(wed, 9, 0))), "product")
    refused(post(client, booking_body("residence-card", "nowhere", wall(wed, 9, 0))), "location")
    problem = refused(post(client, booking_body("single-permit", "sc-ledeberg", wall(wed, 9, 0))), "location")
    assert "does not offer" in problem["detail"]
    assert (
        "grid"
        in refused(post(client, booking_body("residence-card", "migration-counter", wall(wed, 9, 5))), "start")[
            "detail"
        ]
    )
    # A Thursday, when the migration counter has no hours (and that is not a holiday, which would
    # be refused as a closed day instead).
    closed = closures(client, live.token("admin"), "migration-counter")
    thursday = next(d for d in (wed + timedelta(days=1 + 7 * n) for n in range(9)) if d not in closed)
    assert (
        "opening hours"
        in refused(post(client, booking_body("residence-card", "migration-counter", wall(thursday, 10, 0))), "start")[
            "detail"
        ]
    )
    # 12:20 + 20 minutes runs past 12:30.
    refused(post(client, booking_body("residence-card", "migration-counter", wall(wed, 12, 20))), "start")
    far = beyond_window(3)
    assert (
        "ahead"
        in refused(post(client, booking_body("residence-card", "migration-counter", wall(far, 9, 0))), "start")[
            "detail"
        ]
    )
    soon = (clock.now().astimezone(clock.BRUSSELS) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    assert (
        "ahead"
        in refused(post(client, booking_body("residence-card", "migration-counter", soon.isoformat())), "start")[
            "detail"
        ]
    )
    naive = booking_body("residence-card", "migration-counter", wall(wed, 9, 0).split("+")[0])
    refused(post(client, naive), "start")


def test_closed_day(client: httpx.Client, live: RunningStack) -> None:
    """A closed day is refused and offers no starts. The day: the first holiday or local closing day
    in the booking window that falls on a weekday the counter opens (Thursday it never does); when
    the window holds none (late summer), a closure the test declares on an open day itself."""
    location, admin = "migration-counter", live.token("admin")
    bookable = [
        (day, reason)
        for day, reason in sorted(closures(client, admin, location).items())
        if day >= today() + timedelta(days=2) and day.isoweekday() in (1, 2, 3, 5)
    ]
    if bookable:
        day, reason = bookable[0]
    else:
        day, reason = open_day(client, "residence-card", location, exclusive=True, min_free=1), "Loket test: closed"
        declared = client.post(
            "/api/v1/admin/closures",
            json={"location_id": location, "day": day.isoformat(), "reason": reason},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert declared.status_code in (200, 201), declared.text
        assert wait_until(lambda: free_slots(client, "residence-card", location, day) == [])
    assert day <= today() + timedelta(days=MAX_DAYS_AHEAD)
    # The booking service reads the closure from the catalogue topic a moment after the calendar may.
    answer = wait_until(
        lambda: (r := post(client, booking_body("residence-card", location, wall(day, 9, 0)))).status_code == 422 and r
    )
    problem = refused(answer, "start")
    assert "closed" in problem["detail"] and reason in problem["detail"]
    assert free_slots(client, "residence-card", location, day) == []


def test_one_person_one_product(client: httpx.Client, wed: date) -> None:
    body = booking_body("residence-card", "migration-counter", wall(wed, 9, 0))
    body["persons"] = [body["person"], body["person"]]
    refused(post(client, body), "persons")
    body = booking_body("residence-card", "migration-counter", wall(wed, 9, 0))
    body["product"] = ["residence-card", "orange-card"]
    refused(post(client, body), "product")


def test_idempotency_key_with_another_body(client: httpx.Client, wed: date) -> None:
    key = str(uuid.uuid4())
    body = booking_body("orange-card", "migration-counter", wall(wed, 9, 0))
    first = post(client, body, **{"Idempotency-Key": key})
    assert first.status_code == 202
    repeat = post(client, body, **{"Idempotency-Key": key})
    assert repeat.status_code in (201, 202)  # 201 once the calendar has decided
    assert repeat.json()["id"] == first.json()["id"]
    assert repeat.json()["manage_token"] == first.json()["manage_token"]
    changed = dict(body, start=wall(wed, 9, 30))
    refused(post(client, changed, **{"Idempotency-Key": key}), "Idempotency-Key")
