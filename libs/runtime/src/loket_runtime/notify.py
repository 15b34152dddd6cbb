"""Wait in an HTTP handler for something another task commits (PostgreSQL LISTEN/NOTIFY).

Works across instances: whichever instance's consumer commits the decision, every instance's
listener hears the NOTIFY and wakes its waiters for that key.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Sequence

import asyncpg

from loket_runtime.db import connect
from loket_runtime.logging import get_logger

log = get_logger(__name__)


class Waiters:
    def __init__(self, dsn: str, channel: str) -> None:
        self.dsn = dsn
        self.channel = channel
        self._waiting: dict[str, list[asyncio.Future[object]]] = defaultdict(list)
        self._until: dict[asyncio.Future[object], float] = {}  # a waiter's deadline (event-loop time)
        self._conn: asyncpg.Connection | None = None

    async def run(self) -> None:
        """Keep one listening connection open; reconnect if it drops."""
        while True:
            try:
                self._conn = await connect(self.dsn)
                closed = asyncio.Event()
                self._conn.add_termination_listener(lambda _conn, closed=closed: closed.set())
                await self._conn.add_listener(self.channel, self._on_notify)
                await closed.wait()
            except asyncio.CancelledError:
                if self._conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.shield(self._conn.close())
                raise
            except Exception as exc:
                log.warning("listener connection lost", channel=self.channel, error=str(exc))
                await asyncio.sleep(0.5)

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        for key in payload.split(","):  # `notify_many` sends several keys in one payload
            self.deliver(key, None)

    def deliver(self, key: str, value: object) -> None:
        """Wake this process's waiters for `key` with `value`: what a task of this process has just
        committed, so that they need not read it back (the NOTIFY that follows finds none left).
        The NOTIFY wakes them with None: read it."""
        for future in self._waiting.pop(key, []):
            if not future.done():
                future.set_result(value)

    def register(self, key: str, until: float | None = None) -> asyncio.Future[object]:
        """Register before checking the state, so a notification between the two is not missed.
        `until`: when the waiter gives up (event-loop time), for `awaits`."""
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self._waiting[key].append(future)
        if until is not None:
            self._until[future] = until
        return future

    def awaits(self, key: str, margin: float) -> bool:
        """Whether a waiter of this process will still be waiting for `key` `margin` seconds from
        now, so that what is committed for it meanwhile reaches it."""
        latest = asyncio.get_running_loop().time() + margin
        return any(self._until.get(f, 0.0) >= latest for f in self._waiting.get(key, ()) if not f.done())

    def discard(self, key: str, future: asyncio.Future[object]) -> None:
        self._until.pop(future, None)
        waiting = self._waiting.get(key)
        if waiting and future in waiting:
            waiting.remove(future)
            if not waiting:
                del self._waiting[key]


async def notify(conn: asyncpg.Connection, channel: str, key: str) -> None:
    """Send inside the writer's transaction: delivered only if and when it commits. A key holds no comma."""
    await conn.execute("SELECT pg_notify($1, $2)", channel, key)


NOTIFY_PAYLOAD_BYTES = 7900  # PostgreSQL's limit is 8000 bytes per payload


def notify_payloads(keys: Sequence[str]) -> list[str]:
    """The keys comma-separated, in as few payloads as PostgreSQL takes (`NOTIFY_PAYLOAD_BYTES`)."""
    payloads: list[str] = []
    for key in keys:
        if payloads and len(payloads[-1].encode()) + 1 + len(key.encode()) <= NOTIFY_PAYLOAD_BYTES:
            payloads[-1] += "," + key
        else:
            payloads.append(key)
    return payloads


async def notify_many(conn: asyncpg.Connection, channel: str, keys: Sequence[str]) -> None:
    """`notify` for several keys, in one statement (`notify_payloads`)."""
    if keys:
        await conn.execute("SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p", channel, notify_payloads(keys))
