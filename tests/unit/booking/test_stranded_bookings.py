"""A booking a catalogue change stranded (issue 17): a move to another desk and a withdrawal are in its
history with who and why; a withdrawal cancels it by the system with the reason in its language."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from loket_booking.domain.booking import STRANDED_REASON, Booking
from loket_contracts import events as ev

START = datetime(2027, 1, 11, 17, 0, tzinfo=UTC)
END = START + timedelta(minutes=20)
NOW = datetime(2027, 1, 5, 9, 0, tzinfo=UTC)
REASON = ev.Localized(nl="avondopening geschrapt", en="no more evenings", fr="plus de soirées")


def confirmed(language: str = "fr") -> Booking:
    b = Booking("b1")
    b.apply(
        ev.BookingRequested(
            booking_id="b1",
            location_id="loc",
            product_id="card",
            start=START,
            end=END,
            person=ev.PersonName(given_name="A", family_name="B"),
            language=language,  # type: ignore[arg-type]
            requested_at=NOW,
        ),
        NOW,
    )
    b.apply(
        ev.BookingConfirmed(
            booking_id="b1",
            location_id="loc",
            product_id="card",
            desk_id="d1",
            start=START,
            end=END,
            confirmed_by="calendar",
        ),
        NOW,
    )
    return b


def moved(desk: str = "d2", end: datetime = END) -> ev.ReservationMoved:
    return ev.ReservationMoved(
        booking_id="b1",
        location_id="loc",
        product_id="card",
        from_desk_id="d1",
        desk_id=desk,
        start=START,
        end=end,
        change="desk-removed desk:d1",
        why="desk-removed",
        by="admin",
        reason=REASON,
    )


def withdrawn(reason: ev.Localized | None = REASON) -> ev.ReservationWithdrawn:
    return ev.ReservationWithdrawn(
        booking_id="b1",
        location_id="loc",
        product_id="card",
        desk_id="d1",
        start=START,
        end=END,
        change="schedule-published schedule:d1:2027-01-06",
        why="outside-hours",
        by="admin",
        reason=reason,
    )


def test_a_move_changes_the_desk_and_says_who_and_why() -> None:
    b = confirmed()
    events = b.on_reservation_moved(moved())
    assert events == [moved()]
    for e in events:
        b.apply(e, NOW)
    assert (b.status, b.desk_id) == ("confirmed", "d2")
    entry = b.history[-1]
    assert entry["event"] == "reservation-moved"
    assert (entry["by"], entry["from_desk"], entry["desk"], entry["reason"]) == ("admin", "d1", "d2", "plus de soirées")
    assert b.on_reservation_moved(moved()) == []  # a redelivery changes nothing


def test_a_longer_duration_on_the_same_desk_changes_the_end() -> None:
    b = confirmed()
    later = END + timedelta(minutes=20)
    for e in b.on_reservation_moved(moved("d1", later)):
        b.apply(e, NOW)
    assert (b.desk_id, b.end) == ("d1", later)


def test_a_withdrawal_cancels_by_the_system_in_the_residents_language() -> None:
    b = confirmed("nl")
    events = b.on_reservation_withdrawn(withdrawn(), NOW)
    assert [e.TYPE for e in events] == ["reservation-withdrawn", "booking-cancelled"]
    cancelled = events[1]
    assert isinstance(cancelled, ev.BookingCancelled)
    assert (cancelled.cancelled_by, cancelled.reason, cancelled.language) == ("system", "avondopening geschrapt", "nl")
    for e in events:
        b.apply(e, NOW)
    assert b.status == "cancelled"
    assert b.history[-2]["by"] == "admin" and b.history[-2]["why"] == "outside-hours"
    assert b.on_reservation_withdrawn(withdrawn(), NOW) == []  # cancelled already


def test_without_a_reason_the_resident_gets_the_default_one() -> None:
    b = confirmed("en")
    events = b.on_reservation_withdrawn(withdrawn(None), NOW)
    assert isinstance(events[1], ev.BookingCancelled) and events[1].reason == STRANDED_REASON["en"]


def test_a_booking_that_is_no_longer_active_is_neither_moved_nor_cancelled() -> None:
    b = confirmed()
    b.apply(
        ev.AttendanceRecorded(booking_id="b1", location_id="loc", start=START, outcome="checked_in", by="staff"), NOW
    )
    assert b.on_reservation_moved(moved()) == []
    assert b.on_reservation_withdrawn(withdrawn(), NOW) == []


def test_a_withdrawal_passes_the_calendars_free_times_to_the_cancellation() -> None:
    # The resident is offered them in the cancellation message (issue 17: "offered the nearest alternatives").
    free = [ev.Slot(start=START + timedelta(days=1), end=END + timedelta(days=1), location_id="loc")]
    withdrawn = ev.ReservationWithdrawn(
        booking_id="b1",
        location_id="loc",
        product_id="card",
        desk_id="d1",
        start=START,
        end=END,
        change="desk-removed desk:d1",
        why="desk-removed",
        by="admin",
        reason=REASON,
        alternatives=free,
    )
    (cancelled,) = [
        e for e in confirmed().on_reservation_withdrawn(withdrawn, NOW) if isinstance(e, ev.BookingCancelled)
    ]
    assert cancelled.cancelled_by == "system" and cancelled.alternatives == free
