"""The catalogue's state in PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg


class EntityRepository:
    async def upsert(self, conn: asyncpg.Connection, kind: str, entity_id: str, data: dict[str, Any]) -> None:
        await conn.execute(
            "INSERT INTO catalogue_entities (kind, id, data) VALUES ($1, $2, $3)"
            " ON CONFLICT (kind, id) DO UPDATE SET data = EXCLUDED.data, updated_at = now()",
            kind,
            entity_id,
            data,
        )

    async def delete(self, conn: asyncpg.Connection, kind: str, entity_id: str) -> None:
        await conn.execute("DELETE FROM catalogue_entities WHERE kind = $1 AND id = $2", kind, entity_id)

    async def get(self, conn: asyncpg.Connection | asyncpg.Pool, kind: str, entity_id: str) -> dict[str, Any] | None:
        data: dict[str, Any] | None = await conn.fetchval(
            "SELECT data FROM catalogue_entities WHERE kind = $1 AND id = $2", kind, entity_id
        )
        return data

    async def all(self, conn: asyncpg.Connection | asyncpg.Pool, kind: str) -> list[dict[str, Any]]:
        rows = await conn.fetch("SELECT data FROM catalogue_entities WHERE kind = $1 ORDER BY id", kind)
        return [row["data"] for row in rows]

    async def count(self, conn: asyncpg.Connection | asyncpg.Pool, kind: str) -> int:
        value: int = await conn.fetchval("SELECT count(*) FROM catalogue_entities WHERE kind = $1", kind)
        return value
