"""A first booking end to end, through the gateway, over the real broker and databases."""

from __future__ import annotations

import time

import httpx

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, wait_until


def test_booking_is_confirmed_shown_to_resident_and_on_the_agenda(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, "residence-card", "migration-counter")
    slots = free_slots(client, "residence-card", "migration-counter", day)
    start = slots[0]["start"]
    assert start.endswith(("+01:00", "+02:00")), "times are shown in Brussels time"

    t0 = time.perf_counter()
    r = client.post(
        "/api/v1/bookings",
        json=booking_body("residence-card", "migration-counter", start),
        headers={"Prefer": "wait=5"},
    )
    elapsed = time.perf_counter() - t0
    assert r.status_code == 201, r.text
    booking = r.json()
    assert booking["status"] == "confirmed"
    assert booking["start"] == start
    assert booking["desk"].startswith("mc-")
    assert len(booking["manage_token"]) >= 22  # 128 random bits, URL-safe
    assert elapsed < 5

    shown = client.get(
        f"/api/v1/bookings/{booking['id']}", headers={"Authorization": f"Bearer {booking['manage_token']}"}
    )
    assert shown.status_code == 200
    assert shown.json()["status"] == "confirmed"
    assert [h["event"] for h in shown.json()["history"]] == ["booking-requested", "booking-confirmed"]

    staff = {"Authorization": f"Bearer {live.token('staff')}"}

    def on_agenda() -> bool:
        agenda = client.get("/api/v1/agenda/migration-counter", params={"date": day.isoformat()}, headers=staff)
        assert agenda.status_code == 200, agenda.text
        return any(
            a["booking"] == booking["id"] and a["status"] == "confirmed"
            for desk in agenda.json()["desks"]
            for a in desk["appointments"]
        )

    assert wait_until(on_agenda), "the booking appears on the counter's agenda"


def test_without_prefer_wait_the_answer_is_202_then_the_decision_follows(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, "short-stay", "migration-counter", min_free=1)
    start = free_slots(client, "short-stay", "migration-counter", day)[0]["start"]
    r = client.post("/api/v1/bookings", json=booking_body("short-stay", "migration-counter", start))
    assert r.status_code == 202
    body = r.json()
    assert body["status"] == "requested"
    auth = {"Authorization": f"Bearer {body['manage_token']}"}
    status = wait_until(
        lambda: (
            client.get(f"/api/v1/bookings/{body['id']}", headers=auth).json()["status"] != "requested"
            and client.get(f"/api/v1/bookings/{body['id']}", headers=auth).json()
        )
    )
    assert status and status["status"] == "confirmed"


def test_wrong_token_and_unknown_booking_look_the_same(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    unknown = client.get(
        "/api/v1/bookings/00000000-0000-0000-0000-000000000000", headers={"Authorization": "Bearer nope"}
    )
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")


def test_openapi_of_the_whole_api_is_served(live: RunningStack) -> None:
    doc = httpx.get(f"{live.base_url}/api/v1/openapi.json").json()
    for path in ("/api/v1/bookings", "/api/v1/availability", "/api/v1/products", "/api/v1/agenda/{location}"):
        assert path in doc["paths"]
