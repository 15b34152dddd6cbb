"""The booking aggregate at its deadlines (exactly at, one second before, one second after): the
hold a resident confirms within, the online cancel and reschedule deadline, the check-in window
and the no-show mark; and what each event records in the booking's history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from loket_booking.domain.booking import Booking, TransitionRefused
from loket_contracts import events as ev

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
END = START + timedelta(minutes=20)
BOOKED_AT = START - timedelta(days=5)
HOLD_UNTIL = BOOKED_AT + timedelta(minutes=30)
DEADLINE = timedelta(hours=24)
EARLY = timedelta(minutes=10)
SECOND = timedelta(seconds=1)


def requested(language: str = "fr") -> Booking:
    b = Booking(id="b1")
    b.apply(
        ev.BookingRequested(
            booking_id="b1",
            location_id="mc",
            product_id="residence-card",
            start=START,
            end=END,
            person=ev.PersonName(given_name="Amal", family_name="Peeters"),
            requested_at=BOOKED_AT,
            language=language,
        ),
        BOOKED_AT,
    )
    return b


def reserved(hold: datetime | None) -> ev.SlotReserved:
    return ev.SlotReserved(
        booking_id="b1",
        location_id="mc",
        product_id="residence-card",
        desk_id="mc-2",
        start=START,
        end=END,
        hold_expires_at=hold,
    )


def fold(b: Booking, events: list[ev.Event], at: datetime = BOOKED_AT) -> Booking:
    for e in events:
        b.apply(e, at)
    return b


def held() -> Booking:
    b = requested()
    return fold(b, b.on_slot_reserved(reserved(HOLD_UNTIL)))


def confirmed() -> Booking:
    b = requested()
    return fold(b, b.on_slot_reserved(reserved(None)))


# --- what a request and the calendar's decisions record -----------------------------------------


def test_a_request_records_who_what_where_and_when() -> None:
    b = requested(language="fr")
    assert (b.status, b.location_id, b.product_id, b.start, b.end) == ("requested", "mc", "residence-card", START, END)
    assert (b.given_name, b.family_name, b.language, b.version) == ("Amal", "Peeters", "fr", 1)
    assert b.history == [{"event": "booking-requested", "at": BOOKED_AT}]


def test_a_reservation_with_a_hold_asks_the_resident_to_confirm_in_their_language() -> None:
    (event,) = requested().on_slot_reserved(reserved(HOLD_UNTIL))
    assert isinstance(event, ev.BookingHeld)
    assert (event.desk_id, event.start, event.end, event.hold_expires_at) == ("mc-2", START, END, HOLD_UNTIL)
    assert (event.location_id, event.product_id, event.language) == ("mc", "residence-card", "fr")


def test_a_reservation_without_a_hold_confirms_at_once_by_the_calendar() -> None:
    (event,) = requested().on_slot_reserved(reserved(None))
    assert isinstance(event, ev.BookingConfirmed)
    assert (event.desk_id, event.start, event.end, event.confirmed_by, event.language) == (
        "mc-2",
        START,
        END,
        "calendar",
        "fr",
    )


def test_a_rejection_passes_on_the_reason_and_the_alternatives() -> None:
    alternative = ev.Slot(start=START + timedelta(hours=1), end=END + timedelta(hours=1), location_id="mc")
    decision = ev.SlotRejected(
        booking_id="b1",
        location_id="mc",
        product_id="residence-card",
        start=START,
        reason="slot-taken",
        alternatives=[alternative],
    )
    b = requested()
    (event,) = b.on_slot_rejected(decision)
    assert isinstance(event, ev.BookingRejected)
    assert (event.reason, event.alternatives, event.language) == ("slot-taken", [alternative], "fr")
    assert not event.told_in_response  # the resident is told by e-mail
    fold(b, [event])
    assert b.on_slot_rejected(decision) == []  # told once

    (answered,) = requested().on_slot_rejected(decision, told_in_response=True)
    assert isinstance(answered, ev.BookingRejected) and answered.told_in_response  # on screen: no e-mail


def test_each_event_counts_as_a_version() -> None:
    b = held()
    fold(b, b.confirm(BOOKED_AT))
    assert b.version == 3 and [h["event"] for h in b.history] == [
        "booking-requested",
        "booking-held",
        "booking-confirmed",
    ]
    assert b.history[-1]["by"] == "resident"


# --- the hold ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "confirmed_in_time"),
    [(HOLD_UNTIL - SECOND, True), (HOLD_UNTIL, False), (HOLD_UNTIL + SECOND, False)],
)
def test_a_hold_is_confirmed_before_it_expires(now: datetime, confirmed_in_time: bool) -> None:
    b = held()
    if confirmed_in_time:
        (event,) = b.confirm(now)
        assert isinstance(event, ev.BookingConfirmed) and event.desk_id == "mc-2"
    else:
        with pytest.raises(TransitionRefused) as exc:
            b.confirm(now)
        assert exc.value.code == "hold-expired"


def test_a_held_booking_expires_and_says_when_it_was_for() -> None:
    b = held()
    (event,) = b.on_hold_expired(
        ev.HoldExpired(booking_id="b1", location_id="mc", desk_id="mc-2", start=START, end=END)
    )
    assert isinstance(event, ev.BookingExpired)
    assert (event.start, event.location_id, event.language) == (START, "mc", "fr")


# --- the online deadline for cancelling and rescheduling -------------------------------------------


@pytest.mark.parametrize(
    ("now", "allowed"),
    [(START - DEADLINE - SECOND, True), (START - DEADLINE, True), (START - DEADLINE + SECOND, False)],
)
def test_a_resident_cancels_online_until_24_hours_before(now: datetime, allowed: bool) -> None:
    b = confirmed()
    if allowed:
        (event,) = b.cancel("resident", "ill", now, DEADLINE)
        assert isinstance(event, ev.BookingCancelled)
        assert (event.cancelled_at, event.reason, event.desk_id, event.end, event.language) == (
            now,
            "ill",
            "mc-2",
            END,
            "fr",
        )
    else:
        with pytest.raises(TransitionRefused, match="closes 24 hours before") as exc:
            b.cancel("resident", "ill", now, DEADLINE)
        assert exc.value.code == "cancel-deadline"


def test_the_deadline_message_gives_the_hours_configured() -> None:
    with pytest.raises(TransitionRefused, match=r"closes 1\.5 hours before"):
        confirmed().cancel("resident", "x", START - timedelta(hours=1), timedelta(minutes=90))


def test_staff_cancel_after_the_resident_deadline() -> None:
    (event,) = confirmed().cancel("staff", "desk closed", START - timedelta(hours=1), DEADLINE)
    assert isinstance(event, ev.BookingCancelled) and event.cancelled_by == "staff"


def test_a_cancellation_ends_a_pending_reschedule() -> None:
    b = confirmed()
    new = START + timedelta(days=1)
    fold(b, b.request_reschedule("r1", new, new + timedelta(minutes=20), BOOKED_AT, DEADLINE))
    fold(b, b.cancel("resident", "x", BOOKED_AT, DEADLINE))
    assert (b.status, b.pending_reschedule) == ("cancelled", None)
    assert b.history[-1] == {"event": "booking-cancelled", "at": BOOKED_AT, "by": "resident", "reason": "x"}


@pytest.mark.parametrize(
    ("now", "allowed"),
    [(START - DEADLINE - SECOND, True), (START - DEADLINE, True), (START - DEADLINE + SECOND, False)],
)
def test_a_resident_reschedules_online_until_24_hours_before(now: datetime, allowed: bool) -> None:
    b = confirmed()
    new = START + timedelta(days=1)
    if allowed:
        (event,) = b.request_reschedule("r1", new, new + timedelta(minutes=20), now, DEADLINE)
        assert isinstance(event, ev.RescheduleRequested)
        assert (event.old_start, event.new_start, event.new_end, event.requested_at) == (
            START,
            new,
            new + timedelta(minutes=20),
            now,
        )
    else:
        with pytest.raises(TransitionRefused) as exc:
            b.request_reschedule("r1", new, new + timedelta(minutes=20), now, DEADLINE)
        assert exc.value.code == "cancel-deadline"


def test_a_reschedule_records_the_new_time_and_counts_the_moves() -> None:
    b = confirmed()
    for n, days in enumerate((1, 2), start=1):
        new = START + timedelta(days=days)
        fold(b, b.request_reschedule(f"r{n}", new, new + timedelta(minutes=20), BOOKED_AT, DEADLINE))
        assert b.history[-1]["new_start"] == new
        decision = ev.RescheduleReserved(
            booking_id="b1",
            request_id=f"r{n}",
            location_id="mc",
            product_id="residence-card",
            desk_id="mc-1",
            old_start=b.start,
            start=new,
            end=new + timedelta(minutes=20),
        )
        (moved,) = b.on_reschedule_reserved(decision)
        assert isinstance(moved, ev.BookingRescheduled)
        assert (moved.sequence, moved.old_start, moved.language) == (n, b.start, "fr")  # 1, then 2
        fold(b, [moved])
        assert (b.sequence, b.start, b.end) == (n, new, new + timedelta(minutes=20))


def test_a_rejected_reschedule_is_passed_on_once_and_recorded() -> None:
    b = confirmed()
    new = START + timedelta(days=1)
    fold(b, b.request_reschedule("r1", new, new + timedelta(minutes=20), BOOKED_AT, DEADLINE))
    rejected = ev.RescheduleRejected(
        booking_id="b1", request_id="r1", location_id="mc", new_start=new, reason="slot-taken"
    )
    other = ev.RescheduleRejected(
        booking_id="b1", request_id="r0", location_id="mc", new_start=new, reason="slot-taken"
    )
    assert b.on_reschedule_rejected(other) == []  # about another request
    assert b.on_reschedule_rejected(rejected) == [rejected]
    fold(b, [rejected])
    assert b.history[-1]["reason"] == "slot-taken" and b.history[-1]["new_start"] == new
    assert b.pending_reschedule is None


def test_a_held_booking_can_be_rescheduled_but_a_requested_one_cannot() -> None:
    new = START + timedelta(days=1)
    assert held().request_reschedule("r1", new, new + timedelta(minutes=20), BOOKED_AT, DEADLINE)
    with pytest.raises(TransitionRefused, match="requested: it cannot be rescheduled"):
        requested().request_reschedule("r1", new, new + timedelta(minutes=20), BOOKED_AT, DEADLINE)


# --- at the counter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "allowed"),
    [(START - EARLY - SECOND, False), (START - EARLY, True), (START - EARLY + SECOND, True), (START, True)],
)
def test_check_in_opens_ten_minutes_before_the_start(now: datetime, allowed: bool) -> None:
    b = confirmed()
    if allowed:
        (event,) = b.record_attendance("checked_in", "desk-agent", now, EARLY)
        assert isinstance(event, ev.AttendanceRecorded)
        assert (event.outcome, event.by, event.start, event.location_id) == ("checked_in", "desk-agent", START, "mc")
    else:
        with pytest.raises(TransitionRefused, match="opens 10 minutes before") as exc:
            b.record_attendance("checked_in", "desk-agent", now, EARLY)
        assert exc.value.code == "too-early"


@pytest.mark.parametrize(
    ("now", "allowed"),
    [(START - SECOND, False), (START, True), (START + SECOND, True)],
)
def test_a_resident_is_marked_absent_from_the_start_time_on(now: datetime, allowed: bool) -> None:
    b = confirmed()
    if allowed:
        (event,) = b.record_attendance("no_show", "desk-agent", now, EARLY)
        assert isinstance(event, ev.AttendanceRecorded) and event.outcome == "no_show"
    else:
        with pytest.raises(TransitionRefused, match="after the start time") as exc:
            b.record_attendance("no_show", "desk-agent", now, EARLY)
        assert exc.value.code == "too-early"


def test_refusals_say_the_state_in_words() -> None:
    b = confirmed()
    fold(b, b.record_attendance("no_show", "desk-agent", START, EARLY))
    with pytest.raises(TransitionRefused, match="This booking is no show: it cannot be marked checked in") as exc:
        b.record_attendance("checked_in", "desk-agent", START, EARLY)
    assert exc.value.status == "no_show" and exc.value.code == "transition-refused"
    assert b.history[-1] == {"event": "attendance-recorded", "at": BOOKED_AT, "by": "desk-agent"}


# --- decisions that do not apply to the booking's state ------------------------------------------


@pytest.mark.parametrize("make", [requested, confirmed])
def test_only_a_held_booking_expires(make) -> None:  # type: ignore[no-untyped-def]
    expired = ev.HoldExpired(booking_id="b1", location_id="mc", desk_id="mc-2", start=START, end=END)
    assert make().on_hold_expired(expired) == []


def test_a_rejected_booking_does_not_expire() -> None:
    b = requested()
    fold(
        b,
        b.on_slot_rejected(
            ev.SlotRejected(
                booking_id="b1", location_id="mc", product_id="residence-card", start=START, reason="closed"
            )
        ),
    )
    assert (
        b.on_hold_expired(ev.HoldExpired(booking_id="b1", location_id="mc", desk_id="mc-2", start=START, end=END)) == []
    )


def test_a_reschedule_to_an_earlier_time_is_a_reschedule() -> None:
    earlier = START - timedelta(days=2)
    (event,) = confirmed().request_reschedule("r1", earlier, earlier + timedelta(minutes=20), BOOKED_AT, DEADLINE)
    assert isinstance(event, ev.RescheduleRequested) and event.new_start == earlier


def test_a_check_in_window_of_an_hour_is_said_in_minutes() -> None:
    with pytest.raises(TransitionRefused, match="Check-in opens 60 minutes before"):
        confirmed().record_attendance("checked_in", "desk-agent", START - timedelta(hours=2), timedelta(hours=1))


def moved(desk: str, end: datetime = END) -> ev.ReservationMoved:
    return ev.ReservationMoved(
        booking_id="b1",
        location_id="mc",
        product_id="residence-card",
        from_desk_id="mc-2",
        desk_id=desk,
        start=START,
        end=end,
        change="desk-removed desk:mc-2",
        why="desk-removed",
        by="admin",
    )


def test_a_reservation_moved_by_a_catalogue_change_is_recorded_once() -> None:
    b = confirmed()  # at desk mc-2
    assert b.on_reservation_moved(moved("mc-1")) == [moved("mc-1")]  # to a desk listed before its own
    assert b.on_reservation_moved(moved("mc-3")) == [moved("mc-3")]
    longer = END + timedelta(minutes=10)
    assert b.on_reservation_moved(moved("mc-2", longer)) == [moved("mc-2", longer)]  # the same desk, a new end
    shorter = END - timedelta(minutes=5)
    assert b.on_reservation_moved(moved("mc-2", shorter)) == [moved("mc-2", shorter)]
    assert b.on_reservation_moved(moved("mc-2")) == []  # where it is already
    assert requested().on_reservation_moved(moved("mc-1")) == []
