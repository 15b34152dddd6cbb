"""State every process needs whole is read whole by every instance, whatever the operator sets or
forgets: against the real Kafka and PostgreSQL.

Two processes of one service, started the same way (the same settings, no instance id given),
share a database and each keep the catalogue in memory. Both must see every closure, including
those declared after the second one started (before, they shared one consumer group and split
the catalogue topic's partitions between them, so each missed some closures and let bookings
through on closed days).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta

import pytest
from aiokafka import AIOKafkaProducer

from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import CATALOGUE
from loket_runtime.catalogue import CatalogueView
from loket_runtime.service import ServiceRuntime
from loket_runtime.settings import ServiceSettings
from tests.conftest import RunningStack

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture(scope="session")
async def whole_db(infra: RunningStack) -> AsyncIterator[str]:
    infra.stack.postgres.create_databases(["loket_whole_test"])
    yield infra.stack.postgres.dsn("loket_whole_test")


async def declare(bootstrap: str, location: str, days: list[date]) -> list[str]:
    """Closures as the catalogue publishes them (keyed `closure:<id>`, so spread over partitions)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    ids = []
    try:
        for day in days:
            closure_id = f"whole-{uuid.uuid4().hex[:10]}"
            event = ev.ClosureDeclared(
                closure_id=closure_id, location_id=location, day=day, kind="ad-hoc", reason="test"
            )
            env = Envelope(type=event.TYPE, source="tests", subject=closure_id, data=event.model_dump(mode="json"))
            await producer.send_and_wait(
                CATALOGUE.name, env.kafka_value(), key=f"closure:{closure_id}".encode(), headers=env.kafka_headers()
            )
            ids.append(closure_id)
    finally:
        await producer.stop()
    return ids


async def eventually_all(views: list[CatalogueView], closure_ids: list[str], timeout: float = 20) -> list[set[str]]:
    """What each view misses of `closure_ids`, once all have them or the time is up."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        missing = [set(closure_ids) - set(view.closures) for view in views]
        if not any(missing) or loop.time() > deadline:
            return missing
        await asyncio.sleep(0.2)


async def test_two_processes_started_alike_each_read_the_whole_catalogue(
    infra: RunningStack, whole_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOKET_INSTANCE_ID", raising=False)  # what an operator forgets to set
    location = f"loc-{uuid.uuid4().hex[:6]}"
    first_days = [date(2031, 1, 1) + timedelta(days=i) for i in range(6)]
    later_days = [date(2031, 3, 1) + timedelta(days=i) for i in range(18)]
    runtimes: list[ServiceRuntime] = []
    views: list[CatalogueView] = []

    async def start_one() -> None:
        settings = ServiceSettings(service_name="booking", database_url=whole_db, kafka_bootstrap=infra.kafka_bootstrap)
        runtime, view = ServiceRuntime(settings, None), CatalogueView()
        runtime.keep_catalogue_view(view)
        await runtime.start()
        runtimes.append(runtime)
        views.append(view)

    try:
        await start_one()
        first = await declare(infra.kafka_bootstrap, location, first_days)
        assert await eventually_all(views, first) == [set()]
        await start_one()  # the second process: its snapshot, then the topic, whole
        await asyncio.sleep(3)  # room for a consumer group to rebalance, were there one
        later = await declare(infra.kafka_bootstrap, location, later_days)
        missing = await eventually_all(views, first + later)
        assert missing == [set(), set()], f"closures each process never saw: {[len(m) for m in missing]}"
        for view in views:
            assert all(view.is_closed(location, day) for day in first_days + later_days)
        # The database's copy was written once, whole: a third process starting now loads it.
        async with runtimes[0].pool.acquire() as conn:
            stored = await conn.fetchval(
                "SELECT count(*) FROM catalogue_view WHERE kind = 'closure' AND data->>'location_id' = $1", location
            )
        assert stored == len(first_days + later_days)
        assert runtimes[0].settings.instance_id != runtimes[1].settings.instance_id
    finally:
        for runtime in runtimes:
            await runtime.stop()
