"""The booking service hands notifications the contacts of a whole batch of messages in one call
(`POST /internal/bookings/contacts`), on the real stack: the same answer as the one-booking route,
unknown bookings and erased persons left out, internal callers only."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, disjoint, free_slots, open_day

INTERNAL = {"X-Internal-Token": "local-internal-token"}


@pytest.fixture(scope="module")
def client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30)


def test_contacts_of_many_bookings_in_one_call(live: RunningStack, client: httpx.Client) -> None:
    day = open_day(client, "orange-card", "migration-counter", weekday=3, exclusive=True)
    starts = [s["start"] for s in disjoint(free_slots(client, "orange-card", "migration-counter", day))[:3]]
    bookings = []
    for start in starts:
        r = client.post(
            "/api/v1/bookings",
            json=booking_body("orange-card", "migration-counter", start),
            headers={"Prefer": "wait=10"},
        )
        assert r.status_code == 201, r.text
        bookings.append(r.json())
    kept, erased = bookings[0]["id"], bookings[1]["id"]
    ops = {"Authorization": f"Bearer {live.token('ops')}"}
    assert httpx.delete(f"{live.base_url}/api/v1/ops/persons/{erased}", headers=ops).status_code == 204

    booking_service = f"http://127.0.0.1:{live.config.booking}"
    ids = [b["id"] for b in bookings] + ["no-such-booking", kept]  # asked twice: answered once
    r = httpx.post(f"{booking_service}/internal/bookings/contacts", json={"ids": ids}, headers=INTERNAL)
    assert r.status_code == 200, r.text
    contacts = r.json()["contacts"]
    assert set(contacts) == {kept, bookings[2]["id"]}  # the erased person and the unknown booking left out
    one = httpx.get(f"{booking_service}/internal/bookings/{kept}/contact", headers=INTERNAL)
    assert contacts[kept] == one.json()  # the same as the one-booking route
    assert contacts[kept]["email"].endswith("@example.org") and "token=" in contacts[kept]["manage_url"]


def test_the_batch_route_is_for_internal_callers_and_bounded(live: RunningStack) -> None:
    url = f"http://127.0.0.1:{live.config.booking}/internal/bookings/contacts"
    assert httpx.post(url, json={"ids": ["x"]}, headers={"X-Internal-Token": "wrong"}).status_code == 403
    assert httpx.post(url, json={"ids": ["x"]}).status_code == 403
    too_many = httpx.post(url, json={"ids": [f"b{n}" for n in range(501)]}, headers=INTERNAL)
    assert too_many.status_code == 422
