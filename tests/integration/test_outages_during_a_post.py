"""Issue 15, part 5, on the whole running stack: a resident's POST while PostgreSQL or Kafka is down.

With PostgreSQL down the answer is 503 problem+json with Retry-After (before: `500 text/plain`, and
once a booking committed behind that 500), `/readyz` fails, and the client's retry with the same
`Idempotency-Key` once it is back makes one booking, never two. With Kafka down booking still takes
the request into its outbox (202, or 503 when it cannot), `/readyz` fails, and once Kafka is back
the booking is decided; the same key again finds the same booking.

Both stop a part of the session's stack (`python -m loket_stack stop NAME` does the same) and
start it again before they end.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import asyncpg
import httpx
import pytest

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, wait_until
from tests.integration.test_stack_supervision import ready

PRODUCT, LOCATION = "residence-card", "sc-wondelgem"


@pytest.fixture
def client(live: RunningStack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live.base_url, timeout=30) as c:
        yield c


def all_ready(live: RunningStack) -> bool:
    return all(ready(url) for url in live.stack.ready_urls().values())


def booking_ready_url(live: RunningStack) -> str:
    return f"http://127.0.0.1:{live.config.booking}/readyz"


def a_free_start(client: httpx.Client) -> str:
    day = open_day(client, PRODUCT, LOCATION)
    return free_slots(client, PRODUCT, LOCATION, day)[0]["start"]


def post(client: httpx.Client, body: dict[str, Any], key: str, wait: int = 10) -> httpx.Response:
    return client.post("/api/v1/bookings", json=body, headers={"Idempotency-Key": key, "Prefer": f"wait={wait}"})


def bookings_of(live: RunningStack, family_name: str) -> list[str]:
    """The ids of the bookings booking's store holds for the resident (its `bookings` read model)."""

    async def read() -> list[str]:
        conn = await asyncpg.connect(live.dsn("booking"))
        try:
            rows = await conn.fetch("SELECT id FROM bookings WHERE family_name = $1 ORDER BY id", family_name)
            return [row["id"] for row in rows]
        finally:
            await conn.close()

    with ThreadPoolExecutor(1) as pool:  # a loop of its own, away from the test session's
        return pool.submit(asyncio.run, read()).result()


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["type"].endswith("/unavailable")


def test_a_post_while_postgres_is_down_gets_503_and_its_retry_books_once(
    live: RunningStack, client: httpx.Client
) -> None:
    body = booking_body(PRODUCT, LOCATION, a_free_start(client), language="en")
    key = str(uuid.uuid4())
    live.stack.hold("postgres")
    try:
        assert_unavailable(post(client, body, key))
        assert wait_until(lambda: not ready(booking_ready_url(live)), timeout=20), "booking still says it is ready"
    finally:
        live.stack.release("postgres")
    assert wait_until(lambda: all_ready(live), timeout=90), "the stack is not ready again"

    retried = post(client, body, key)
    assert retried.status_code in (201, 202), retried.text
    again = post(client, body, key)
    assert again.status_code in (200, 201, 202) and again.json()["id"] == retried.json()["id"], again.text
    assert bookings_of(live, body["person"]["family_name"]) == [retried.json()["id"]]


def test_a_post_while_kafka_is_down_is_decided_once_kafka_is_back(live: RunningStack, client: httpx.Client) -> None:
    body = booking_body(PRODUCT, LOCATION, a_free_start(client), language="en")
    key = str(uuid.uuid4())
    live.stack.hold("kafka")
    try:
        during = post(client, body, key, wait=2)
        if during.status_code != 202:
            assert_unavailable(during)
        assert wait_until(lambda: not ready(booking_ready_url(live)), timeout=30), "booking still says it is ready"
    finally:
        live.stack.release("kafka")
    assert wait_until(lambda: all_ready(live), timeout=120), "the stack is not ready again"

    began = time.monotonic()
    decided = None
    while decided is None and time.monotonic() - began < 60:
        answer = post(client, body, key)  # the client's retry, or its look at what became of it
        if answer.status_code in (200, 201) and answer.json()["status"] != "requested":
            decided = answer.json()
        time.sleep(0.5)
    assert decided is not None and decided["status"] == "confirmed", "not decided a minute after Kafka was back"
    if during.status_code == 202:
        assert decided["id"] == during.json()["id"]
    assert bookings_of(live, body["person"]["family_name"]) == [decided["id"]]
