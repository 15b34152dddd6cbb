"""Catalogue changes never strand a booking (issue 17), end to end over the real stack.

Each test builds a location of its own (with a product of its own where the product changes), so
removing desks, changing hours or durations never touches what other tests book. A change that
would leave an active booking outside the catalogue is refused with 409 listing it; with
`stranded=move` the calendar's allocator moves it to a free desk at the same time, with
`stranded=cancel` it is cancelled by the city and the resident told; either is in the history.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import time
from datetime import date, timedelta
from typing import Any

import httpx

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, today, wait_until

_n = itertools.count(1)
EVENING = {str(d): [{"start": "17:00", "end": "20:00"}] for d in range(1, 6)}
OFFICE = {str(d): [{"start": "09:00", "end": "12:00"}] for d in range(1, 6)}


def _name(kind: str) -> str:
    return f"strand-{kind}-{next(_n)}-{time.monotonic_ns() % 10**8}"


def _product(client: httpx.Client, admin: dict[str, str], product: str, minutes: int, **query: str) -> httpx.Response:
    text = {"nl": product, "en": product, "fr": product}
    body = {"name": text, "description": text, "duration_minutes": minutes, "min_notice_hours": 24}
    return client.put(f"/api/v1/admin/products/{product}", json=body, headers=admin, params=query)


def _setup(
    client: httpx.Client, admin: dict[str, str], desks: int, weekly: dict[str, Any], product: str | None = None
) -> tuple[str, str, list[str]]:
    """A location of its own with `desks` desks serving one product, open `weekly` from today."""
    if product is None:
        product = _name("p")
        assert _product(client, admin, product, 20).status_code == 201
    location = _name("loc")
    r = client.put(
        f"/api/v1/admin/locations/{location}",
        json={"name": location, "address": "Test 1, Gent", "products": [product]},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    ids = [f"{location}-d{i}" for i in range(1, desks + 1)]
    for desk in ids:
        r = client.put(
            f"/api/v1/admin/desks/{desk}",
            json={"location_id": location, "name": desk, "products": [product]},
            headers=admin,
        )
        assert r.status_code == 201, r.text
        r = client.put(
            f"/api/v1/admin/desks/{desk}/schedules/{today().isoformat()}", json={"weekly": weekly}, headers=admin
        )
        assert r.status_code == 201, r.text
    return product, location, ids


def _book(client: httpx.Client, product: str, location: str, day: date, at: str = "T09:00") -> dict[str, Any]:
    start = next(s["start"] for s in free_slots(client, product, location, day) if at in s["start"])
    r = client.post("/api/v1/bookings", json=booking_body(product, location, start), headers={"Prefer": "wait=10"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _shown(client: httpx.Client, booking: dict[str, Any]) -> dict[str, Any]:
    r = client.get(f"/api/v1/bookings/{booking['id']}", params={"token": booking["manage_token"]})
    r.raise_for_status()
    return dict(r.json())


def _history_with(client: httpx.Client, booking: dict[str, Any], event: str) -> dict[str, Any] | None:
    def find() -> dict[str, Any] | None:
        shown = _shown(client, booking)
        return shown if any(h["event"] == event for h in shown["history"]) else None

    found: dict[str, Any] | None = wait_until(find, timeout=30)
    return found


def _listed(response: httpx.Response, booking: dict[str, Any]) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("bookings-stranded")
    listed = {b["booking"]: b for b in problem["bookings"]}
    assert booking["id"] in listed, problem
    return dict(listed[booking["id"]])


def test_deleting_a_desk_with_a_confirmed_booking_is_refused_then_moves_it(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, desks = _setup(client, admin, 2, OFFICE)
    day = open_day(client, product, location, weekday=None, min_free=2)
    booking = _book(client, product, location, day)
    held_by = booking["desk"]
    other = next(d for d in desks if d != held_by)

    refused = client.delete(f"/api/v1/admin/desks/{held_by}", headers=admin)
    listed = _listed(refused, booking)
    assert listed["why"] == "desk-removed" and listed["movable_to"] == other
    assert any(d["id"] == held_by for d in client.get("/api/v1/admin/desks", headers=admin).json())

    moved = client.delete(
        f"/api/v1/admin/desks/{held_by}", params={"stranded": "move", "reason": "desk renovated"}, headers=admin
    )
    assert moved.status_code == 204, moved.text
    shown = _history_with(client, booking, "reservation-moved")
    assert shown, "the move is in the booking's history"
    assert shown["status"] == "confirmed"
    entry = next(h for h in shown["history"] if h["event"] == "reservation-moved")
    assert entry["by"] == "admin" and entry["from_desk"] == held_by and entry["desk"] == other
    assert entry["reason"] == "desk renovated"

    def on_other_desk() -> bool:
        agenda = client.get(f"/api/v1/agenda/{location}", params={"date": day.isoformat()}, headers=admin).json()
        return any(
            a["booking"] == booking["id"] and d["desk"] == other for d in agenda["desks"] for a in d["appointments"]
        )

    assert wait_until(on_other_desk, timeout=30), "the agenda shows it on the other desk"


def test_new_hours_that_drop_an_evening_booking_are_refused_previewed_then_cancel_it(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, (desk,) = _setup(client, admin, 1, EVENING)
    day = open_day(client, product, location, min_free=2)
    booking = _book(client, product, location, day, "T18:00")
    effective = (today() + timedelta(days=1)).isoformat()

    refused = client.put(f"/api/v1/admin/desks/{desk}/schedules/{effective}", json={"weekly": OFFICE}, headers=admin)
    listed = _listed(refused, booking)
    assert listed["why"] == "outside-hours" and listed["outcome"] == "cancel"  # no other desk

    preview = client.post(
        "/api/v1/admin/schedules/preview",
        json={
            "location_id": location,
            "desk_id": desk,
            "effective_from": effective,
            "weekly": OFFICE,
            "from": day.isoformat(),
            "to": day.isoformat(),
        },
        headers=admin,
    )
    assert preview.status_code == 200, preview.text
    affected = {b["booking"]: b for b in preview.json()["bookings"]}
    assert affected[booking["id"]]["outcome"] == "cancel"

    cancelled = client.put(
        f"/api/v1/admin/desks/{desk}/schedules/{effective}",
        json={"weekly": OFFICE},
        params={
            "stranded": "cancel",
            "reason_nl": "avondopening geschrapt",
            "reason_en": "no more evenings",
            "reason_fr": "plus de soirées",
        },
        headers=admin,
    )
    assert cancelled.status_code == 201, cancelled.text
    shown = _history_with(client, booking, "booking-cancelled")
    assert shown, "the booking is cancelled"
    assert shown["status"] == "cancelled"
    withdrawn = next(h for h in shown["history"] if h["event"] == "reservation-withdrawn")
    assert withdrawn["by"] == "admin" and withdrawn["why"] == "outside-hours"
    last = shown["history"][-1]
    assert last["by"] == "system" and last["reason"] == "avondopening geschrapt"  # the resident's language: nl

    def told() -> str | None:
        for path in live.mail_dir.glob("*.eml"):
            body = email.message_from_bytes(path.read_bytes(), policy=email.policy.default).get_body(("plain",))
            text = body.get_content() if body is not None else ""
            if "avondopening geschrapt" in text:
                return str(text)
        return None

    text = wait_until(told, timeout=30)
    assert text, "the resident is told, in their language"
    # ... and offered the nearest free times the calendar found, and the waiting list
    assert "Deze tijdstippen zijn nog vrij:" in text and "wachtlijst" in text, text


def test_a_desk_that_stops_serving_the_product_is_refused_then_cancels(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, (desk,) = _setup(client, admin, 1, OFFICE)
    day = open_day(client, product, location, min_free=2)
    booking = _book(client, product, location, day)
    body = {"location_id": location, "name": desk, "products": []}

    listed = _listed(client.put(f"/api/v1/admin/desks/{desk}", json=body, headers=admin), booking)
    assert listed["why"] == "not-served"
    no_reason = client.put(f"/api/v1/admin/desks/{desk}", json=body, params={"stranded": "cancel"}, headers=admin)
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["field"] == "reason"
    done = client.put(
        f"/api/v1/admin/desks/{desk}", json=body, params={"stranded": "cancel", "reason": "desk closed"}, headers=admin
    )
    assert done.status_code == 200, done.text
    shown = _history_with(client, booking, "booking-cancelled")
    assert shown and shown["status"] == "cancelled"
    # The location may now stop offering the product: nothing is stranded any more.
    r = client.put(
        f"/api/v1/admin/locations/{location}",
        json={"name": location, "address": "Test 1, Gent", "products": []},
        headers=admin,
    )
    assert r.status_code == 200, r.text


def test_a_longer_duration_that_runs_into_the_next_booking_is_refused_then_moves_it(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, desks = _setup(client, admin, 2, OFFICE)
    day = open_day(client, product, location, min_free=4)
    first = _book(client, product, location, day, "T09:00")  # on the first desk (then by id)
    second = _book(client, product, location, day, "T09:20")  # right after it, on the same desk
    assert first["desk"] == second["desk"] == desks[0]

    # 40 minutes: the first now runs into the second. The earlier one keeps its desk (and grows),
    # the later one has to go.
    refused = _product(client, admin, product, 40)
    listed = _listed(refused, second)
    assert listed["why"] == "overlaps" and listed["movable_to"] == desks[1]
    assert first["id"] not in {b["booking"] for b in refused.json()["bookings"]}
    moved = _product(client, admin, product, 40, stranded="move", reason="longer appointments")
    assert moved.status_code == 200, moved.text
    shown = _history_with(client, second, "reservation-moved")
    assert shown, "the booking run into moved to the free desk"
    entry = next(h for h in shown["history"] if h["event"] == "reservation-moved")
    assert entry["desk"] == desks[1] and entry["why"] == "overlaps"
    assert shown["status"] == "confirmed" and shown["end"] > second["end"]
    grown = _history_with(client, first, "reservation-moved")
    assert grown, "the first keeps its desk and gets the longer end"
    assert grown["end"] > first["end"]


def test_two_changes_close_together_each_resolve_what_they_strand_with_their_own_choice(
    live: RunningStack,
) -> None:
    # The product is defined again (nothing changes for the booking) with "move", and at once its
    # desk is removed with "cancel": the booking is cancelled, for the removal's reason.
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, (desk, _other) = _setup(client, admin, 2, OFFICE)
    day = open_day(client, product, location, min_free=2)
    booking = _book(client, product, location, day)
    assert _product(client, admin, product, 20, stranded="move", reason="R1-move").status_code == 200
    removed = client.delete(
        f"/api/v1/admin/desks/{booking['desk']}", params={"stranded": "cancel", "reason": "R2-cancel"}, headers=admin
    )
    assert removed.status_code == 204, removed.text
    shown = _history_with(client, booking, "booking-cancelled")
    assert shown, f"the removal's cancel was not applied: {_shown(client, booking)['history']}"
    withdrawn = next(h for h in shown["history"] if h["event"] == "reservation-withdrawn")
    assert withdrawn["why"] == "desk-removed" and shown["history"][-1]["reason"] == "R2-cancel"
    assert not any(h["event"] == "reservation-moved" for h in shown["history"])
    assert desk  # (the booking was on one of the two desks; the other stays)


def test_a_time_a_change_withdraws_is_not_offered_to_the_waiting_list(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, (desk,) = _setup(client, admin, 1, OFFICE)
    day = open_day(client, product, location, min_free=2)
    booking = _book(client, product, location, day)
    waiting = f"waiting.{_name('w')}@example.org"
    subscription = {
        "product": product,
        "location": location,
        "from": day.isoformat(),
        "to": day.isoformat(),
        "email": waiting,
        "language": "en",
    }
    # notifications learns of the new product a moment after the calendar does
    joined = wait_until(lambda: (r := client.post("/api/v1/waitlist", json=subscription)).status_code == 201 and r)
    assert joined, "the waiting list takes the new product"
    gone = client.delete(
        f"/api/v1/admin/desks/{desk}", params={"stranded": "cancel", "reason": "desk gone"}, headers=admin
    )
    assert gone.status_code == 204, gone.text
    assert _history_with(client, booking, "booking-cancelled"), "the booking is cancelled"
    time.sleep(3)  # the waiting list would have been told by now (the test stack holds nothing back)
    told = [p for p in live.mail_dir.glob("*.eml") if waiting in p.read_text(errors="replace")]
    assert told == [], "a waiting resident was offered a time that no desk opens any more"


def test_a_reason_of_spaces_or_in_some_languages_only_is_refused_naming_the_field(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    admin = {"Authorization": f"Bearer {live.token('admin')}"}
    product, location, (desk,) = _setup(client, admin, 1, OFFICE)
    day = open_day(client, product, location, min_free=2)
    _book(client, product, location, day)
    for query, field in (
        ({"stranded": "cancel", "reason": "   "}, "reason"),
        ({"stranded": "cancel", "reason_fr": "plus de guichet"}, "reason_nl"),
    ):
        r = client.delete(f"/api/v1/admin/desks/{desk}", params=query, headers=admin)
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]], r.json()
