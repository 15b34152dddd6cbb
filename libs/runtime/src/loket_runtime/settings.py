"""Settings shared by every service, read from the environment (prefix LOKET_), with local defaults."""

from __future__ import annotations

import os
import secrets
import socket

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

KIB = 1024


def unique_instance_id() -> str:
    """This process's identity when none is set: host, process id and a random part, so two
    processes started the same way never take each other for the same instance."""
    host = socket.gethostname().split(".")[0] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


class ServiceSettings(BaseSettings):
    """Override any field with an environment variable, e.g. LOKET_KAFKA_BOOTSTRAP=broker:9092."""

    model_config = SettingsConfigDict(env_prefix="LOKET_", extra="ignore")

    service_name: str = "loket"
    # Unique per process unless set. Nothing that must be whole in every process (the catalogue
    # read model) depends on it: each process assigns itself every partition (see consumer.py).
    instance_id: str = Field(default_factory=unique_instance_id)
    database_url: str = "postgresql://postgres@127.0.0.1:5433/postgres"
    kafka_bootstrap: str = "127.0.0.1:9092"
    http_host: str = "127.0.0.1"
    http_port: int = 8001
    log_level: str = "INFO"
    # Producer: a short linger batches records sent together (a storm) at a small latency cost.
    kafka_linger_ms: int = 2
    consumer_batch_size: int = 500
    # How long the broker may hold a fetch that finds no record. It answers as soon as a record
    # arrives, so this adds no latency: it only sets how often an idle consumer asks again.
    consumer_fetch_max_wait_ms: int = 500
    outbox_batch_size: int = 500
    outbox_poll_seconds: float = 1.0
    # Whether this process may be the one that publishes the database's outbox (one relay per
    # database leads at a time). A process whose CPU goes to decisions can leave it to another.
    outbox_relay: bool = True
    # Sizes are bounded where they enter: a request body here, an event's JSON before it is
    # stored or queued (outbox.MAX_EVENT_BYTES), a record the relay sends (below Kafka's 1 MiB
    # limits, headers included; a larger one is parked, never sent).
    http_max_body_bytes: int = 64 * KIB
    outbox_max_record_bytes: int = 1_000_000
    # A record for a topic the cluster does not have waits this long (with the records of that
    # topic behind it, never those of others) before it is parked.
    outbox_missing_topic_grace_seconds: float = 60.0
    # OIDC: tokens are checked against this issuer's JWKS; the local stack runs its own issuer.
    oidc_issuer: str = "http://127.0.0.1:8000/api/v1/auth"
    oidc_jwks_url: str = "http://127.0.0.1:8000/api/v1/auth/jwks"
    oidc_audience: str = "loket"
    public_base_url: str = "http://127.0.0.1:8000"
