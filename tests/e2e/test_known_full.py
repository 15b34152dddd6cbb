"""A start the allocator has declared full is refused by the booking service at once (no booking,
no Kafka round trip, no e-mail), with the allocator's alternatives, until a place there is freed."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, wait_until

LOCATION = "migration-counter"
PRODUCT = "residence-card"


def book(
    client: httpx.Client, start: str, key: str | None = None, body: dict[str, Any] | None = None
) -> httpx.Response:
    headers = {"Prefer": "wait=10"} | ({"Idempotency-Key": key} if key else {})
    return client.post("/api/v1/bookings", json=body or booking_body(PRODUCT, LOCATION, start), headers=headers)


def fill(client: httpx.Client, start: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Book `start` until the allocator refuses: the confirmed bookings and its refusal."""
    confirmed = []
    for _ in range(10):
        r = book(client, start)
        if r.status_code == 409:
            return confirmed, r.json()
        assert r.status_code == 201, r.text
        confirmed.append(r.json())
    raise AssertionError(f"{start} still had room after 10 bookings")


def known_full_refusal(client: httpx.Client, start: str) -> dict[str, Any] | None:
    r = book(client, start)
    assert r.status_code in (201, 409), r.text
    body: dict[str, Any] = r.json()
    return body if r.status_code == 409 and "id" not in body else None


def test_a_full_start_is_refused_without_a_booking_until_a_place_is_released(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, exclusive=True)
    start = free_slots(client, PRODUCT, LOCATION, day)[3]["start"]
    confirmed, by_allocator = fill(client, start)
    assert confirmed, "the start had room at first"
    assert by_allocator["id"] and by_allocator["status_detail"] == "rejected"  # a booking, rejected

    refusal = wait_until(lambda: known_full_refusal(client, start), timeout=5)
    assert refusal, "the next request for the full start is refused by the booking service itself"
    assert refusal["status"] == 409 and refusal["reason"] == "slot-taken"
    assert "manage_token" not in refusal  # nothing was booked, so there is nothing to manage
    assert refusal["alternatives"], "with the allocator's nearest free times"
    assert all(a["start"] != start or a["location"] != LOCATION for a in refusal["alternatives"])
    assert all(a["start"].endswith(("+01:00", "+02:00")) for a in refusal["alternatives"])

    # One alternative is really bookable.
    other = next(a for a in refusal["alternatives"] if a["location"] == LOCATION)
    taken = book(client, other["start"])
    assert taken.status_code == 201, taken.text

    # The resident of the first booking cancels: the allocator releases the place, and the next
    # request is decided by the allocator again (and gets the place).
    first = confirmed[0]
    r = client.post(
        f"/api/v1/bookings/{first['id']}/cancel", headers={"Authorization": f"Bearer {first['manage_token']}"}
    )
    assert r.status_code == 200, r.text

    def booked_again() -> dict[str, Any] | None:
        r = book(client, start)
        return r.json() if r.status_code == 201 else None

    again = wait_until(booked_again, timeout=20, interval=0.5)
    assert again and again["start"] == start, "the freed place is booked again"


def test_a_repeat_of_a_booking_made_before_its_start_filled_gets_that_booking(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, exclusive=True)
    start = free_slots(client, PRODUCT, LOCATION, day)[5]["start"]
    body = booking_body(PRODUCT, LOCATION, start)
    first = book(client, start, key="known-full-repeat-" + body["person"]["family_name"], body=body)
    assert first.status_code == 201, first.text
    fill(client, start)
    assert wait_until(lambda: known_full_refusal(client, start), timeout=5)

    repeat = book(client, start, key="known-full-repeat-" + body["person"]["family_name"], body=body)
    assert repeat.status_code == 201, repeat.text
    assert repeat.json()["id"] == first.json()["id"]  # the same booking, never a refusal of it


def test_a_known_full_start_is_refused_before_waiting_and_still_checks_the_input(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, exclusive=True)
    start = free_slots(client, PRODUCT, LOCATION, day)[7]["start"]
    fill(client, start)
    assert wait_until(lambda: known_full_refusal(client, start), timeout=5)

    without_wait = client.post("/api/v1/bookings", json=booking_body(PRODUCT, LOCATION, start))
    assert without_wait.status_code == 409, without_wait.text  # known at once: no 202 to poll

    invalid = booking_body(PRODUCT, LOCATION, start, contact={"email": "not an address"})
    r = client.post("/api/v1/bookings", json=invalid, headers={"Prefer": "wait=5"})
    assert r.status_code == 422, r.text  # bad input is named first, whatever the start
    assert any(e["field"].startswith("contact") for e in r.json()["errors"])


def test_a_resident_who_already_has_a_booking_hears_it_when_a_free_time_would_be_written(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, exclusive=True)
    slots = free_slots(client, PRODUCT, LOCATION, day)
    mine = booking_body(
        PRODUCT,
        LOCATION,
        slots[9]["start"],
        person={"given_name": "Anna", "family_name": f"Keyholder-{day}", "birth_date": "1990-01-01"},
    )
    assert book(client, slots[9]["start"], body=mine).status_code == 201
    full = slots[11]["start"]
    fill(client, full)
    assert wait_until(lambda: known_full_refusal(client, full), timeout=5)

    # The full start is refused without reading anything (services/booking/README.md) ...
    refused = book(client, full, body=mine | {"start": full})
    assert refused.status_code == 409 and "id" not in refused.json(), refused.text
    # ... and the free alternative it offers is where the per-person rule speaks.
    other = next(a for a in refused.json()["alternatives"] if a["location"] == LOCATION)
    again = book(client, other["start"], body=mine | {"start": other["start"]})
    assert again.status_code == 422, again.text
    assert [e["field"] for e in again.json()["errors"]] == ["person"]
