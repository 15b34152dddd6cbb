"""Catalogue changes that would strand bookings: the dry run the catalogue asks for, and the sweep
the allocator runs when such a change is published.

The catalogue does not know bookings; the calendar does. Before an admin change is stored, the
catalogue asks (`POST /internal/strandings`, see entrypoints/app.py) which active reservations
the change would leave outside the catalogue and where each could move: `dry_run`, over a copy of
the view with the change applied. That answer is advisory. The truth is the sweep: the allocator
process reads `loket.catalogue` too (group `calendar-stranded`), and once its own catalogue view
holds a change, it takes the lock of every location the change touches (the lock of the
allocator's batches and of the hold timer, so it is the one writer of those reservations then),
reads their active reservations and, for each one the catalogue no longer allows, either moves it
to a free desk (`reservation-moved`) or frees it (`reservation-withdrawn`, then `slot-released`):
as the admin chose in the change (`stranded`), or when nothing was chosen (the catalogue saw no
stranded booking, but one was booked meanwhile) moved where a desk is free, else withdrawn.
Booking turns these into the booking's history and a cancellation; notifications tells the
resident. A sweep is idempotent: a second one over the same state finds nothing to do.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime

import asyncpg

from loket_calendar.adapters import store
from loket_calendar.adapters.reservations import SqlReservations
from loket_calendar.application.allocator import RESERVATIONS_CHANNEL, Allocator, emit
from loket_calendar.domain.schedule import CatalogueView
from loket_calendar.domain.stranding import (
    Active,
    Stranded,
    after,
    assess,
    concerns,
    describe,
    locations_touched,
    still_offered,
    stranded,
)
from loket_contracts import events as ev
from loket_runtime.consumer import Delivery, HandlerContext
from loket_runtime.logging import get_logger

STRANDING_GROUP = "calendar-stranded"
# Catalogue changes that can leave a booking outside the catalogue. Closures are not among them:
# the booking service cancels a closed day's bookings itself.
CHANGES: tuple[type[ev.Event], ...] = (
    ev.ProductDefined,
    ev.LocationDefined,
    ev.DeskDefined,
    ev.DeskRemoved,
    ev.SchedulePublished,
)
VIEW_WAIT_SECONDS = 5.0
log = get_logger(__name__)

# (topic, partition) -> the next offset the process's catalogue view will apply, or None if unknown.
ViewPosition = Callable[[str, int], int | None]


def active_of(row: asyncpg.Record) -> Active:
    return Active(
        row["booking_id"],
        row["location_id"],
        row["desk_id"],
        row["product_id"],
        row["start_at"],
        row["end_at"],
        row["status"],
    )


async def dry_run(
    conn: store.Executor, view: CatalogueView, changes: Sequence[ev.Event], now: datetime
) -> list[Stranded]:
    """What `changes` would strand, on a copy of `view`; nothing is written."""
    proposed = after(view, changes)
    locations = sorted({loc for change in changes for loc in locations_touched(proposed, change)})
    if not locations:
        return []
    rows = await store.active_reservations(conn, locations, now)
    return stranded(proposed, [active_of(r) for r in rows], now)


def stranded_out(found: Iterable[Stranded], action: str) -> list[dict[str, object]]:
    """The affected bookings as the catalogue lists them, with what `action` would do to each."""
    out: list[dict[str, object]] = []
    for s in found:
        r = s.reservation
        if action == "cancel" or s.move_to is None:
            outcome: dict[str, object] = {"outcome": "cancel"}
        else:
            outcome = {"outcome": "move", "to_desk": s.move_to}
        out.append(
            {
                "booking": r.booking_id,
                "location": r.location_id,
                "desk": r.desk_id,
                "product": r.product_id,
                "start": r.start.isoformat(),
                "end": r.end.isoformat(),
                "status": r.status,
                "why": s.why,
                "movable_to": s.move_to,
                **outcome,
            }
        )
    return out


class StrandingSweep:
    """The allocator's side: consumes catalogue changes and resolves what they strand."""

    def __init__(self, allocator: Allocator, view_position: ViewPosition | None = None) -> None:
        self.allocator = allocator
        self.view = allocator.view
        self.view_position = view_position

    def handlers(self) -> dict[str, object]:
        return {change.TYPE: self.on_change for change in CHANGES}

    def view_has(self, delivery: Delivery) -> bool:
        """The process's catalogue view has applied this record (or a later one of its partition)."""
        position = self.view_position(delivery.topic, delivery.partition) if self.view_position else None
        if position is not None:
            return position > delivery.offset
        # Without positions: the view holds this very state of the entity.
        event = delivery.event
        match event:
            case ev.DeskRemoved():
                return event.desk_id not in self.view.desks
            case ev.DeskDefined():
                return self.view.desks.get(event.desk_id) == event
            case ev.SchedulePublished():
                return self.view.schedules.get(event.schedule_id) == event
            case ev.LocationDefined():
                return self.view.locations.get(event.location_id) == event
            case ev.ProductDefined():
                return self.view.products.get(event.product_id) == event
        return True

    async def before_batch(self, ctx: HandlerContext, deliveries: list[Delivery]) -> None:
        """Wait (briefly) until the view has the batch's changes, then lock their locations at once,
        in one order, as the allocator's batches do."""
        deadline = time.monotonic() + VIEW_WAIT_SECONDS
        while not all(self.view_has(d) for d in deliveries):
            if time.monotonic() > deadline:
                if self.view_position is not None:
                    raise ConnectionError("the catalogue view is behind the stranding sweep")  # retried
                break  # superseded by a later state of the entity: the sweep uses the view as it is
            await asyncio.sleep(0.05)
        locations = sorted({loc for d in deliveries for loc in locations_touched(self.view, d.event)})
        await store.lock_locations(ctx.conn, locations)

    async def on_change(self, ctx: HandlerContext, delivery: Delivery) -> None:
        change = delivery.event
        locations = locations_touched(self.view, change)
        if not locations:
            return
        await store.lock_locations(ctx.conn, locations)  # taken already in before_batch: a no-op then
        now = delivery.envelope.time
        rows = await store.active_reservations(ctx.conn, locations, now)
        found, resized = assess(self.view, [active_of(r) for r in rows], now)
        found = [s for s in found if concerns(change, s)]
        resized = [s for s in resized if concerns(change, s)]
        if not found and not resized:
            return
        choice: ev.StrandedChoice = getattr(change, "stranded", None) or ev.StrandedChoice()
        # Stranded ones first (moved away or freed), then the ones that keep their desk with the
        # product's new duration: an end that grows may need the time a stranded one leaves.
        for s in found:
            moved = choice.action != "cancel" and s.move_to is not None and await self._move(ctx, s)
            await (self._moved(ctx, delivery, s, choice) if moved else self._withdraw(ctx, delivery, s, choice, now))
        for s in resized:
            if await self._move(ctx, s):
                await self._moved(ctx, delivery, s, choice)
            else:
                await self._withdraw(ctx, delivery, Stranded(s.reservation, "overlaps", None, s.end), choice, now)
        await store.announce_changes(
            ctx.conn, RESERVATIONS_CHANNEL, sorted({s.reservation.location_id for s in [*found, *resized]})
        )

    async def _moved(self, ctx: HandlerContext, delivery: Delivery, s: Stranded, choice: ev.StrandedChoice) -> None:
        r = s.reservation
        assert s.move_to is not None
        await emit(
            ctx,
            ev.ReservationMoved(
                booking_id=r.booking_id,
                location_id=r.location_id,
                product_id=r.product_id,
                from_desk_id=r.desk_id,
                desk_id=s.move_to,
                start=r.start,
                end=s.end,
                change=describe(delivery.event),
                why=s.why,
                by=choice.by or "system",
                reason=choice.reason,
            ),
            r.location_id,
            delivery.envelope,
        )
        self.allocator.changed(ctx, r.location_id)
        log.info("stranded booking moved", booking_id=r.booking_id, why=s.why, to_desk=s.move_to)

    async def _withdraw(
        self, ctx: HandlerContext, delivery: Delivery, s: Stranded, choice: ev.StrandedChoice, now: datetime
    ) -> None:
        r = s.reservation
        book = SqlReservations(ctx.conn)
        gone = await book.delete(r.booking_id)
        if gone is None:
            return
        # Searched once the reservation is gone, so that the resident is offered what is free now.
        alternatives = await self.allocator.alternatives(ctx, book, r.location_id, r.product_id, r.start, now)
        await emit(
            ctx,
            ev.ReservationWithdrawn(
                booking_id=r.booking_id,
                location_id=r.location_id,
                product_id=r.product_id,
                desk_id=r.desk_id,
                start=r.start,
                end=r.end,
                change=describe(delivery.event),
                why=s.why,
                by=choice.by or "system",
                reason=choice.reason,
                alternatives=alternatives,
            ),
            r.location_id,
            delivery.envelope,
        )
        freed = store.Freed(gone.desk_id, gone.location_id, gone.product_id, gone.start, gone.end)
        if still_offered(self.view, gone.desk_id, gone.start, gone.end):
            await self.allocator.release(ctx, book, freed, now, "cancelled", delivery.envelope)
        else:  # the waiting list hears of no time the catalogue no longer offers
            self.allocator.changed(ctx, gone.location_id)
        log.info("stranded booking withdrawn", booking_id=r.booking_id, why=s.why)

    async def _move(self, ctx: HandlerContext, s: Stranded) -> bool:
        """Move under a savepoint: should the exclusion constraint refuse (another writer), it is
        withdrawn instead."""
        assert s.move_to is not None
        try:
            async with ctx.conn.transaction():
                await store.move_reservation(ctx.conn, s.reservation.booking_id, s.move_to, s.reservation.start, s.end)
        except asyncpg.ExclusionViolationError:
            log.warning("exclusion constraint refused a stranded move", booking_id=s.reservation.booking_id)
            return False
        return True


__all__ = ["CHANGES", "STRANDING_GROUP", "StrandingSweep", "dry_run", "stranded_out"]
