"""The edge (nginx, deploy/edge/loket.conf.template) as a client meets it: per-client rate limits
answered with 429 problem+json and Retry-After, each loopback address a client of its own; failed
sign-ins backing off; bodies above the bound refused with 413; Server-Sent Events passed on as they
are written; the token issuer and the merged OpenAPI document behind it.

The suite's own requests come from 127.0.0.1, which the test stack lets past the rate limits
(tests/conftest.py); every test here sends from an address of its own, 127.0.0.2 and up, as
distinct residents on the internet would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, sse_events

_addresses = itertools.count(2)


def new_address() -> str:
    """A loopback address no other test of this run has sent from: a client never seen before."""
    return f"127.0.0.{next(_addresses)}"


def client_at(live: RunningStack, address: str, **kwargs: Any) -> httpx.Client:
    return httpx.Client(
        base_url=live.base_url, timeout=30, transport=httpx.HTTPTransport(local_address=address), **kwargs
    )


def async_client_at(live: RunningStack, address: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=live.base_url,
        timeout=30,
        transport=httpx.AsyncHTTPTransport(local_address=address, limits=httpx.Limits(max_connections=50)),
        **kwargs,
    )


def assert_too_many(response: httpx.Response) -> None:
    """A 429 as RFC 9457 and RFC 9110 want it: problem+json with type, title, status, detail, and Retry-After."""
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["status"] == 429 and problem["type"].endswith("/too-many-requests")
    assert problem["title"] and problem["detail"]
    assert int(response.headers["retry-after"]) > 0


def an_unbookable_body() -> dict[str, Any]:
    """A booking the booking service refuses (422: not on the grid), so the burst takes no real slot."""
    return booking_body("residence-card", "migration-counter", "2030-01-07T09:07:00+01:00")


async def burst(live: RunningStack, address: str, requests: int) -> list[httpx.Response]:
    async with async_client_at(live, address) as client:
        return list(
            await asyncio.gather(*(client.post("/api/v1/bookings", json=an_unbookable_body()) for _ in range(requests)))
        )


def test_a_burst_of_300_bookings_from_one_client_is_refused_after_the_limit(live: RunningStack) -> None:
    answers = asyncio.run(burst(live, new_address(), 300))
    statuses = Counter(r.status_code for r in answers)
    # A handful reach the booking service (and are refused there for their start time); the rest
    # never leave the edge.
    assert statuses[429] >= 290, statuses
    assert 1 <= statuses[422] <= 10, statuses
    assert set(statuses) == {422, 429}, statuses
    for response in answers:
        if response.status_code == 429:
            assert_too_many(response)


def test_clients_at_distinct_addresses_are_limited_separately(live: RunningStack) -> None:
    spent = new_address()
    asyncio.run(burst(live, spent, 30))
    with client_at(live, spent) as again:
        assert_too_many(again.post("/api/v1/bookings", json=an_unbookable_body()))
        # In the page's language, with the API's words (tests/unit/stack/test_edge_texts.py).
        french = again.post("/api/v1/bookings", json=an_unbookable_body(), headers={"Accept-Language": "fr-BE, fr"})
        assert_too_many(french)
        assert french.headers["content-language"] == "fr"
        assert french.json()["title"] == "Trop de demandes"
        assert french.json()["detail"] == "Trop de demandes de ce client ; réessayez dans 10 secondes."
    with client_at(live, new_address()) as other:
        assert other.post("/api/v1/bookings", json=an_unbookable_body()).status_code == 422
    # Reads have a budget of their own: the client whose bookings are refused still sees availability.
    with client_at(live, spent) as reader:
        assert reader.get("/api/v1/products").status_code == 200


def test_fifty_wrong_passwords_get_429_long_before_the_fiftieth_and_the_owner_still_signs_in(
    live: RunningStack,
) -> None:
    answers = []
    with client_at(live, new_address()) as guesser:
        for attempt in range(50):
            answers.append(guesser.post("/api/v1/auth/token", data={"username": "ops", "password": f"guess-{attempt}"}))
    statuses = [r.status_code for r in answers]
    first_refused = statuses.index(429)
    assert first_refused <= 6, statuses
    assert statuses.count(401) <= 6 and statuses.count(200) == 0, statuses
    for response in answers[first_refused:]:
        assert_too_many(response)
    # The account's owner, elsewhere, is not locked out by someone else's guessing.
    with client_at(live, new_address()) as owner:
        signed_in = owner.post("/api/v1/auth/token", data={"username": "ops", "password": "demo"})
    assert signed_in.status_code == 200, signed_in.text
    assert signed_in.json()["access_token"]


def test_failed_sign_ins_back_off_in_the_issuer_even_for_a_client_the_edge_trusts(live: RunningStack) -> None:
    # 127.0.0.1 passes the edge's limits in the test stack: what answers 429 here is the issuer's own
    # backoff, per account and client. (An unknown account, so no other test's sign-in is held up.)
    with httpx.Client(base_url=live.base_url, timeout=30) as trusted:
        statuses = [
            trusted.post("/api/v1/auth/token", data={"username": "no-such-user", "password": "x"}).status_code
            for _ in range(10)
        ]
        refused = trusted.post("/api/v1/auth/token", data={"username": "no-such-user", "password": "x"})
    assert statuses[:3] == [401, 401, 401], statuses
    assert 429 in statuses, statuses
    assert_too_many(refused)
    assert refused.json()["retry_after"] >= 1


def test_a_body_above_the_bound_gets_413_problem_json_from_the_edge(live: RunningStack) -> None:
    body = an_unbookable_body()
    body["person"]["family_name"] = "x" * 70_000
    with client_at(live, new_address()) as client:
        r = client.post("/api/v1/bookings", json=body)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["status"] == 413 and problem["type"].endswith("/payload-too-large")
    assert problem["limit"] == 64 * 1024
    assert r.headers["content-language"] == "nl" and problem["title"] == "Aanvraag te groot"  # no Accept-Language


def test_server_sent_events_reach_the_client_as_they_are_written(live: RunningStack) -> None:
    """The stream stays open; each event arrives while it does, not when a buffer fills or the stream ends."""
    address = new_address()
    location, product = "migration-counter", "residence-card"
    with client_at(live, address) as client:
        day = open_day(client, product, location, min_free=1)
        start = free_slots(client, product, location, day)[0]["start"]
        token = client.post("/api/v1/auth/token", data={"username": "staff", "password": "demo"}).json()["access_token"]

    async def scenario() -> tuple[float, dict[str, Any]]:
        headers = {"Authorization": f"Bearer {token}"}
        async with async_client_at(live, address) as ac:
            async with ac.stream("GET", f"/api/v1/agenda/{location}/stream", headers=headers) as stream:
                assert stream.status_code == 200
                assert stream.headers["content-type"].startswith("text/event-stream")
                events = sse_events(stream.aiter_lines())
                opened = time.monotonic()
                async with asyncio.timeout(10):  # the first ping comes after 15 s: this is the event itself
                    async for name, _ in events:
                        if name == "ready":
                            break
                ready_after = time.monotonic() - opened
                # Booked from the trusted address: the stream's client only listens.
                async with httpx.AsyncClient(base_url=live.base_url, timeout=30) as resident:
                    r = await resident.post(
                        "/api/v1/bookings", json=booking_body(product, location, start), headers={"Prefer": "wait=10"}
                    )
                assert r.status_code == 201, r.text
                async with asyncio.timeout(10):
                    async for name, data in events:
                        if name == "agenda-changed" and data.get("booking") == r.json()["id"]:
                            return ready_after, data
        raise AssertionError("the stream ended without the booking's agenda-changed event")

    ready_after, change = asyncio.run(scenario())
    assert ready_after < 10
    assert change["location"] == location


def test_the_openapi_document_docs_and_token_routes_work_through_the_edge(live: RunningStack) -> None:
    with client_at(live, new_address()) as client:
        doc = client.get("/api/v1/openapi.json")
        docs_page = client.get("/api/v1/docs")
        token = client.post("/api/v1/auth/token", data={"username": "staff", "password": "demo"})
        discovery = client.get("/api/v1/auth/.well-known/openid-configuration")
        assert token.status_code == 200, token.text
        agenda = client.get(
            "/api/v1/agenda/migration-counter",
            params={"date": "2030-01-07"},
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
        )
    assert doc.status_code == 200
    paths = doc.json()["paths"]
    for path in ("/api/v1/bookings", "/api/v1/availability", "/api/v1/products", "/api/v1/auth/token"):
        assert path in paths, sorted(paths)
    assert docs_page.status_code == 200 and "/api/v1/openapi.json" in docs_page.text
    assert discovery.json()["token_endpoint"].endswith("/api/v1/auth/token")
    assert agenda.status_code == 200, agenda.text


@pytest.mark.parametrize("path", ["/", "/staff", "/manage/some-booking"])
def test_the_web_app_is_served_for_its_pages(live: RunningStack, path: str) -> None:
    with client_at(live, new_address()) as client:
        page = client.get(path)
        script = client.get("/js/app.js")
        unknown_api = client.get("/api/v1/no-such-thing")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module"' in page.text
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert unknown_api.status_code == 404
    assert unknown_api.headers["content-type"].startswith("application/problem+json")
