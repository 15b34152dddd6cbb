"""Settings shared by every service, read from the environment (prefix LOKET_), with local defaults."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Override any field with an environment variable, e.g. LOKET_KAFKA_BOOTSTRAP=broker:9092."""

    model_config = SettingsConfigDict(env_prefix="LOKET_", extra="ignore")

    service_name: str = "loket"
    instance_id: str = "local-1"
    database_url: str = "postgresql://postgres@127.0.0.1:5433/postgres"
    kafka_bootstrap: str = "127.0.0.1:9092"
    http_host: str = "127.0.0.1"
    http_port: int = 8001
    log_level: str = "INFO"
    # Producer: a short linger batches records sent together (a storm) at a small latency cost.
    kafka_linger_ms: int = 2
    consumer_batch_size: int = 500
    outbox_batch_size: int = 500
    outbox_poll_seconds: float = 1.0
    # Whether this process may be the one that publishes the database's outbox (one relay per
    # database leads at a time). A process whose CPU goes to decisions can leave it to another.
    outbox_relay: bool = True
    # OIDC: tokens are checked against this issuer's JWKS; the local stack runs its own issuer.
    oidc_issuer: str = "http://127.0.0.1:8000/api/v1/auth"
    oidc_jwks_url: str = "http://127.0.0.1:8000/api/v1/auth/jwks"
    oidc_audience: str = "loket"
    public_base_url: str = "http://127.0.0.1:8000"
