"""The allocator: the single writer of capacity for each location partition.

Requests, confirmations, cancellations and reschedules of one location arrive in order on one
partition; each is decided from the events alone (the request's own timestamp stands for
"now"), and the decision is written with the reservation in the consumer's transaction.

Holds: a request decided at `requested_at` first expires the holds of its location that ran out
by then (emitting `hold-expired` and `slot-released`), so a decision never depends on when the
timer last ran; the timer (`expire_holds`) frees the holds nobody asks about, on time.
Freed desk-times (cancel, expiry, the old time of a reschedule) are kept back for
`release_holdback` before they are offered again; `slot-released` says from when.

Each batch first locks its locations (`store.lock_locations`): the hold timer takes the same
lock, so one writer changes a location's reservations at a time. In the consumer's fast path
the batch decides over a `BatchLedger` (read once, written once per batch); in its careful path
(a record failed, or the ledger met another writer) over `SqlReservations`, a statement per step.
Both give the same decisions.
"""

from __future__ import annotations

import bisect
import heapq
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import asyncpg

from loket_calendar.adapters import store
from loket_calendar.adapters.reservations import (
    BatchDemand,
    BatchLedger,
    Reservation,
    ReservationBook,
    SqlReservations,
)
from loket_calendar.application.availability import AvailabilityCache
from loket_calendar.domain.schedule import (
    Booked,
    CatalogueView,
    Interval,
    Rejection,
    free_desk,
    local,
    local_day,
    subtract,
    window_ok,
)
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope
from loket_contracts.topics import CALENDAR
from loket_runtime import clock
from loket_runtime.consumer import Delivery, HandlerContext
from loket_runtime.logging import get_logger

SOURCE = "loket/calendar"
LEDGER = "calendar.ledger"
CHANGED = "calendar.changed-locations"
# Announced at commit with the location whose reservations changed: availability caches (in
# this process or in the API's) drop what they kept about it.
RESERVATIONS_CHANNEL = "loket_calendar_reservations"
log = get_logger(__name__)


@dataclass
class AllocatorPolicy:
    release_holdback: timedelta = timedelta(0)
    alternatives: int = 3
    alternative_days: int = 7


async def emit(ctx: HandlerContext, event: ev.Event, location_id: str, cause: Envelope | None) -> None:
    await emit_data(ctx, event.TYPE, event.model_dump(mode="json"), location_id, cause)


async def emit_data(
    ctx: HandlerContext, event_type: str, data: dict[str, object], location_id: str, cause: Envelope | None
) -> None:
    """Queue an event given as its JSON object (an event model's `model_dump(mode="json")`)."""
    envelope = Envelope(
        type=event_type,
        source=SOURCE,
        subject=data.get("booking_id"),  # type: ignore[arg-type]
        correlationid=(cause.correlationid or cause.subject) if cause else None,
        causationid=cause.id if cause else None,
        time=clock.now(),
        data=data,
    )
    await ctx.outbox.add(ctx.conn, CALENDAR.name, location_id, [envelope])


def ring_days(day: date, rings: int) -> list[date]:
    """`day`, then the days one, two, ... `rings - 1` away from it on either side."""
    days = [day]
    for ring in range(1, rings):
        days += [day - timedelta(days=ring), day + timedelta(days=ring)]
    return days


@dataclass(frozen=True)
class _Offered:
    """Alternatives given for one (location, product, start), and what they were computed from."""

    versions: tuple[int, ...]  # the catalogue's and every location's change counters
    earliest: datetime  # the booking window then
    last_day: date
    made_at: float
    slots: list[ev.Slot]
    first_start: datetime | None  # the earliest of `slots`

    def still_holds(self, versions: tuple[int, ...], earliest: datetime, last_day: date, fresh_since: float) -> bool:
        """Nothing changed anywhere, and the window only lost starts that were not chosen: the free
        starts now are a subset of those then, holding every chosen one, so the nearest are too."""
        return (
            versions == self.versions
            and self.made_at >= fresh_since  # changes by another instance, held-back slots coming back
            and last_day == self.last_day
            and earliest >= self.earliest
            and (self.first_start is None or self.first_start >= earliest)
        )


class Allocator:
    def __init__(self, view: CatalogueView, policy: AllocatorPolicy, cache: AvailabilityCache | None = None) -> None:
        self.view = view
        self.policy = policy
        # Free starts per location and day, shared with the public availability API in the same
        # process. Only the alternatives offered with a rejection read it, never a decision.
        self.cache = cache or AvailabilityCache(view)
        self._offered: dict[tuple[str, str, datetime], _Offered] = {}
        self._others: dict[tuple[str, str, int], list[str]] = {}
        self._rejections: dict[tuple[str, str, str, str], tuple[list[ev.Slot], dict[str, object]]] = {}

    def handlers(self) -> dict[str, object]:
        return {
            ev.BookingRequested.TYPE: self.on_requested,
            ev.BookingConfirmed.TYPE: self.on_confirmed,
            ev.BookingCancelled.TYPE: self.on_cancelled,
            ev.RescheduleRequested.TYPE: self.on_reschedule,
        }

    # --- per batch -------------------------------------------------------------------------

    def book(self, ctx: HandlerContext) -> ReservationBook:
        ledger: BatchLedger | None = ctx.batch_state.get(LEDGER)
        return ledger if ledger is not None else SqlReservations(ctx.conn)

    async def before_batch(self, ctx: HandlerContext, deliveries: list[Delivery]) -> None:
        """Lock the batch's locations; in the fast path, read what the batch will touch at once."""
        demand = self.demand(deliveries)
        await store.lock_locations(ctx.conn, sorted(demand.locations))
        if not ctx.careful:
            ledger = BatchLedger(ctx.conn)
            await ledger.load(demand)
            ctx.batch_state[LEDGER] = ledger

    async def before_commit(self, ctx: HandlerContext, done: list[Delivery]) -> None:
        ledger: BatchLedger | None = ctx.batch_state.get(LEDGER)
        if ledger is not None:
            await ledger.flush()
        await store.announce_changes(ctx.conn, RESERVATIONS_CHANNEL, sorted(ctx.batch_state.get(CHANGED, ())))

    def changed(self, ctx: HandlerContext, location_id: str) -> None:
        self.cache.invalidate(location_id)
        ctx.batch_state.setdefault(CHANGED, set()).add(location_id)

    def demand(self, deliveries: list[Delivery]) -> BatchDemand:
        demand = BatchDemand()
        for delivery in deliveries:
            event = delivery.event
            if isinstance(event, ev.BookingRequested):
                demand.decision_keys.add(event.booking_id)
                demand.booking_ids.add(event.booking_id)  # known absent after the load: no read per insert
                demand.span(
                    event.location_id, event.start, event.start + self.duration(event.product_id), event.requested_at
                )
            elif isinstance(event, ev.RescheduleRequested):
                demand.decision_keys.add(f"reschedule:{event.request_id}")
                demand.booking_ids.add(event.booking_id)
                demand.span(
                    event.location_id,
                    event.new_start,
                    event.new_start + self.duration(event.product_id),
                    event.requested_at,
                )
            elif isinstance(event, ev.BookingCancelled | ev.BookingConfirmed):
                demand.booking_ids.add(event.booking_id)
                demand.locations.add(event.location_id)
        return demand

    def duration(self, product_id: str) -> timedelta:
        product = self.view.products.get(product_id)
        return timedelta(minutes=product.duration_minutes if product else 0)

    # --- decisions -------------------------------------------------------------------------

    async def on_requested(self, ctx: HandlerContext, delivery: Delivery) -> None:
        req = delivery.event
        assert isinstance(req, ev.BookingRequested)
        book = self.book(ctx)
        if not await book.record_decision(req.booking_id):
            return  # decided before: a redelivery must not take a second desk
        decision = await self.place(
            ctx, req.booking_id, req.location_id, req.product_id, req.start, req.requested_at, req.language
        )
        if isinstance(decision, Rejection):
            alternatives = await self.alternatives(
                ctx, book, req.location_id, req.product_id, req.start, req.requested_at
            )
            data = self._rejected(req, decision.reason, alternatives) | {"booking_id": req.booking_id}
            await emit_data(ctx, ev.SlotRejected.TYPE, data, req.location_id, delivery.envelope)
            return
        desk_id, interval, hold_expires_at = decision
        await emit(
            ctx,
            ev.SlotReserved(
                booking_id=req.booking_id,
                location_id=req.location_id,
                product_id=req.product_id,
                desk_id=desk_id,
                start=interval.start,
                end=interval.end,
                hold_expires_at=hold_expires_at,
            ),
            req.location_id,
            delivery.envelope,
        )

    def _rejected(
        self, req: ev.BookingRequested, reason: ev.RejectionReason, alternatives: list[ev.Slot]
    ) -> dict[str, object]:
        """`slot-rejected` as JSON, booking id aside: a storm rejects thousands of requests for one
        start with the same alternatives (the same list while they hold), so it is made once."""
        key = (req.location_id, req.product_id, req.start.isoformat(), reason)  # as written: offsets differ
        kept = self._rejections.get(key)
        if kept is None or kept[0] is not alternatives:
            if len(self._rejections) > 10_000:
                self._rejections.clear()
            event = ev.SlotRejected(
                booking_id=req.booking_id,
                location_id=req.location_id,
                product_id=req.product_id,
                start=req.start,
                reason=reason,
                alternatives=alternatives,
            )
            kept = self._rejections[key] = (alternatives, event.model_dump(mode="json"))
        return kept[1]

    async def place(
        self,
        ctx: HandlerContext,
        booking_id: str,
        location_id: str,
        product_id: str,
        start: datetime,
        now: datetime,
        language: str,
        ignore_booking: str | None = None,
    ) -> tuple[str, Interval, datetime | None] | Rejection:
        book = self.book(ctx)
        product = self.view.products.get(product_id)
        duration = self.duration(product_id)
        generation = self.view.generation
        # Holds that ran out by the request's own time are expired first: the decision depends
        # only on the events, not on when the timer last ran.
        if ignore_booking is None and book.known_full(location_id, product_id, start, generation):
            # Found full earlier in the batch: unless an expiry frees something now, only the
            # booking window (which moves with `now`) can change the answer, and it is checked first.
            await self._expired(ctx, book, await book.expire_due(location_id, now))
            if product is not None and book.known_full(location_id, product_id, start, generation):
                if window_ok(product, start, now):
                    return Rejection("slot-taken")
        expired, taken = await book.expire_and_take(location_id, start, start + duration, now, ignore_booking)
        await self._expired(ctx, book, expired)
        refused = False
        while True:
            choice = free_desk(self.view, location_id, product_id, start, taken, now)
            if isinstance(choice, Rejection):
                if choice.reason == "slot-taken" and ignore_booking is None and not refused:
                    book.note_full(location_id, product_id, start, generation)
                return choice
            assert product is not None
            interval = Interval(start, start + duration)
            hold = now + timedelta(minutes=product.hold_minutes) if product.requires_confirmation else None
            if ignore_booking:
                if await book.move(ignore_booking, choice.desk_id, interval.start, interval.end):
                    break
            elif await book.insert(
                Reservation(
                    booking_id,
                    location_id,
                    choice.desk_id,
                    product_id,
                    interval.start,
                    interval.end,
                    "held" if hold else "confirmed",
                    hold,
                    language,
                )
            ):
                break
            # Another allocator (a rebalance) took this desk-time first: the constraint keeps the
            # desk single. Try the next desk as if this one had been taken all along.
            log.warning("exclusion constraint refused a reservation", booking_id=booking_id, desk=choice.desk_id)
            refused = True
            taken = [*taken, Booked(choice.desk_id, interval)]
        self.changed(ctx, location_id)
        return choice.desk_id, interval, hold

    async def alternatives(
        self,
        ctx: HandlerContext,
        book: ReservationBook,
        location_id: str,
        product_id: str,
        start: datetime,
        now: datetime,
    ) -> list[ev.Slot]:
        """The nearest free starts (before or after `start`, within `alternative_days`) at the same
        location, then at the other locations offering the product.

        A storm asks the same question thousands of times: the last answer per (location, product,
        start) is kept and given again while it is provably the same (see `_Offered.still_holds`)."""
        others = self._other_locations(location_id, product_id)
        product = self.view.products.get(product_id)
        if product is None:
            return []
        versions = self.cache.versions([location_id, *others])
        earliest = now + timedelta(hours=product.min_notice_hours)
        last_day = local_day(now) + timedelta(days=product.max_days_ahead)
        key = (location_id, product_id, start)
        kept = self._offered.get(key)
        offered_at = time.monotonic()
        if kept is not None and kept.still_holds(versions, earliest, last_day, offered_at - self.cache.ttl):
            return kept.slots
        await book.settle()  # the search reads free starts from the table: the batch's rows first
        slots = await self._search_alternatives(ctx.conn, location_id, others, product_id, start, now)
        if len(self._offered) > 10_000:
            self._offered.clear()
        first_start = min((slot.start for slot in slots), default=None)
        self._offered[key] = _Offered(versions, earliest, last_day, offered_at, slots, first_start)
        return slots

    def _other_locations(self, location_id: str, product_id: str) -> list[str]:
        """The other locations offering the product, by id (kept until the catalogue changes)."""
        key = (location_id, product_id, self.view.generation)
        found = self._others.get(key)
        if found is None:
            if len(self._others) > 1_000:
                self._others.clear()
            found = self._others[key] = sorted(
                loc.location_id
                for loc in self.view.locations.values()
                if product_id in loc.products and loc.location_id != location_id
            )
        return found

    async def _search_alternatives(
        self,
        conn: asyncpg.Connection,
        location_id: str,
        others: list[str],
        product_id: str,
        start: datetime,
        now: datetime,
    ) -> list[ev.Slot]:
        """Days are searched outwards from the requested one (the same day, then one day either
        side, ...) and the search stops once the slots found are nearer than any on the next days:
        the answer is the nearest starts of the whole span, ties broken by start, then location."""
        found: list[ev.Slot] = []
        day = local_day(start)
        span = self.policy.alternative_days
        wanted = self.policy.alternatives
        for group in ([location_id], others):
            if not group:
                continue
            # (distance in seconds, start, location, end): plain tuples, as a storm's rejections
            # look at thousands of free starts and keep three.
            candidates: list[tuple[float, datetime, str, datetime]] = []
            best = candidates
            # The requested location is often full for days around a popular start: its whole span
            # is asked for at once (one read for what the cache lacks), the others ring by ring.
            whole = (
                await self.cache.free(conn, product_id, group, ring_days(day, span), now) if len(group) == 1 else None
            )
            for ring in range(span):
                days = ring_days(day, ring + 1)[-2:] if ring else [day]
                free = (
                    {key: whole[key] for key in ((loc, d) for loc in group for d in days)}
                    if whole is not None
                    else await self.cache.free(conn, product_id, group, days, now)
                )
                for (loc, _), starts in free.items():
                    # Starts are sorted: the nearest `wanted` lie on either side of `start`.
                    at = bisect.bisect_left(starts, start, key=lambda s: s.interval.start)
                    candidates += (
                        (abs((s.interval.start - start).total_seconds()), s.interval.start, loc, s.interval.end)
                        for s in starts[max(0, at - wanted) : at + wanted]
                    )
                if len(candidates) >= wanted:
                    # Any slot of the next ring lies beyond these local midnights.
                    nearest_next = min(
                        (start - local(day - timedelta(days=ring), "00:00")).total_seconds(),
                        (local(day + timedelta(days=ring + 1), "00:00") - start).total_seconds(),
                    )
                    best = heapq.nsmallest(wanted, candidates)
                    if best[-1][0] < nearest_next:  # strictly: a tie on the next ring could win on start
                        break
            best = heapq.nsmallest(wanted, candidates)
            found += [ev.Slot(start=s, end=e, location_id=loc) for _, s, loc, e in best]
        return found

    async def on_confirmed(self, ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, ev.BookingConfirmed)
        if event.confirmed_by == "resident":
            await self.book(ctx).confirm(event.booking_id)

    async def on_cancelled(self, ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, ev.BookingCancelled)
        book = self.book(ctx)
        gone = await book.delete(event.booking_id)
        if gone is not None:
            freed = store.Freed(gone.desk_id, gone.location_id, gone.product_id, gone.start, gone.end)
            await self.release(ctx, book, freed, event.cancelled_at, "cancelled", delivery.envelope)

    async def release(
        self,
        ctx: HandlerContext,
        book: ReservationBook,
        freed: store.Freed,
        at: datetime,
        cause: str,
        envelope: Envelope | None,
    ) -> None:
        self.changed(ctx, freed.location_id)
        available_from = at + self.policy.release_holdback
        if self.policy.release_holdback > timedelta(0):
            await book.hold_back(freed.desk_id, freed.location_id, freed.start, freed.end, available_from)
        desk = self.view.desks.get(freed.desk_id)
        await emit(
            ctx,
            ev.SlotReleased(
                location_id=freed.location_id,
                desk_id=freed.desk_id,
                start=freed.start,
                end=freed.end,
                products=desk.products if desk else [freed.product_id],
                available_from=available_from,
                cause=cause,
            ),  # type: ignore[arg-type]
            freed.location_id,
            envelope,
        )

    async def on_reschedule(self, ctx: HandlerContext, delivery: Delivery) -> None:
        event = delivery.event
        assert isinstance(event, ev.RescheduleRequested)
        book = self.book(ctx)
        if not await book.record_decision(f"reschedule:{event.request_id}"):
            return
        await self._expired(ctx, book, await book.expire_due(event.location_id, event.requested_at))
        current = await book.get(event.booking_id)
        if current is None:
            await emit(
                ctx,
                ev.RescheduleRejected(
                    booking_id=event.booking_id,
                    request_id=event.request_id,
                    location_id=event.location_id,
                    new_start=event.new_start,
                    reason="slot-taken",
                ),
                event.location_id,
                delivery.envelope,
            )
            return
        old = store.Freed(current.desk_id, current.location_id, current.product_id, current.start, current.end)
        decision = await self.place(
            ctx,
            event.booking_id,
            event.location_id,
            event.product_id,
            event.new_start,
            event.requested_at,
            current.language,
            ignore_booking=event.booking_id,
        )
        if isinstance(decision, Rejection):
            alternatives = await self.alternatives(
                ctx, book, event.location_id, event.product_id, event.new_start, event.requested_at
            )
            await emit(
                ctx,
                ev.RescheduleRejected(
                    booking_id=event.booking_id,
                    request_id=event.request_id,
                    location_id=event.location_id,
                    new_start=event.new_start,
                    reason=decision.reason,
                    alternatives=alternatives,
                ),
                event.location_id,
                delivery.envelope,
            )
            return
        desk_id, interval, _ = decision
        moved_to = Interval(interval.start, interval.end)
        await emit(
            ctx,
            ev.RescheduleReserved(
                booking_id=event.booking_id,
                request_id=event.request_id,
                location_id=event.location_id,
                product_id=event.product_id,
                desk_id=desk_id,
                old_start=old.start,
                start=interval.start,
                end=interval.end,
            ),
            event.location_id,
            delivery.envelope,
        )
        # Only what the booking no longer covers is freed (a short move on one desk keeps part).
        kept = moved_to if desk_id == old.desk_id else Interval(old.end, old.end)
        for piece in subtract(Interval(old.start, old.end), kept):
            freed = store.Freed(old.desk_id, old.location_id, old.product_id, piece.start, piece.end)
            await self.release(ctx, book, freed, event.requested_at, "rescheduled", delivery.envelope)

    async def expire_holds(self, pool: asyncpg.Pool, now: datetime, grace: timedelta) -> int:
        """The timer: free every hold whose time ran out (plus a grace for a confirmation on its
        way), a location at a time under the location's lock, as the allocator takes it."""
        from loket_runtime.outbox import Outbox

        deadline = now - grace
        expired = 0
        for location_id in await store.locations_with_holds_due(pool, deadline):
            async with pool.acquire() as conn, conn.transaction():
                await store.lock_locations(conn, [location_id])
                book = SqlReservations(conn)
                rows = await book.expire_due(location_id, deadline)
                await self._expired(HandlerContext(conn=conn, outbox=Outbox()), book, rows)
                await store.announce_changes(conn, RESERVATIONS_CHANNEL, [location_id] if rows else [])
                expired += len(rows)
        # Held-back desk-times offered again long ago no longer matter to any decision.
        await store.prune_held_back(pool, now - timedelta(hours=1))
        return expired

    async def _expired(self, ctx: HandlerContext, book: ReservationBook, gone: list[Reservation]) -> None:
        for r in gone:
            freed = store.Freed(r.desk_id, r.location_id, r.product_id, r.start, r.end)
            await emit(
                ctx,
                ev.HoldExpired(
                    booking_id=r.booking_id, location_id=r.location_id, desk_id=r.desk_id, start=r.start, end=r.end
                ),
                r.location_id,
                None,
            )
            assert r.hold_expires_at is not None
            await self.release(ctx, book, freed, r.hold_expires_at, "expired", None)


__all__ = ["Allocator", "AllocatorPolicy", "Booked"]
