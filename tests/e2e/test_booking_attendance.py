"""Staff actions on the day itself, and the resident's cancellation deadline, through HTTP.

Appointments of the Ghent seed need 24 hours of notice, so this module first sets up (through the
catalogue's admin API) a lab location open around the clock, on a 1-minute grid, with a product
bookable without notice: a booking can then start within minutes, as on the day of the appointment.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from loket_runtime import clock
from tests.conftest import RunningStack
from tests.e2e.helpers import ENGLISH, booking_body, wait_until

BRUSSELS = ZoneInfo("Europe/Brussels")
PRODUCT, LOCATION = "e2e-now", "e2e-lab"
DESKS = [f"e2e-lab-{n}" for n in range(1, 6)]  # enough for the overlapping bookings of the module
NAME = {"nl": "Test", "en": "Test", "fr": "Test"}


@pytest.fixture(scope="module")
def lab(live: RunningStack) -> Iterator[dict[str, Any]]:
    client = httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    today = clock.today()
    for path, body in (
        (
            f"/api/v1/admin/products/{PRODUCT}",
            {
                "name": NAME,
                "description": NAME,
                "duration_minutes": 1,  # one minute: no slot near midnight runs past the day's end
                "min_notice_hours": 0,
                "max_days_ahead": 2,
            },
        ),
        (
            f"/api/v1/admin/locations/{LOCATION}",
            {"name": "E2E lab", "address": "Nowhere 1, 9000 Gent", "products": [PRODUCT], "slot_grid_minutes": 1},
        ),
        *(
            (f"/api/v1/admin/desks/{desk}", {"location_id": LOCATION, "name": desk, "products": [PRODUCT]})
            for desk in DESKS
        ),
        *(
            (
                f"/api/v1/admin/desks/{desk}/schedules/{today.isoformat()}",
                {"weekly": {str(d): [{"start": "00:00", "end": "24:00"}] for d in range(1, 8)}},
            )
            for desk in DESKS
        ),
    ):
        r = client.put(path, json=body, headers=admin)
        assert r.status_code in (200, 201), (path, r.text)
    # On a holiday every counter is closed, the lab too: lift the closures of the days the lab books
    # (today and tomorrow) so that the module runs on any day of the year. A test stack only.
    for closure in client.get(
        "/api/v1/admin/closures",
        params={"from": today.isoformat(), "to": (today + timedelta(days=1)).isoformat()},
        headers=admin,
    ).json():
        assert client.delete(f"/api/v1/admin/closures/{closure['id']}", headers=admin).status_code == 204
    state: dict[str, Any] = {"client": client, "staff": admin}
    # A booking that starts at the next whole minute, for the no-show at the end of the module.
    state["soon"] = book_at(state, minutes_ahead=0)
    yield state


def next_start(minutes_ahead: int) -> datetime:
    # In UTC: Brussels wall-clock arithmetic goes wrong in the repeated hour of the autumn DST
    # change (02:05 CET + 1 minute would be 02:06 CEST, an hour in the past).
    now = clock.now()
    start = now.replace(second=0, microsecond=0) + timedelta(minutes=1 + minutes_ahead)
    if (start - now).total_seconds() < 3:
        start += timedelta(minutes=1)
    start = start.astimezone(BRUSSELS)
    midnight = datetime.combine(start.date() + timedelta(days=1), datetime.min.time(), BRUSSELS)
    if start + timedelta(minutes=1) > midnight:  # the desk's hours end at 24:00: no slot runs past it
        start = midnight
    return start


def book_at(lab: dict[str, Any], minutes_ahead: int) -> dict[str, Any]:
    """Book the lab product `minutes_ahead` minutes after the next whole minute; retries while the
    booking service has not yet seen the lab in the catalogue topic."""
    client: httpx.Client = lab["client"]
    deadline = time.monotonic() + 30
    while True:
        start = next_start(minutes_ahead)
        r = client.post(
            "/api/v1/bookings",
            json=booking_body(PRODUCT, LOCATION, start.isoformat()),
            headers={"Prefer": "wait=10"},
        )
        if r.status_code != 422 or time.monotonic() > deadline:
            break
        time.sleep(0.3)  # the catalogue change is on its way to booking and calendar
    assert r.status_code == 201, r.text
    booking: dict[str, Any] = r.json()
    assert booking["status"] == "confirmed"
    return booking


def act(lab: dict[str, Any], booking: dict[str, Any], action: str, **kw: Any) -> httpx.Response:
    client: httpx.Client = lab["client"]
    return client.post(f"/api/v1/bookings/{booking['id']}/{action}", headers=lab["staff"], **kw)


def show(lab: dict[str, Any], booking: dict[str, Any]) -> dict[str, Any]:
    client: httpx.Client = lab["client"]
    r = client.get(f"/api/v1/bookings/{booking['id']}", params={"token": booking["manage_token"]})
    result: dict[str, Any] = r.json()
    return result


def test_check_in_from_ten_minutes_before_then_complete(lab: dict[str, Any]) -> None:
    early = book_at(lab, minutes_ahead=30)
    r = act(lab, early, "check-in")
    assert r.status_code == 409 and r.json()["type"].endswith("too-early")

    b = book_at(lab, minutes_ahead=5)  # within the 10-minute window
    r = act(lab, b, "check-in")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "checked_in"
    assert act(lab, b, "check-in").status_code == 200  # twice: no-op
    refused = act(lab, b, "no-show")
    assert refused.status_code == 409 and refused.json()["booking_status"] == "checked_in"
    assert act(lab, b, "cancel", json={"reason": "x"}).status_code == 409
    r = act(lab, b, "complete")
    assert r.status_code == 200 and r.json()["status"] == "completed"
    assert [h["event"] for h in show(lab, b)["history"]] == [
        "booking-requested",
        "booking-confirmed",
        "attendance-recorded",
        "attendance-recorded",
    ]
    assert act(lab, b, "check-in").status_code == 409


def test_resident_cancel_closes_24_hours_before_staff_may_cancel_any_time(lab: dict[str, Any]) -> None:
    client: httpx.Client = lab["client"]
    b = book_at(lab, minutes_ahead=60)
    token = {"Authorization": f"Bearer {b['manage_token']}"}
    r = client.post(f"/api/v1/bookings/{b['id']}/cancel", headers=token)
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("cancel-deadline") and "24 hours" in r.json()["detail"]
    start = datetime.fromisoformat(b["start"])
    # Another time the same (Brussels) day: the lab's hours end at 24:00, so no slot runs past midnight.
    other = start + timedelta(minutes=20) if start.astimezone(BRUSSELS).hour < 23 else start - timedelta(minutes=30)
    r = client.post(f"/api/v1/bookings/{b['id']}/reschedule", headers=token, json={"start": other.isoformat()})
    assert r.status_code == 409 and r.json()["type"].endswith("cancel-deadline"), r.text
    assert show(lab, b)["status"] == "confirmed"
    r = act(lab, b, "cancel", json={"reason": "resident phoned the counter"})
    assert r.status_code == 200 and r.json()["status"] == "cancelled"


def test_no_show_after_the_start(lab: dict[str, Any]) -> None:
    b = lab["soon"]
    start = datetime.fromisoformat(b["start"])
    if clock.now().astimezone(BRUSSELS) < start:
        r = act(lab, b, "no-show")
        assert r.status_code == 409 and r.json()["type"].endswith("too-early")
    assert wait_until(lambda: clock.now().astimezone(BRUSSELS) > start + timedelta(seconds=1), timeout=90, interval=0.5)
    r = act(lab, b, "no-show")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "no_show"
    assert act(lab, b, "complete").json()["booking_status"] == "no_show"
