"""Kafka clients built from settings, and topic creation from the registry."""

from __future__ import annotations

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from loket_contracts.topics import ALL_TOPICS, Topic


def make_producer(bootstrap: str, client_id: str, linger_ms: int = 2) -> AIOKafkaProducer:
    # Idempotence (acks=all, one in-flight batch per partition) keeps order per key across retries.
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,
        linger_ms=linger_ms,
        max_batch_size=256 * 1024,
    )


async def ensure_topics(bootstrap: str, topics: tuple[Topic, ...] = ALL_TOPICS) -> list[str]:
    """Create every registry topic that does not exist yet; return the names created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="loket-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t.name not in existing]
        created: list[str] = []
        for topic in missing:
            try:
                await admin.create_topics([NewTopic(topic.name, topic.partitions, 1, topic_configs=topic.configs())])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created
    finally:
        await admin.close()
