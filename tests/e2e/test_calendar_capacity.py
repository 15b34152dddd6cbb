"""The calendar end to end: a storm of requests for one slot, the agenda as of a past instant,
live agenda updates, and a rebuild of the agenda that equals the incremental one."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from loket_runtime import clock
from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, sse_events, today, wait_until

LOCATION = "migration-counter"
ACTIVE = ("held", "confirmed", "checked_in")


def agenda(client: httpx.Client, token: str, day: date, as_of: datetime | None = None) -> dict[str, Any]:
    params = {"date": day.isoformat()} | ({"as_of": as_of.isoformat()} if as_of else {})
    r = client.get(f"/api/v1/agenda/{LOCATION}", params=params, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def appointments(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["booking"]: a | {"desk": d["desk"]} for d in body["desks"] for a in d["appointments"]}


def assert_no_double_booking(body: dict[str, Any]) -> None:
    for desk in body["desks"]:
        active = sorted(
            (datetime.fromisoformat(a["start"]), datetime.fromisoformat(a["end"]), a["booking"])
            for a in desk["appointments"]
            if a["status"] in ACTIVE
        )
        for (_, end, first), (start, _, second) in itertools.pairwise(active):
            assert end <= start, f"{first} and {second} overlap on {desk['desk']}"


def test_200_concurrent_requests_for_one_slot_confirm_exactly_the_free_desks(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    staff = live.token("staff")
    day = open_day(client, "residence-card", LOCATION, exclusive=True)  # a day nobody else books in this run
    start = free_slots(client, "residence-card", LOCATION, day)[4]["start"]
    begin = datetime.fromisoformat(start)
    end = begin + timedelta(minutes=20)
    serving = {"mc-1", "mc-2", "mc-3"}  # the desks of the seed that serve residence cards
    busy = {
        a["desk"]
        for a in appointments(agenda(client, staff, day)).values()
        if a["status"] in ACTIVE
        and datetime.fromisoformat(a["start"]) < end
        and begin < datetime.fromisoformat(a["end"])
    }
    free_desks = len(serving - busy)
    assert free_desks > 0

    async def storm() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=live.base_url, timeout=60, limits=limits) as ac:
            return await asyncio.gather(
                *(
                    ac.post(
                        "/api/v1/bookings",
                        json=booking_body("residence-card", LOCATION, start),
                        headers={"Prefer": "wait=25"},
                    )
                    for _ in range(200)
                )
            )

    t0 = time.perf_counter()
    responses = asyncio.run(storm())
    elapsed = time.perf_counter() - t0
    codes = [r.status_code for r in responses]
    assert set(codes) <= {201, 409}, {c: codes.count(c) for c in set(codes)}
    confirmed = [r.json() for r in responses if r.status_code == 201]
    rejected = [r.json() for r in responses if r.status_code == 409]
    assert len(confirmed) == free_desks, f"{len(confirmed)} confirmed for {free_desks} free desks"
    assert len(rejected) == 200 - free_desks
    assert len({c["desk"] for c in confirmed}) == free_desks
    assert all(c["status"] == "confirmed" and c["start"] == start for c in confirmed)
    for problem in rejected:
        assert problem["reason"] == "slot-taken"
        alternatives = problem["alternatives"]
        assert alternatives, "a rejection names the nearest free alternatives"
        assert any(a["location"] == LOCATION for a in alternatives)
        assert any(a["location"] != LOCATION for a in alternatives)
        assert all(a["start"] != start or a["location"] != LOCATION for a in alternatives)
        assert all(a["start"].endswith(("+01:00", "+02:00")) for a in alternatives)
    print(f"200 requests decided in {elapsed:.1f}s")

    ids = {c["id"] for c in confirmed}

    def all_on_agenda() -> dict[str, Any] | None:
        body = agenda(client, staff, day)
        shown = appointments(body)
        return body if ids <= {b for b, a in shown.items() if a["status"] == "confirmed"} else None

    body = wait_until(all_on_agenda)
    assert body, "every confirmed booking shows on the agenda"
    assert_no_double_booking(body)
    assert not any(r.json().get("id") in appointments(body) for r in responses if r.status_code == 409)


def test_agenda_as_of_before_and_after_a_cancel(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    staff = live.token("staff")
    day = open_day(client, "short-stay", LOCATION, min_free=1)
    before_request = clock.now()
    start = free_slots(client, "short-stay", LOCATION, day)[0]["start"]
    r = client.post("/api/v1/bookings", json=booking_body("short-stay", LOCATION, start), headers={"Prefer": "wait=10"})
    assert r.status_code == 201, r.text
    booking = r.json()
    assert wait_until(lambda: booking["id"] in appointments(agenda(client, staff, day)))
    time.sleep(0.05)
    while_confirmed = clock.now()
    time.sleep(0.05)
    cancel = client.post(
        f"/api/v1/bookings/{booking['id']}/cancel", headers={"Authorization": f"Bearer {booking['manage_token']}"}
    )
    assert cancel.status_code == 200, cancel.text

    def cancelled_now() -> bool:
        shown = appointments(agenda(client, staff, day)).get(booking["id"])
        return shown is not None and shown["status"] == "cancelled"

    assert wait_until(cancelled_now)
    after_cancel = clock.now()

    assert booking["id"] not in appointments(agenda(client, staff, day, as_of=before_request))
    then = appointments(agenda(client, staff, day, as_of=while_confirmed))[booking["id"]]
    assert then["status"] == "confirmed"
    assert then["start"] == start and then["person"]["given_name"] == "Resident"
    later = agenda(client, staff, day, as_of=after_cancel)
    assert appointments(later)[booking["id"]]["status"] == "cancelled"
    assert later["as_of"].endswith(("+01:00", "+02:00"))
    # A naive instant is refused: an instant needs its offset.
    naive = client.get(
        f"/api/v1/agenda/{LOCATION}",
        params={"date": day.isoformat(), "as_of": "2026-12-01T10:00:00"},
        headers={"Authorization": f"Bearer {staff}"},
    )
    assert naive.status_code == 422


def test_agenda_stream_pushes_a_change(live: RunningStack) -> None:
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        day = open_day(client, "short-stay", LOCATION, min_free=1)

    async def scenario() -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {live.token('staff')}"}
        async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as ac:
            start = (
                await ac.get(
                    "/api/v1/availability",
                    params={
                        "product": "short-stay",
                        "location": LOCATION,
                        "from": day.isoformat(),
                        "to": day.isoformat(),
                    },
                )
            ).json()["slots"][0]["start"]
            async with ac.stream("GET", f"/api/v1/agenda/{LOCATION}/stream", headers=headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = sse_events(stream.aiter_lines())
                async for name, _ in events:
                    if name == "ready":
                        break
                r = await ac.post(
                    "/api/v1/bookings", json=booking_body("short-stay", LOCATION, start), headers={"Prefer": "wait=10"}
                )
                assert r.status_code == 201, r.text
                wanted = (r.json()["id"], "confirmed")
                async with asyncio.timeout(15):
                    async for name, data in events:
                        if name == "agenda-changed" and (data.get("booking"), data.get("status")) == wanted:
                            return data
        raise AssertionError("no agenda-changed event")

    data = asyncio.run(scenario())
    assert data["location"] == LOCATION
    assert data["date"] == day.isoformat()


def test_agenda_needs_staff_of_that_location(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = today().isoformat()
    assert client.get(f"/api/v1/agenda/{LOCATION}", params={"date": day}).status_code == 401
    other = {"Authorization": f"Bearer {live.token('staff-gentbrugge')}"}
    assert client.get(f"/api/v1/agenda/{LOCATION}", params={"date": day}, headers=other).status_code == 403
