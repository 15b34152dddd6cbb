"""Bookings that arrive together are written together (group commit), each decided as if alone:
the per-person rule, Idempotency-Key repeats and refusals hold inside one burst, and a refused
request costs the others of its batch nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, disjoint, free_slots, open_day

LOCATION = "migration-counter"
PRODUCT = "short-stay"


async def burst(base_url: str, requests: list[tuple[dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(base_url=base_url, timeout=60, limits=limits) as client:
        return await asyncio.gather(*(client.post("/api/v1/bookings", json=b, headers=h) for b, h in requests))


def test_a_burst_books_everyone_once_and_one_person_once(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, min_free=8, exclusive=True)
    starts = [s["start"] for s in disjoint(free_slots(client, PRODUCT, LOCATION, day))]
    others = [booking_body(PRODUCT, LOCATION, starts[i % len(starts)]) for i in range(40)]
    tag = uuid.uuid4().hex[:8]
    person = {"given_name": "Amira", "family_name": f"Haddad-{tag}", "birth_date": "1990-04-02"}
    same_person = [
        booking_body(PRODUCT, LOCATION, starts[0], person=person, contact={"email": email})
        for email in (f"amira.{tag}@example.org", f"Amira.{tag}@example.org", f"AMIRA.{tag}@EXAMPLE.ORG")
    ]
    responses = asyncio.run(burst(live.base_url, [(b, {}) for b in [*others, *same_person]]))

    for r in responses[:40]:
        assert r.status_code == 202, r.text  # written (decided later: no Prefer: wait)
    ids = {r.json()["id"] for r in responses[:40]}
    assert len(ids) == 40, "forty residents, forty bookings"

    theirs = responses[40:]
    assert sorted(r.status_code for r in theirs) == [202, 422, 422], [r.text for r in theirs]
    for r in theirs:
        if r.status_code == 422:
            assert [e["field"] for e in r.json()["errors"]] == ["person"]

    # Every accepted booking was committed: its manage link finds it.
    for r in [*responses[:40], *(r for r in theirs if r.status_code == 202)]:
        body = r.json()
        seen = client.get(f"/api/v1/bookings/{body['id']}", headers={"Authorization": f"Bearer {body['manage_token']}"})
        assert seen.status_code == 200, seen.text


def test_repeats_of_one_key_in_a_burst_make_one_booking_and_a_reused_key_is_refused_alone(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, PRODUCT, LOCATION, min_free=4, exclusive=True)
    starts = [s["start"] for s in disjoint(free_slots(client, PRODUCT, LOCATION, day))]
    key = f"burst-{uuid.uuid4().hex}"
    body = booking_body(PRODUCT, LOCATION, starts[0])
    other_body = booking_body(PRODUCT, LOCATION, starts[1])
    requests = [(body, {"Idempotency-Key": key}) for _ in range(10)]
    requests.append((other_body, {"Idempotency-Key": key}))  # the same key, another body
    requests += [(booking_body(PRODUCT, LOCATION, starts[2]), {}) for _ in range(5)]
    responses = asyncio.run(burst(live.base_url, requests))

    repeats = responses[:10]
    reused = responses[10]
    bystanders = responses[11:]
    assert reused.status_code in (202, 422), reused.text
    # Either the reused key came first (and the ten repeats are the reuse), or one of the repeats did.
    if reused.status_code == 422:
        # The first is written (202); a repeat answers with the booking as it stands by then,
        # which may already be decided (201).
        assert all(r.status_code in (201, 202) for r in repeats), [r.text for r in repeats]
        assert len({r.json()["id"] for r in repeats}) == 1, "ten repeats, one booking"
        assert reused.json()["errors"][0]["field"] == "Idempotency-Key"
    else:
        assert all(r.status_code == 422 for r in repeats)
    assert [r.status_code for r in bystanders] == [202] * 5, [r.text for r in bystanders]
