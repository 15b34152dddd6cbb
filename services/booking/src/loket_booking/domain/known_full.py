"""Starts the allocator has declared full, so that the next request for one is refused at once.

In a release storm nine requests in ten ask for a start that is already full. The allocator (the
single writer of a location's capacity) says so in a `slot-rejected` with reason `slot-taken` and
the nearest free alternatives. The booking service remembers that answer and gives it to the next
resident who asks for the same (location, product, start): a `409` with the same alternatives,
without a booking, a transaction, a Kafka round trip or an e-mail. (DESIGN.md, "Only the allocator
confirms": other services may refuse early what the allocator already declared full, never confirm.)

A mark is dropped, so that requests go to the allocator again, when:
- the allocator frees a desk-time of that location for that product (`slot-released`: a
  cancellation, an expired hold, a reschedule, a catalogue change); the hold-back before the place
  is offered again is the allocator's to apply;
- the catalogue changes (a new desk or longer hours may make room): marks carry the catalogue's
  generation they were made under;
- a desk-time the allocator held back after a release is offered again (`slot-released` says from
  when: `available_from`), for the marks made before then;
- it is older than `ttl`: an instance that stops reading a location's partition (a rebalance gave
  it to another instance) would otherwise never see the release.

The alternatives given with a refusal are the allocator's, less those taken since: a reservation
at the location (`slot-reserved`, `reschedule-reserved`) that overlaps an alternative removes it.
When every alternative a mark had is gone, the next request goes to the allocator again, for fresh
ones.

Forgetting a mark is always safe: the request then goes to the allocator, which decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loket_contracts import events as ev

StartKey = tuple[str, str, datetime]  # (location, product, start as an aware instant)


@dataclass
class FullMark:
    declared_at: datetime
    generation: int  # the catalogue generation the allocator decided under (as this instance saw it)
    alternatives: list[ev.Slot]
    had_alternatives: bool  # the allocator offered some (and all may since have been taken)


@dataclass
class KnownFullStarts:
    """What this instance has read of the allocator's `slot-taken` rejections and releases."""

    ttl: timedelta  # how long a mark is trusted (the booking service's `known_full_seconds`)
    marks: dict[StartKey, FullMark] = field(default_factory=dict)
    # (location, product) -> when a desk-time released with a hold-back is offered again
    reopens: dict[tuple[str, str], datetime] = field(default_factory=dict)

    def on_rejected(self, rejected: ev.SlotRejected, decided_at: datetime, generation: int) -> None:
        """Remember a start declared full at `decided_at` (the decision's event time). Only
        `slot-taken`: the other reasons are rules the booking service checks itself before asking."""
        if rejected.reason != "slot-taken":
            return
        key = (rejected.location_id, rejected.product_id, rejected.start)
        alternatives = list(rejected.alternatives)
        self.marks[key] = FullMark(decided_at, generation, alternatives, bool(alternatives))

    def on_released(self, released: ev.SlotReleased) -> None:
        """A desk-time of the location is free again: every mark there for one of its products goes,
        and the ones made until it is offered (`available_from`, after a hold-back) go then."""
        products = set(released.products)
        for key in [k for k in self.marks if k[0] == released.location_id and k[1] in products]:
            del self.marks[key]
        for product in products:
            key = (released.location_id, product)
            self.reopens[key] = max(released.available_from, self.reopens.get(key, released.available_from))

    def on_reserved(self, location: str, start: datetime, end: datetime) -> None:
        """A desk-time of the location is taken (a booking or a reschedule): the alternatives it
        overlaps are not offered any more."""
        for key, mark in self.marks.items():
            if key[0] == location:
                mark.alternatives = [a for a in mark.alternatives if not (a.start < end and start < a.end)]

    def refusal(
        self, location: str, product: str, start: datetime, now: datetime, generation: int
    ) -> list[ev.Slot] | None:
        """The alternatives to answer with when the start is known to be full, else None (ask the
        allocator). Alternatives themselves known to be full are left out."""
        mark = self.marks.get((location, product, start))
        if mark is None:
            return None
        reopens = self.reopens.get((location, product))
        reopened = reopens is not None and mark.declared_at < reopens <= now
        if mark.generation != generation or now - mark.declared_at >= self.ttl or reopened:
            del self.marks[(location, product, start)]
            return None
        alternatives = [a for a in mark.alternatives if not self._full(a, product)]
        if mark.had_alternatives and not alternatives:
            return None  # every alternative offered has been taken since: the allocator has fresh ones
        return alternatives

    def _full(self, slot: ev.Slot, product: str) -> bool:
        return (slot.location_id, product, slot.start) in self.marks
