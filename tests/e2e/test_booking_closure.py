"""A closure declared in the catalogue cancels that day's bookings (by the system), end to end:
admin API -> closure-declared on the catalogue topic -> booking-closures consumer -> cancelled."""

from __future__ import annotations

import httpx

from tests.conftest import RunningStack
from tests.e2e.helpers import ENGLISH, booking_body, free_slots, open_day, wait_until


def test_a_closure_cancels_a_confirmed_booking(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH)
    location = "sc-sint-amandsberg"
    day = open_day(client, "residence-card", location, min_free=2, exclusive=True)
    slots = free_slots(client, "residence-card", location, day)
    r = client.post(
        "/api/v1/bookings",
        json=booking_body("residence-card", location, slots[0]["start"]),
        headers={"Prefer": "wait=10"},
    )
    assert r.status_code == 201, r.text
    booking = r.json()
    auth = {"Authorization": f"Bearer {booking['manage_token']}"}
    # A booking elsewhere that day stays.
    elsewhere = client.post(
        "/api/v1/bookings",
        json=booking_body("residence-card", "sc-nieuw-gent", slots[0]["start"]),
        headers={"Prefer": "wait=10"},
    ).json()

    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    declared = client.post(
        "/api/v1/admin/closures",
        json={"location_id": location, "day": day.isoformat(), "reason": "staff training"},
        headers=admin,
    )
    assert declared.status_code in (200, 201), declared.text

    def cancelled() -> dict[str, object] | None:
        shown = client.get(f"/api/v1/bookings/{booking['id']}", headers=auth).json()
        return shown if shown["status"] == "cancelled" else None

    shown = wait_until(cancelled)
    assert shown, "the closure cancels the booking"
    last = shown["history"][-1]
    assert last["event"] == "booking-cancelled" and last["by"] == "system"
    assert "staff training" in last["reason"]
    other = client.get(f"/api/v1/bookings/{elsewhere['id']}", params={"token": elsewhere["manage_token"]})
    assert other.json()["status"] == "confirmed"
    # The day is closed for new bookings too.
    again = client.post("/api/v1/bookings", json=booking_body("residence-card", location, slots[1]["start"]))
    assert again.status_code == 422, again.text
    assert again.json()["errors"][0]["field"] == "start"
    assert "closed" in again.json()["detail"]
