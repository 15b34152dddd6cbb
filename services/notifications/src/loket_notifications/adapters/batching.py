"""Many callers, one round trip: calls made while the event loop runs one round (or within a short
`linger`) become one batch.

The sender works on a claimed batch of messages at once, each message its own task; each task asks
for its contact, stores its rendered bytes and records its outcome as if it were alone. Every such
call made before the loop comes round again (and at most `max_batch` of them) is answered by one
operation: one HTTP call to the booking service, one statement or one transaction in PostgreSQL.
Each caller still waits for its own answer, so nothing is recorded later than it was before: a
message is 'sent' in the database before its task moves on, exactly as with a call per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# One answer per item, in the items' order: a result, or the exception that item alone raises.
BatchCall = Callable[[list[Item]], Awaitable[Sequence[Result | BaseException]]]


class Coalescing(Generic[Item, Result]):
    """`await coalescing(item)` → the result for that item, from `batch(items)` called once for every
    item asked in the same round of the event loop. An exception raised by `batch` itself reaches
    every caller of that batch."""

    def __init__(self, batch: BatchCall[Item, Result], max_batch: int = 200, linger: float = 0.0) -> None:
        self.batch = batch
        self.max_batch = max_batch
        self.linger = linger  # seconds to wait for more items after the first (0: this round only)
        self.batches = 0  # calls of `batch` so far (tests and metrics)
        self._items: list[Item] = []
        self._futures: list[asyncio.Future[Result]] = []
        self._timer: asyncio.Handle | None = None  # the flush to come, if any
        self._in_flight: set[asyncio.Task[None]] = set()  # strong references while a batch runs

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            # after every task ready now has asked too, or after the linger
            self._timer = loop.call_later(self.linger, self._flush) if self.linger else loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()  # a full batch goes before its time
            self._timer = None
        if not self._items:
            return
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        task = asyncio.get_running_loop().create_task(self._answer(items, futures))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _answer(self, items: list[Item], futures: list[asyncio.Future[Result]]) -> None:
        self.batches += 1
        try:
            results = await self.batch(items)
        except Exception as exc:
            for future in futures:
                if not future.done():
                    future.set_exception(exc)
            return
        for future, result in zip(futures, results, strict=True):
            if future.done():
                continue  # its caller gave up (cancelled)
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
