"""The agenda of a counter as a pure fold over events, independent of the order they arrive in.

The agenda reads two topics (`loket.bookings` and `loket.calendar`) that Kafka does not order
against each other, and a rebuild reads them in yet another interleaving. So every event is
turned into a small set of changes, and the changes are merged so that the result depends only
on *which* events were seen, never on their order:

- the status is the maximum seen in one total order (`STATUS_ORDER`): requested < held <
  confirmed < checked_in < the final states (rejected < expired < cancelled < no_show < completed);
- every other field is last-writer-wins by the event's version (event time, then event id; ids
  are UUIDv7, time-ordered), so a reschedule (a later event) moves the times and the desk.

`fold(changes)` of the same changes in any order gives the same row, which is what makes the
agenda rebuildable from the log and askable "as of" any past instant (fold the changes up to it).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from loket_contracts import events as ev
from loket_runtime.catalogue import local_day
from loket_runtime.memo import memoized

STATUS_ORDER = (
    "requested",
    "held",
    "confirmed",
    "checked_in",
    "rejected",
    "expired",
    "cancelled",
    "no_show",
    "completed",
)
STATUS_RANK = {status: rank for rank, status in enumerate(STATUS_ORDER)}
VISIBLE = ("held", "confirmed", "checked_in", "completed", "no_show", "cancelled")
FIELDS = ("location_id", "product_id", "desk_id", "start_at", "end_at", "given_name", "family_name")

State = dict[str, Any]


def instant(value: datetime) -> str:
    """An instant as a fixed-width UTC ISO string (so that strings sort like instants)."""
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def version(event_time: datetime, event_id: str) -> str:
    return f"{instant(event_time)}|{event_id}"


def changes_for(event: ev.Event) -> dict[str, Any] | None:
    """The agenda fields an event sets (JSON-ready values), or None when it does not touch the agenda."""
    fields: dict[str, Any]
    match event:
        case ev.BookingRequested():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "status": "requested",
                "given_name": event.person.given_name,
                "family_name": event.person.family_name,
            }
        case ev.SlotReserved():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "desk_id": event.desk_id,
                "status": "held" if event.hold_expires_at else "confirmed",
            }
        case ev.BookingConfirmed():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "desk_id": event.desk_id,
                "status": "confirmed",
            }
        case ev.SlotRejected() | ev.BookingRejected():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "status": "rejected",
            }
        case ev.BookingCancelled():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "status": "cancelled",
            }
            if event.desk_id is not None:
                fields["desk_id"] = event.desk_id
        case ev.HoldExpired():
            fields = {
                "location_id": event.location_id,
                "desk_id": event.desk_id,
                "start_at": event.start,
                "end_at": event.end,
                "status": "expired",
            }
        case ev.BookingExpired():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "status": "expired",
            }
        case ev.RescheduleReserved() | ev.BookingRescheduled() | ev.ReservationMoved():
            fields = {
                "location_id": event.location_id,
                "product_id": event.product_id,
                "start_at": event.start,
                "end_at": event.end,
                "desk_id": event.desk_id,
            }
        case ev.AttendanceRecorded():
            fields = {"location_id": event.location_id, "status": event.outcome}
        case _:
            return None
    return {k: _slot_instant(v) if isinstance(v, datetime) else v for k, v in fields.items()}


# `instant`, cached: the starts and ends of events repeat (bookings share a location's grid).
_slot_instant = memoized(instant)


def new_state() -> State:
    return {"status": None, "at": None, "f": {}}


def merge(state: State, changes: dict[str, Any], event_version: str) -> State:
    """The state after one more event's changes (commutative, associative and idempotent)."""
    merged: State = {"status": state.get("status"), "at": state.get("at"), "f": dict(state.get("f", {}))}
    merge_into(merged, changes, event_version)
    return merged


def merge_into(state: State, changes: dict[str, Any], event_version: str) -> None:
    """`merge` in place, for a fold that owns its state: a rebuild merges every event of the log,
    and copying the state for each one would cost more than the merge."""
    status = changes.get("status")
    if status is not None and (state["status"] is None or STATUS_RANK[status] > STATUS_RANK[state["status"]]):
        state["status"] = status
    at = event_version.partition("|")[0]
    if state["at"] is None or at > state["at"]:
        state["at"] = at
    fields = state["f"]
    for key in changes.keys() - {"status"}:
        value = changes[key]
        current = fields.get(key)
        if current is None or event_version > current[1]:
            fields[key] = [value, event_version]  # replaced, never changed: `merge` shares these lists


def fold(changes: Iterable[tuple[str, dict[str, Any]]], state: State | None = None) -> State:
    """Merge (version, changes) pairs into `state` (or into nothing)."""
    result: State = state or {}
    for event_version, change in changes:
        result = merge(result, change, event_version)
    return result


def row_of(state: State) -> dict[str, Any] | None:
    """The agenda row a state shows, or None while no event has said where and when."""
    f = state.get("f", {})
    if not all(k in f for k in ("location_id", "product_id", "start_at")):
        return None
    start_at = datetime.fromisoformat(f["start_at"][0])
    end_at = datetime.fromisoformat(f["end_at"][0]) if "end_at" in f else start_at
    row = {k: (f[k][0] if k in f else None) for k in FIELDS}
    row |= {
        "start_at": start_at,
        "end_at": end_at,
        "day": day_of(f["start_at"][0]),
        "status": state.get("status") or "requested",
        "updated_at": datetime.fromisoformat(state["at"]),
    }
    return row


def days_touched(changes: dict[str, Any]) -> tuple[str, date] | None:
    """The (location, local day) a change places its booking on, if it says so."""
    if "location_id" in changes and "start_at" in changes:
        return changes["location_id"], day_of(changes["start_at"])
    return None


def _local_day_of(start_at: str) -> date:
    return local_day(datetime.fromisoformat(start_at))


# The local day of an instant (as `instant` writes it). Cached: bookings share their starts, and a
# rebuild asks for every event's.
day_of = memoized(_local_day_of)


class AgendaFold:
    """Every booking's state folded at once, each event once (by id): what a rebuild keeps in memory
    before it writes each booking's row once."""

    def __init__(self) -> None:
        self.states: dict[str, State] = {}
        self.days: set[tuple[str, str, date]] = set()  # (booking, location, local day)
        self._seen: set[str] = set()

    def add(self, booking_id: str, event_id: str, event_time: datetime, changes: dict[str, Any]) -> bool:
        """Fold one event's changes; False for an event folded before (the relay may send one twice)."""
        if event_id in self._seen:
            return False
        self._seen.add(event_id)
        state = self.states.get(booking_id)
        if state is None:
            state = self.states[booking_id] = new_state()
        merge_into(state, changes, version(event_time, event_id))
        touched = days_touched(changes)
        if touched is not None:
            self.days.add((booking_id, *touched))
        return True
