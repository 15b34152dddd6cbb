"""The operations API over HTTP: consumer lag, dead letters and their replay, the agenda rebuild,
and the event tail of one booking."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day, wait_until

LOCATION = "migration-counter"


def ops_client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30, headers={"Authorization": f"Bearer {live.token('ops')}"})


def book(live: RunningStack, product: str = "short-stay", weekday: int = 2) -> dict[str, Any]:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = open_day(client, product, LOCATION, weekday=weekday, min_free=1)
    start = free_slots(client, product, LOCATION, day)[0]["start"]
    r = client.post("/api/v1/bookings", json=booking_body(product, LOCATION, start), headers={"Prefer": "wait=10"})
    assert r.status_code == 201, r.text
    body: dict[str, Any] = r.json()
    return body


def produce(live: RunningStack, topic: str, key: str, headers: list[tuple[str, bytes]], value: bytes) -> None:
    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=live.kafka_bootstrap)
        await producer.start()
        try:
            await producer.send_and_wait(topic, value=value, key=key.encode(), headers=headers)
        finally:
            await producer.stop()

    asyncio.run(send())


def test_ops_endpoints_need_the_ops_role(live: RunningStack) -> None:
    client = httpx.Client(base_url=live.base_url, timeout=30)
    assert client.get("/api/v1/ops/consumers").status_code == 401
    staff = {"Authorization": f"Bearer {live.token('staff')}"}
    for method, path in (
        ("GET", "/api/v1/ops/consumers"),
        ("GET", "/api/v1/ops/dead-letters"),
        ("POST", "/api/v1/ops/dead-letters/1/replay"),
        ("POST", "/api/v1/ops/projections/agenda/rebuild"),
        ("GET", "/api/v1/ops/events?booking=x"),
    ):
        r = client.request(method, path, headers=staff)
        assert r.status_code == 403, (path, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")


def test_consumers_lists_every_group_with_its_lag(live: RunningStack) -> None:
    book(live)
    ops = ops_client(live)

    def allocator() -> dict[str, Any] | None:
        groups = {g["group"]: g for g in ops.get("/api/v1/ops/consumers").json()["groups"]}
        group = groups.get("calendar-allocator")
        return group if group and group["partitions"] and group["lag"] == 0 else None

    group = wait_until(allocator)
    assert group, "the allocator's group commits its offsets to Kafka and catches up"
    groups = {g["group"] for g in ops.get("/api/v1/ops/consumers").json()["groups"]}
    assert {"calendar-allocator", "calendar-agenda"} <= groups
    assert any(g.startswith("calendar-catalogue-") for g in groups)
    for p in group["partitions"]:
        assert p["topic"] == "loket.bookings"
        assert p["end"] >= p["committed"] >= 0
        assert p["lag"] == p["end"] - p["committed"]


def test_a_malformed_record_is_dead_lettered_and_can_be_replayed(live: RunningStack) -> None:
    ops = ops_client(live)
    event_id = str(uuid.uuid4())
    poison_booking = f"poison-{event_id[:8]}"
    headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", event_id.encode()),
        ("ce_type", b"booking-requested"),
        ("ce_source", b"tests/poison"),
        ("ce_subject", poison_booking.encode()),
        ("ce_time", b"2026-11-01T10:00:00+00:00"),
    ]
    body = json.dumps({"booking_id": poison_booking, "location_id": LOCATION}).encode()  # no product, no start
    produce(live, "loket.bookings", LOCATION, headers, body)

    def letters() -> list[dict[str, Any]]:
        found = ops.get("/api/v1/ops/dead-letters", params={"topic": "loket.bookings", "limit": 1000}).json()
        return [d for d in found["dead_letters"] if d["event_id"] == event_id]

    first = wait_until(lambda: [d for d in letters() if d["group"] == "calendar-allocator"])
    assert first, "the allocator dead-letters the record it cannot read"
    letter = first[0]
    assert letter["topic"] == "loket.bookings" and letter["partition"] >= 0 and letter["offset"] >= 0
    assert letter["key"] == LOCATION
    assert "validation error" in letter["error"].lower() or "field required" in letter["error"].lower()
    assert letter["body"] == {"booking_id": poison_booking, "location_id": LOCATION}
    assert letter["headers"]["ce_id"] == event_id
    assert not any(name.startswith("dlq_") for name in letter["headers"])
    assert letter["replayed_at"] is None
    assert ops.get(f"/api/v1/ops/dead-letters/{letter['id']}").json()["id"] == letter["id"]

    replayed = ops.post(f"/api/v1/ops/dead-letters/{letter['id']}/replay")
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["replayed_at"] is not None and replayed.json()["replay_count"] == 1
    again = ops.post(f"/api/v1/ops/dead-letters/{letter['id']}/replay")
    assert again.status_code == 409
    assert ops.post("/api/v1/ops/dead-letters/999999999/replay").status_code == 404

    # The original record went back to its topic, under its key, and was consumed once more
    # (still malformed, so it is dead-lettered again from its new offset).
    def redelivered() -> list[dict[str, Any]]:
        return [d for d in letters() if d["group"] == "calendar-allocator" and d["offset"] != letter["offset"]]

    second = wait_until(redelivered)
    assert second, "the replayed record reached the consumers again"
    assert second[0]["partition"] == letter["partition"]  # same key, same partition
    assert second[0]["body"] == letter["body"] and second[0]["headers"] == letter["headers"]

    tail = ops.get("/api/v1/ops/events", params={"booking": poison_booking}).json()["events"]
    on_topic = [e for e in tail if e["topic"] == "loket.bookings"]
    assert [e["offset"] for e in on_topic] == sorted({letter["offset"], second[0]["offset"]})
    assert all(e["key"] == LOCATION and e["id"] == event_id for e in on_topic)
    assert any(e["topic"] == "loket.dead-letters" and e["dead_letter"] for e in tail)


def test_event_tail_of_a_booking_in_time_order(live: RunningStack) -> None:
    booking = book(live)
    ops = ops_client(live)

    def tail() -> list[dict[str, Any]] | None:
        events = ops.get("/api/v1/ops/events", params={"booking": booking["id"]}).json()["events"]
        types = [e["type"] for e in events]
        return events if {"booking-requested", "slot-reserved", "booking-confirmed"} <= set(types) else None

    events = wait_until(tail)
    assert events
    types = [e["type"] for e in events]
    assert types.index("booking-requested") < types.index("slot-reserved") < types.index("booking-confirmed")
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)
    assert {e["topic"] for e in events} >= {"loket.bookings", "loket.calendar"}
    correlated = ops.get("/api/v1/ops/events", params={"correlation": events[1]["correlationid"]}).json()["events"]
    assert events[1]["correlationid"] and events[1]["id"] in {e["id"] for e in correlated}
    assert ops.get("/api/v1/ops/events").status_code == 422


def test_rebuild_of_the_agenda_equals_the_incremental_one(live: RunningStack) -> None:
    staff = {"Authorization": f"Bearer {live.token('staff')}"}
    ops = ops_client(live)
    booking = book(live, "residence-card", weekday=1)
    client = httpx.Client(base_url=live.base_url, timeout=30)
    day = booking["start"][:10]
    cancelled = book(live, "residence-card", weekday=1)
    client.post(
        f"/api/v1/bookings/{cancelled['id']}/cancel", headers={"Authorization": f"Bearer {cancelled['manage_token']}"}
    )

    def settled() -> dict[str, Any] | None:
        shown = client.get(f"/api/v1/agenda/{LOCATION}", params={"date": day}, headers=staff).json()
        statuses = {a["booking"]: a["status"] for d in shown["desks"] for a in d["appointments"]}
        return shown if statuses.get(cancelled["id"]) == "cancelled" and booking["id"] in statuses else None

    before = wait_until(settled)
    assert before

    verify = ops.post("/api/v1/ops/projections/agenda/rebuild", params={"verify": "true"})
    assert verify.status_code == 200, verify.text
    report = verify.json()
    assert report["mode"] == "verify" and report["events"] > 0
    assert report["equal_to_incremental"], report["differences"]

    rebuilt = ops.post("/api/v1/ops/projections/agenda/rebuild")
    assert rebuilt.status_code == 200, rebuilt.text
    report = rebuilt.json()
    assert report["mode"] == "rebuild" and report["events"] > 0 and report["events_per_second"] > 0
    print(f"agenda rebuilt from {report['events']} events at {report['events_per_second']} events/s")
    if report["live_consumer_lag_at_start"] == 0:
        assert report["equal_to_incremental"], report["differences"]
    after = client.get(f"/api/v1/agenda/{LOCATION}", params={"date": day}, headers=staff).json()
    assert after["desks"] == before["desks"]
    assert ops.post("/api/v1/ops/projections/nope/rebuild").status_code == 404

    # The live consumer goes on after the rebuild: a new booking still reaches the agenda.
    later = book(live, "residence-card", weekday=1)

    def shown_later() -> bool:
        shown = client.get(f"/api/v1/agenda/{LOCATION}", params={"date": day}, headers=staff).json()
        return any(a["booking"] == later["id"] for d in shown["desks"] for a in d["appointments"])

    assert wait_until(shown_later)
    again = ops.post("/api/v1/ops/projections/agenda/rebuild", params={"verify": "true"}).json()
    assert again["equal_to_incremental"], again["differences"]
