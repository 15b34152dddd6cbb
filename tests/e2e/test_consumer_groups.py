"""`/api/v1/ops/consumers` reports groups without members apart (their lag never shrinks: a stopped
tool, a renamed group), keeps them out of `total_lag`, and ops can delete them (issue 15, part 7).
The `<service>-catalogue-view` groups have no members by design and stay with the others."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition

from loket_contracts.topics import BOOKINGS
from tests.conftest import RunningStack
from tests.e2e.helpers import wait_until
from tests.e2e.test_ops_api import book, ops_client


def leave_a_group_behind(live: RunningStack, group: str) -> None:
    """A tool that read `loket.bookings` from the start, committed where it stood (offset 0) and stopped."""

    async def run() -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=live.kafka_bootstrap, group_id=group, enable_auto_commit=False)
        await consumer.start()
        try:
            tps = [TopicPartition(BOOKINGS.name, p) for p in range(BOOKINGS.partitions)]
            consumer.assign(tps)
            await consumer.commit(dict.fromkeys(tps, 0))
        finally:
            await consumer.stop()

    asyncio.run(run())


def groups_of(report: dict[str, Any], key: str) -> dict[str, dict[str, Any]]:
    return {g["group"]: g for g in report[key]}


def test_a_group_without_members_is_reported_apart_and_ops_can_delete_it(live: RunningStack) -> None:
    ops = ops_client(live)
    book(live, weekday=3)  # loket.bookings has records, so a group at offset 0 lags
    stale = f"stopped-tool-{uuid.uuid4().hex[:8]}"
    leave_a_group_behind(live, stale)

    def reported() -> dict[str, Any] | None:
        report: dict[str, Any] = ops.get("/api/v1/ops/consumers").json()
        return report if stale in groups_of(report, "groups_without_members") else None

    report = wait_until(reported)
    assert report, "the stopped tool's group is listed among the groups without members"
    idle = groups_of(report, "groups_without_members")[stale]
    active = groups_of(report, "groups")
    assert idle["members"] == 0 and idle["lag"] > 0
    assert stale not in active
    assert report["total_lag"] == sum(g["lag"] for g in active.values()), "its lag stays out of total_lag"
    assert report["lag_without_members"] >= idle["lag"]
    assert any(name.endswith("-catalogue-view") for name in active), "catalogue views are not stale"
    assert not any(name.endswith("-catalogue-view") for name in groups_of(report, "groups_without_members"))

    staff = httpx.Client(base_url=live.base_url, timeout=30, headers={"Authorization": f"Bearer {live.token('staff')}"})
    assert staff.delete(f"/api/v1/ops/consumers/{stale}").status_code == 403
    assert httpx.delete(f"{live.base_url}/api/v1/ops/consumers/{stale}").status_code == 401

    r = ops.delete("/api/v1/ops/consumers/calendar-allocator")
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")

    r = ops.delete(f"/api/v1/ops/consumers/{stale}")
    assert r.status_code == 204, r.text
    report = ops.get("/api/v1/ops/consumers").json()
    assert stale not in groups_of(report, "groups_without_members")
    assert stale not in groups_of(report, "groups")
    assert ops.delete(f"/api/v1/ops/consumers/{stale}").status_code == 404
