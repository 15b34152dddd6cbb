"""What the counter's agenda shows for a booking, event by event: which fields each event sets, which
status wins (the furthest along, whatever order the events arrive in), which value of a field wins
(the latest event's), when a booking gets a row at all, and on which local day it is listed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loket_calendar.domain.agenda import (
    STATUS_ORDER,
    VISIBLE,
    AgendaFold,
    changes_for,
    day_of,
    days_touched,
    fold,
    instant,
    merge,
    new_state,
    row_of,
    version,
)
from loket_contracts import events as ev
from loket_runtime.catalogue import BRUSSELS

START = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)  # 10:00 in Ghent
END = START + timedelta(minutes=20)
T0 = datetime(2027, 1, 4, 8, 0, tzinfo=UTC)

REQUESTED = ev.BookingRequested(
    booking_id="b1",
    location_id="loc",
    product_id="card",
    start=START,
    end=END,
    person=ev.PersonName(given_name="Ana", family_name="Peeters"),
    requested_at=T0,
)


def reserved(hold: datetime | None = None, desk: str = "d1") -> ev.SlotReserved:
    return ev.SlotReserved(
        booking_id="b1", location_id="loc", product_id="card", desk_id=desk, start=START, end=END, hold_expires_at=hold
    )


def cancelled(desk: str | None) -> ev.BookingCancelled:
    return ev.BookingCancelled(
        booking_id="b1",
        location_id="loc",
        product_id="card",
        desk_id=desk,
        start=START,
        end=END,
        cancelled_by="resident",
        reason="-",
        cancelled_at=T0,
    )


def state_of(*events: tuple[datetime, str, ev.Event]) -> dict:  # type: ignore[type-arg]
    changes = [(version(t, i), changes_for(e)) for t, i, e in events]
    return fold([(v, c) for v, c in changes if c is not None])


# --- instants and versions -----------------------------------------------------------------------


def test_instants_are_written_in_utc_with_microseconds_so_they_sort_as_text() -> None:
    ghent = datetime(2027, 1, 11, 10, 0, tzinfo=BRUSSELS)
    assert instant(ghent) == "2027-01-11T09:00:00.000000+00:00"
    assert instant(START + timedelta(microseconds=5)) == "2027-01-11T09:00:00.000005+00:00"
    assert version(START, "e7") == "2027-01-11T09:00:00.000000+00:00|e7"
    assert version(START, "e2") < version(START + timedelta(microseconds=1), "e1")  # time first, then the id


# --- the changes of each event ---------------------------------------------------------------------


def test_a_request_sets_who_where_and_when() -> None:
    assert changes_for(REQUESTED) == {
        "location_id": "loc",
        "product_id": "card",
        "start_at": instant(START),
        "end_at": instant(END),
        "status": "requested",
        "given_name": "Ana",
        "family_name": "Peeters",
    }


def test_a_reservation_is_held_while_it_awaits_confirmation_and_confirmed_otherwise() -> None:
    assert changes_for(reserved(hold=T0 + timedelta(minutes=30)))["status"] == "held"  # type: ignore[index]
    confirmed = changes_for(reserved())
    assert confirmed is not None and confirmed["status"] == "confirmed" and confirmed["desk_id"] == "d1"


def test_a_cancellation_keeps_the_desk_unless_it_never_had_one() -> None:
    with_desk = changes_for(cancelled("d2"))
    assert with_desk is not None and with_desk["desk_id"] == "d2" and with_desk["status"] == "cancelled"
    without = changes_for(cancelled(None))
    assert without is not None and "desk_id" not in without  # the desk it was shown at stays shown


def test_each_kind_of_event_sets_its_status() -> None:
    expired = ev.HoldExpired(booking_id="b1", location_id="loc", desk_id="d1", start=START, end=END)
    resident_expired = ev.BookingExpired(booking_id="b1", location_id="loc", product_id="card", start=START)
    rejected = ev.SlotRejected(booking_id="b1", location_id="loc", product_id="card", start=START, reason="slot-taken")
    confirmed = ev.BookingConfirmed(
        booking_id="b1",
        location_id="loc",
        product_id="card",
        desk_id="d3",
        start=START,
        end=END,
        confirmed_by="resident",
    )
    attended = ev.AttendanceRecorded(booking_id="b1", location_id="loc", start=START, outcome="no_show", by="s")
    statuses = [changes_for(e)["status"] for e in (expired, resident_expired, rejected, confirmed, attended)]  # type: ignore[index]
    assert statuses == ["expired", "expired", "rejected", "confirmed", "no_show"]
    assert changes_for(attended) == {"location_id": "loc", "status": "no_show"}  # the time is not its to change


def test_a_move_changes_the_time_and_desk_but_not_the_status() -> None:
    moved = ev.RescheduleReserved(
        booking_id="b1",
        request_id="r1",
        location_id="loc",
        product_id="card",
        desk_id="d2",
        old_start=START,
        start=START + timedelta(days=1),
        end=END + timedelta(days=1),
    )
    changes = changes_for(moved)
    assert changes is not None and "status" not in changes
    assert (changes["start_at"], changes["desk_id"]) == (instant(START + timedelta(days=1)), "d2")


def test_events_the_agenda_does_not_show_change_nothing() -> None:
    asked = ev.RescheduleRequested(
        booking_id="b1",
        request_id="r1",
        location_id="loc",
        product_id="card",
        old_start=START,
        new_start=START + timedelta(days=1),
        new_end=END + timedelta(days=1),
        requested_at=T0,
    )
    assert changes_for(asked) is None


# --- merging ----------------------------------------------------------------------------------------


def test_the_status_furthest_along_wins_whatever_the_order() -> None:
    assert STATUS_ORDER.index("confirmed") < STATUS_ORDER.index("cancelled")
    late_request = state_of((T0 + timedelta(hours=1), "e1", reserved()), (T0, "e0", REQUESTED))
    assert late_request["status"] == "confirmed"  # a request that arrives after its confirmation does not undo it
    for order in ([reserved(), cancelled("d1")], [cancelled("d1"), reserved()]):
        state = state_of(*((T0 + timedelta(minutes=n), f"e{n}", e) for n, e in enumerate(order)))
        assert state["status"] == "cancelled"


def test_the_latest_event_sets_a_field_even_when_it_arrives_first() -> None:
    first, later = (T0, "e1", reserved(desk="d1")), (T0 + timedelta(minutes=5), "e2", reserved(desk="d2"))
    assert state_of(first, later)["f"]["desk_id"][0] == "d2"
    assert state_of(later, first)["f"]["desk_id"][0] == "d2"
    # At the same instant, the event id decides (ids are time-ordered).
    a, b = (T0, "e1", reserved(desk="d1")), (T0, "e2", reserved(desk="d2"))
    assert state_of(b, a)["f"]["desk_id"][0] == "d2" and state_of(a, b)["f"]["desk_id"][0] == "d2"


def test_the_row_is_updated_at_the_time_of_the_latest_event() -> None:
    state = state_of((T0 + timedelta(hours=2), "e2", reserved()), (T0, "e1", REQUESTED))
    assert state["at"] == instant(T0 + timedelta(hours=2))


def test_merging_leaves_the_state_it_started_from_as_it_was() -> None:
    before = merge(new_state(), changes_for(REQUESTED), version(T0, "e1"))  # type: ignore[arg-type]
    copy = {"status": before["status"], "at": before["at"], "f": dict(before["f"])}
    after = merge(before, changes_for(reserved(desk="d9")), version(T0 + timedelta(hours=1), "e2"))  # type: ignore[arg-type]
    assert before == copy and after["f"]["desk_id"][0] == "d9" and after["status"] == "confirmed"
    assert fold([], None) == {} and merge({}, {"status": "held"}, version(T0, "e"))["status"] == "held"


# --- the row -------------------------------------------------------------------------------------------


def test_a_booking_gets_a_row_once_an_event_says_where_and_when() -> None:
    attended_first = state_of(
        (T0, "e1", ev.AttendanceRecorded(booking_id="b1", location_id="loc", start=START, outcome="checked_in", by="s"))
    )
    assert row_of(attended_first) is None  # no product and no start known yet
    assert row_of(new_state()) is None
    row = row_of(state_of((T0, "e1", REQUESTED)))
    assert row == {
        "location_id": "loc",
        "product_id": "card",
        "desk_id": None,
        "start_at": START,
        "end_at": END,
        "given_name": "Ana",
        "family_name": "Peeters",
        "day": date(2027, 1, 11),
        "status": "requested",
        "updated_at": T0,
    }


def test_a_row_without_an_end_ends_at_its_start() -> None:
    rejected = ev.SlotRejected(booking_id="b1", location_id="loc", product_id="card", start=START, reason="closed")
    row = row_of(state_of((T0, "e1", rejected)))
    assert row is not None and row["end_at"] == START and row["status"] == "rejected"


def test_a_row_without_a_status_yet_shows_requested() -> None:
    state = {
        "status": None,
        "at": instant(T0),
        "f": {k: [v, "x"] for k, v in changes_for(REQUESTED).items() if k != "status"},
    }  # type: ignore[union-attr]
    row = row_of(state)
    assert row is not None and row["status"] == "requested"


@pytest.mark.parametrize(
    ("start", "day"),
    [
        (datetime(2027, 1, 11, 22, 30, tzinfo=UTC), date(2027, 1, 11)),  # 23:30 in Ghent
        (datetime(2027, 1, 11, 23, 30, tzinfo=UTC), date(2027, 1, 12)),  # 00:30 in Ghent, the next day
        (datetime(2027, 7, 11, 22, 30, tzinfo=UTC), date(2027, 7, 12)),  # 00:30 in summer time
    ],
)
def test_a_booking_is_listed_on_its_day_in_ghent(start: datetime, day: date) -> None:
    assert day_of(instant(start)) == day
    assert days_touched({"location_id": "loc", "start_at": instant(start)}) == ("loc", day)


def test_only_a_change_with_a_place_and_a_time_lists_a_booking_on_a_day() -> None:
    assert days_touched({"location_id": "loc"}) is None
    assert days_touched({"start_at": instant(START)}) is None


def test_the_agenda_shows_bookings_once_a_desk_time_is_theirs() -> None:
    assert "requested" not in VISIBLE and "rejected" not in VISIBLE and "expired" not in VISIBLE
    assert {"held", "confirmed", "cancelled", "no_show"} <= set(VISIBLE)


# --- the rebuild's fold -----------------------------------------------------------------------------------


def test_a_rebuild_folds_each_event_once_and_remembers_the_days_it_touched() -> None:
    folded = AgendaFold()
    assert folded.add("b1", "e1", T0, changes_for(REQUESTED))  # type: ignore[arg-type]
    assert not folded.add("b1", "e1", T0, changes_for(REQUESTED))  # the relay sent it twice
    moved = ev.RescheduleReserved(
        booking_id="b1",
        request_id="r1",
        location_id="loc",
        product_id="card",
        desk_id="d2",
        old_start=START,
        start=START + timedelta(days=1),
        end=END + timedelta(days=1),
    )
    assert folded.add("b1", "e2", T0 + timedelta(hours=1), changes_for(moved))  # type: ignore[arg-type]
    attended = {"location_id": "loc", "status": "checked_in"}
    assert folded.add("b1", "e3", T0 + timedelta(hours=2), attended)
    # Both the old and the new day must be rewritten; the attendance names no day.
    assert folded.days == {("b1", "loc", date(2027, 1, 11)), ("b1", "loc", date(2027, 1, 12))}
    row = row_of(folded.states["b1"])
    assert row is not None and row["desk_id"] == "d2" and row["status"] == "checked_in"
    assert row["updated_at"] == T0 + timedelta(hours=2)
