"""Kafka as the operations API sees it: consumer groups and their lag, and reading topics directly.

Reading uses a consumer without a group (`assign`, never `subscribe`): it commits nothing and
disturbs no consumer group. A read stops at the end offsets captured when it began, so it
terminates while producers keep writing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

Record = ConsumerRecord[Any, Any]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int
    lag: int


def _consumer(bootstrap: str, batch: int = 5000) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=batch,
        fetch_max_bytes=64 * 1024 * 1024,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_wait_ms=20,
    )


async def partitions_of(consumer: AIOKafkaConsumer, topics: Iterable[str]) -> list[TopicPartition]:
    # `consumer.topics()` fetches the metadata but keeps it to itself: have the client track these
    # topics instead, since its offset requests look the leaders up there (and, missing them, wait
    # a retry backoff of 100 ms per topic before they ask again).
    topics = list(topics)
    await consumer._client.set_topics(topics)
    cluster = consumer._client.cluster
    return [TopicPartition(t, p) for t in topics for p in sorted(cluster.partitions_for_topic(t) or ())]


class TopicReader:
    """One group-less consumer for a whole job (partitions, end offsets, then the reading): each
    client costs a connection and a metadata round trip, a tenth of a second or more here."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = _consumer(bootstrap)
        self._stop_at: dict[TopicPartition, int] = {}
        self._pending: set[TopicPartition] = set()

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        with contextlib.suppress(Exception):
            await asyncio.shield(self._consumer.stop())

    async def partitions(self, topics: Iterable[str]) -> list[TopicPartition]:
        return await partitions_of(self._consumer, topics)

    async def end_offsets(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        tps = list(tps)
        return dict(await self._consumer.end_offsets(tps)) if tps else {}

    async def seek(self, stop_at: dict[TopicPartition, int], start_at: dict[TopicPartition, int] | None = None) -> None:
        """Position on each partition's records from `start_at` (default: its beginning) up to, not
        including, `stop_at`. The consumer starts fetching them at once, in the background, so the
        caller may do other work before it asks for the `batches`."""
        consumer = self._consumer
        tps = [tp for tp, end in stop_at.items() if end > (start_at or {}).get(tp, 0)]
        self._stop_at = dict(stop_at)
        self._pending = set()
        if not tps:
            return
        beginning = await consumer.beginning_offsets(tps)
        consumer.assign(tps)
        for tp in tps:
            first = max((start_at or {}).get(tp, 0), beginning[tp])
            if first < stop_at[tp]:
                consumer.seek(tp, first)
                self._pending.add(tp)
        consumer.pause(*(set(tps) - self._pending))

    async def batches(self) -> AsyncIterator[list[Record]]:
        """The records `seek` positioned on, a batch per partition and fetch. All partitions are
        fetched at once (one request per broker)."""
        consumer, stop_at, pending = self._consumer, self._stop_at, self._pending
        while pending:
            fetched = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in fetched.items():
                inside = [r for r in records if r.offset < stop_at[tp]]
                if inside:
                    yield inside
            for tp in list(pending):
                if await consumer.position(tp) >= stop_at[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)


async def end_offsets(bootstrap: str, topics: Iterable[str]) -> dict[TopicPartition, int]:
    async with TopicReader(bootstrap) as reader:
        return await reader.end_offsets(await reader.partitions(topics))


async def read(
    bootstrap: str,
    stop_at: dict[TopicPartition, int],
    start_at: dict[TopicPartition, int] | None = None,
) -> AsyncIterator[list[Record]]:
    """Yield batches of records of each partition from `start_at` (default: its beginning) up to,
    not including, `stop_at`, with a consumer of its own."""
    async with TopicReader(bootstrap) as reader:
        await reader.seek(stop_at, start_at)
        async for batch in reader.batches():
            yield batch


async def consumer_groups(bootstrap: str) -> list[dict[str, Any]]:
    """Every consumer group of the cluster with, per partition it committed, its offset, the end and the lag."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loket-calendar-ops")
    await admin.start()
    try:
        names = sorted({str(g[0]) for g in await admin.list_consumer_groups()})
        committed: dict[str, dict[TopicPartition, int]] = {}
        for name in names:
            offsets = await admin.list_consumer_group_offsets(name)
            committed[name] = {tp: meta.offset for tp, meta in offsets.items()}
        described = await _describe(admin, names)
    finally:
        await admin.close()
    topics = {tp.topic for offsets in committed.values() for tp in offsets}
    ends = await end_offsets(bootstrap, sorted(topics)) if topics else {}
    groups = []
    for name in names:
        partitions = []
        for tp in sorted(committed[name], key=lambda tp: (tp.topic, tp.partition)):
            end = ends.get(tp, 0)
            offset = committed[name][tp]
            position = offset if offset >= 0 else None
            partitions.append(PartitionLag(tp.topic, tp.partition, position, end, max(end - (position or 0), 0)))
        groups.append(
            {
                "group": name,
                **described.get(name, {"state": None, "members": None}),
                "lag": sum(p.lag for p in partitions),
                "partitions": [p.__dict__ for p in partitions],
            }
        )
    return groups


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, Any]]:
    """State and member count of each group (best effort: the raw DescribeGroups responses)."""
    result: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            responses = await admin.describe_consumer_groups([name])
        except Exception:
            continue
        for response in responses:
            for group in getattr(response, "groups", []):
                # (error_code, group_id, state, protocol_type, protocol, members, ...)
                if len(group) >= 6 and group[1] == name:
                    result[name] = {"state": group[2], "members": len(group[5])}
    return result


GROUP_ID_NOT_FOUND, NON_EMPTY_GROUP = 69, 68  # Kafka's error codes


class GroupNotFound(Exception):
    pass


class GroupNotEmpty(Exception):
    pass


async def delete_consumer_group(bootstrap: str, name: str) -> None:
    """Delete a group and its committed offsets (Kafka's DeleteGroups). Kafka refuses while the
    group has members (`GroupNotEmpty`); an unknown group raises `GroupNotFound`."""
    from aiokafka.errors import for_code
    from aiokafka.protocol.admin import DeleteGroupsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loket-calendar-ops")
    await admin.start()
    try:
        known = {str(g[0]) for g in await admin.list_consumer_groups()}
        if name not in known:
            raise GroupNotFound(name)
        coordinator = await admin.find_coordinator(name)
        response = await admin._send_request(DeleteGroupsRequest([name]), coordinator)
    finally:
        await admin.close()
    for group, error_code in response.results:
        if group != name or not error_code:
            continue
        if error_code == GROUP_ID_NOT_FOUND:
            raise GroupNotFound(name)
        if error_code == NON_EMPTY_GROUP:
            raise GroupNotEmpty(name)
        raise for_code(error_code)(f"DeleteGroups {name!r} failed")
