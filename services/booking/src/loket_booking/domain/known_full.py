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
- it is older than `ttl`: an instance that stops reading a location's partition (a rebalance gave
  it to another instance) would otherwise never see the release.

Forgetting a mark is always safe: the request then goes to the allocator, which decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from loket_contracts import events as ev

StartKey = tuple[str, str, datetime]  # (location, product, start as an aware instant)


@dataclass(frozen=True)
class FullMark:
    declared_at: datetime
    generation: int  # the catalogue generation the allocator decided under (as this instance saw it)
    alternatives: tuple[ev.Slot, ...]


@dataclass
class KnownFullStarts:
    """What this instance has read of the allocator's `slot-taken` rejections and releases."""

    ttl: timedelta  # how long a mark is trusted (the booking service's `known_full_seconds`)
    marks: dict[StartKey, FullMark] = field(default_factory=dict)

    def on_rejected(self, rejected: ev.SlotRejected, decided_at: datetime, generation: int) -> None:
        """Remember a start declared full at `decided_at` (the decision's event time). Only
        `slot-taken`: the other reasons are rules the booking service checks itself before asking."""
        if rejected.reason != "slot-taken":
            return
        key = (rejected.location_id, rejected.product_id, rejected.start)
        self.marks[key] = FullMark(decided_at, generation, tuple(rejected.alternatives))

    def on_released(self, released: ev.SlotReleased) -> None:
        """A desk-time of the location is free again: every mark there for one of its products goes."""
        products = set(released.products)
        for key in [k for k in self.marks if k[0] == released.location_id and k[1] in products]:
            del self.marks[key]

    def refusal(
        self, location: str, product: str, start: datetime, now: datetime, generation: int
    ) -> list[ev.Slot] | None:
        """The alternatives to answer with when the start is known to be full, else None (ask the
        allocator). Alternatives themselves known to be full are left out."""
        mark = self.marks.get((location, product, start))
        if mark is None:
            return None
        if mark.generation != generation or now - mark.declared_at >= self.ttl:
            del self.marks[(location, product, start)]
            return None
        return [a for a in mark.alternatives if not self._full(a, product)]

    def _full(self, slot: ev.Slot, product: str) -> bool:
        return (slot.location_id, product, slot.start) in self.marks
