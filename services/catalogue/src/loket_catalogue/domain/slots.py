"""Pure slot counting for the what-if preview of opening hours.

A *slot* is a start time at which a resident could book a product at a location: the start lies
on the location's slot grid (its wall-clock minute of the day is a multiple of
`slot_grid_minutes`) and at least one desk serving the product is open for the product's whole
duration from there. A closed day (holiday, local closing day, ad-hoc closure) has no slot.
Bookings are not considered: the catalogue counts what the hours offer, not what is still free.

Opening hours are wall-clock times in Europe/Brussels; a desk is open from the instant its block
starts to the instant it ends, so time is measured in real minutes. On an ordinary day that is the
same as wall-clock arithmetic. On the night of a DST change it is not: a block 01:00-04:00 lasts
two real hours on the last Sunday of March (02:00-03:00 does not exist) and four on the last
Sunday of October (02:00-03:00 happens twice, and both are real starts).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from loket_contracts.events import TimeBlock

BRUSSELS = ZoneInfo("Europe/Brussels")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY = date(1970, 1, 1)


def wall_clock(day: date, hhmm: str) -> datetime:
    """A Brussels wall-clock time on `day` as an aware datetime ("24:00" = next midnight).

    A time skipped by the spring-forward gap resolves with the offset before the change (PEP 495,
    fold=0); a repeated time in October resolves to its first occurrence."""
    if hhmm == "24:00":
        return datetime.combine(day + timedelta(days=1), time(0), BRUSSELS)
    hours, mins = hhmm.split(":")
    return datetime.combine(day, time(int(hours), int(mins)), BRUSSELS)


def _utc_minutes(instant: datetime) -> int:
    return int((instant - _EPOCH).total_seconds()) // 60


def _offset_minutes(utc_minutes: int) -> int:
    offset = (_EPOCH + timedelta(minutes=utc_minutes)).astimezone(BRUSSELS).utcoffset()
    assert offset is not None
    return int(offset.total_seconds()) // 60


def block_starts(day: date, block: TimeBlock, duration_minutes: int, grid_minutes: int) -> Iterable[int]:
    """Start instants (UTC minutes since the epoch) on the grid at which `block` on `day` has room
    for `duration_minutes`."""
    opens = _utc_minutes(wall_clock(day, block.start))
    closes = _utc_minutes(wall_clock(day, block.end))
    last = closes - duration_minutes
    if last < opens:
        return range(0)
    local_midnight = (day - _EPOCH_DAY).days * 1440  # in "local minutes since the epoch"
    offset = _offset_minutes(opens)
    if offset == _offset_minutes(last):
        # No offset change inside (at most one change a day): an arithmetic progression.
        first_local = opens + offset - local_midnight
        first_local += (-first_local) % grid_minutes
        return range(local_midnight + first_local - offset, last + 1, grid_minutes)
    # The block spans a DST change: test each real minute's wall-clock time against the grid.
    return [t for t in range(opens, last + 1) if (t + _offset_minutes(t) - local_midnight) % grid_minutes == 0]


def bookable_starts(
    day: date, duration_minutes: int, grid_minutes: int, desks_blocks: Iterable[Sequence[TimeBlock]]
) -> set[int]:
    """The union over desks (each given by its blocks of `day`) of the grid starts with room."""
    starts: set[int] = set()
    for blocks in desks_blocks:
        for block in blocks:
            starts.update(block_starts(day, block, duration_minutes, grid_minutes))
    return starts


def as_instants(starts: Iterable[int]) -> list[datetime]:
    """UTC minutes as aware datetimes in Brussels time, sorted (for display and tests)."""
    return [(_EPOCH + timedelta(minutes=t)).astimezone(BRUSSELS) for t in sorted(starts)]


@dataclass(frozen=True)
class DeskHours:
    """One version of a desk's weekly hours: in force from `effective_from` until a later version."""

    desk_id: str
    effective_from: date
    weekly: Mapping[str, Sequence[TimeBlock]]


def hours_on(versions: Sequence[DeskHours], day: date) -> Sequence[TimeBlock]:
    """The blocks of `day` from the version in force that day (versions of one desk)."""
    in_force = [v for v in versions if v.effective_from <= day]
    if not in_force:
        return ()
    return max(in_force, key=lambda v: v.effective_from).weekly.get(str(day.isoweekday()), ())


def with_proposal(schedules: Sequence[DeskHours], proposal: Sequence[DeskHours]) -> list[DeskHours]:
    """The schedules as they would be after publishing `proposal` (same desk and date = replaced)."""
    replaced = {(p.desk_id, p.effective_from) for p in proposal}
    return [s for s in schedules if (s.desk_id, s.effective_from) not in replaced] + list(proposal)


@dataclass(frozen=True)
class ProductSpec:
    product_id: str
    duration_minutes: int
    desk_ids: tuple[str, ...]  # desks of the location that serve it


@dataclass(frozen=True)
class PreviewCount:
    product_id: str
    day: date
    current: int
    proposed: int


def _days(first: date, last: date) -> Iterable[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


def preview_counts(
    products: Sequence[ProductSpec],
    grid_minutes: int,
    schedules: Sequence[DeskHours],
    proposal: Sequence[DeskHours],
    is_closed: Callable[[date], bool],
    first: date,
    last: date,
) -> list[PreviewCount]:
    """Slots per product and day in [first, last] with today's schedules and with the proposal."""
    current_by_desk: dict[str, list[DeskHours]] = {}
    for s in schedules:
        current_by_desk.setdefault(s.desk_id, []).append(s)
    proposed_by_desk: dict[str, list[DeskHours]] = {}
    for s in with_proposal(schedules, proposal):
        proposed_by_desk.setdefault(s.desk_id, []).append(s)

    counts: list[PreviewCount] = []
    for day in _days(first, last):
        closed = is_closed(day)
        for product in products:
            if closed:
                counts.append(PreviewCount(product.product_id, day, 0, 0))
                continue
            current = bookable_starts(
                day,
                product.duration_minutes,
                grid_minutes,
                (hours_on(current_by_desk.get(d, []), day) for d in product.desk_ids),
            )
            proposed = bookable_starts(
                day,
                product.duration_minutes,
                grid_minutes,
                (hours_on(proposed_by_desk.get(d, []), day) for d in product.desk_ids),
            )
            counts.append(PreviewCount(product.product_id, day, len(current), len(proposed)))
    return counts
