"""PostgreSQL: connection pools and migrations (the runtime's tables, then the service's files)."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import asyncpg

MIGRATION_LOCK = 7_400_001  # advisory lock id: one instance migrates at a time


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _light_reset(conn: asyncpg.Connection) -> None:
    """Released connections only need an open transaction rolled back. asyncpg's default reset
    (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL) costs a round trip on every release; we take
    no session-level locks, cursors or settings on pooled connections."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def create_pool(dsn: str, min_size: int = 2, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn, min_size=min_size, max_size=max_size, init=_init_connection, reset=_light_reset
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn


async def migrate(dsn: str, migrations_dir: Path | None) -> list[str]:
    """Apply the runtime schema, then every `NNN_name.sql` of the service not applied yet, in order."""
    applied: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row["name"] for row in await conn.fetch("SELECT name FROM schema_migrations")}
        # The runtime's schema is idempotent (IF NOT EXISTS) and runs on every start.
        await conn.execute(resources.files("loket_runtime").joinpath("schema.sql").read_text())
        files: list[tuple[str, str]] = []
        if migrations_dir is not None and migrations_dir.is_dir():
            files += [(p.name, p.read_text()) for p in sorted(migrations_dir.glob("*.sql"))]
        for name, sql in files:
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (name) VALUES ($1)", name)
            applied.append(name)
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    finally:
        await conn.close()
    return applied
