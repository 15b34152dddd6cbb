"""New bookings written by group commit: the requests that arrive while one transaction is being
written go together into the next one.

In a release storm hundreds of residents post at once. Written one transaction each, every booking
pays for its own BEGIN, COMMIT (a WAL flush), pool checkout and reset; written together, a batch of
them pays once. Each request is still decided on its own, in arrival order, with the same rules as
alone (`BookingService.request`): the per-person rule's advisory locks are taken inside the batch's
transaction, and a later request of the batch sees the earlier ones' rows, so two requests of one
person in one batch are counted as two.

A request that breaks a rule (`RuleViolation`, a reused `Idempotency-Key`) is refused before it
writes anything, so the others of its batch go on. Anything else that fails the batch's transaction
(a deadlock with another instance, a lost connection) rolls the whole batch back; its requests are
then written one transaction each, so one bad request fails only itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
from prometheus_client import Counter, Histogram

from loket_booking.application.service import BookingService, NewBooking, Validated
from loket_booking.domain.rules import RuleViolation
from loket_runtime.logging import get_logger

log = get_logger(__name__)
BATCH_SIZE = Histogram(
    "loket_booking_intake_batch_size",
    "New bookings written in one transaction",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)
KNOWN_FULL = Counter("loket_booking_known_full_refusals_total", "Requests refused at once: the start was known full")
ROLLED_BACK = Counter("loket_booking_intake_rollbacks_total", "Batches rolled back and written one by one")


class IdempotencyKeyReused(Exception):
    """The `Idempotency-Key` was used before with a different body."""


class IntakeFull(Exception):
    """More requests wait to be written than `Intake.max_waiting`: this one is not taken (the caller
    answers 503 with Retry-After, rather than holding it, and its memory, for longer than it waits)."""


@dataclass
class BookingRequest:
    """One resident's request, validated, waiting to be written."""

    cmd: NewBooking
    validated: Validated
    now: datetime
    correlation_id: str | None = None
    idempotency_key: str | None = None
    fingerprint: str = ""  # the body's hash, to tell a repeat from a reuse of the key
    answer: asyncio.Future[Accepted] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


@dataclass(frozen=True)
class Accepted:
    booking_id: str
    manage_token: str
    replayed: bool  # an earlier request with the same Idempotency-Key made it


class Intake:
    """Writes `BookingRequest`s in batches of up to `max_batch`, with `writers` transactions at a
    time (each on its own connection; PostgreSQL works on two batches at once on two cores), and
    takes at most `max_waiting` waiting requests (`IntakeFull` past that)."""

    def __init__(self, service: BookingService, max_batch: int = 64, writers: int = 2, max_waiting: int = 2000) -> None:
        self.service = service
        self.max_batch = max_batch
        self.writers = writers
        self.max_waiting = max_waiting
        self._queue: asyncio.Queue[BookingRequest] = asyncio.Queue()

    async def submit(self, request: BookingRequest) -> Accepted:
        """Queue the request and wait until its batch is committed. Raises `RuleViolation` or
        `IdempotencyKeyReused` for this request alone, `IntakeFull` when too many wait already."""
        if self._queue.qsize() >= self.max_waiting:
            raise IntakeFull
        self._queue.put_nowait(request)
        return await request.answer

    async def run(self, pool: asyncpg.Pool) -> None:
        """The writers; run for the life of the process."""
        await asyncio.gather(*(self._write_batches(pool) for _ in range(self.writers)))

    async def _write_batches(self, pool: asyncpg.Pool) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            BATCH_SIZE.observe(len(batch))
            try:
                await self._write_together(pool, batch)
            except asyncio.CancelledError:
                for request in batch:
                    request.answer.cancel()
                raise
            except Exception as exc:
                ROLLED_BACK.inc()
                if len(batch) > 1:
                    log.warning(
                        "batch of new bookings rolled back; writing them one by one", size=len(batch), error=repr(exc)
                    )
                for request in batch:
                    await self._write_alone(pool, request)

    async def _write_together(self, pool: asyncpg.Pool, batch: list[BookingRequest]) -> None:
        outcomes: list[Accepted | BaseException] = []
        async with pool.acquire() as conn, conn.transaction():
            for request in batch:
                outcomes.append(await self._write_or_refuse(conn, request))
        for request, outcome in zip(batch, outcomes, strict=True):
            _settle(request, outcome)

    async def _write_alone(self, pool: asyncpg.Pool, request: BookingRequest) -> None:
        try:
            async with pool.acquire() as conn, conn.transaction():
                outcome = await self._write_or_refuse(conn, request)
        except Exception as exc:
            outcome = exc
        _settle(request, outcome)

    async def _write_or_refuse(self, conn: asyncpg.Connection, request: BookingRequest) -> Accepted | BaseException:
        """Write one request in the caller's transaction; a refusal is returned, having written nothing."""
        try:
            return await self.write(conn, request)
        except (RuleViolation, IdempotencyKeyReused) as refusal:
            return refusal

    async def write(self, conn: asyncpg.Connection, request: BookingRequest) -> Accepted:
        """The booking of one request (or, for a repeated `Idempotency-Key`, the one it made before)."""
        key = request.idempotency_key
        if key:
            earlier = await self.service.repo.claim_idempotency_key(conn, key)
            if earlier is not None:
                if earlier["body_hash"] != request.fingerprint:
                    raise IdempotencyKeyReused(key)
                first = json.loads(self.service.unseal(earlier["response"]))
                return Accepted(first["id"], first["manage_token"], replayed=True)
        booking, token = await self.service.request(
            conn, request.cmd, request.now, request.correlation_id, request.validated
        )
        if key:
            sealed = self.service.seal(json.dumps({"id": booking.id, "manage_token": token}).encode())
            await self.service.repo.remember_idempotency_key(conn, key, request.fingerprint, booking.id, sealed)
        return Accepted(booking.id, token, replayed=False)


def _settle(request: BookingRequest, outcome: Accepted | BaseException) -> None:
    if request.answer.done():  # the caller went away
        return
    if isinstance(outcome, BaseException):
        request.answer.set_exception(outcome)
    else:
        request.answer.set_result(outcome)
