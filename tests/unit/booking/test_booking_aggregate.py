"""Every transition of the booking aggregate, and every refused one, without I/O."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from loket_booking.domain.booking import Booking, TransitionRefused
from loket_contracts import events as ev

START = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
END = START + timedelta(minutes=20)
LONG_BEFORE = START - timedelta(days=5)
DEADLINE = timedelta(hours=24)
EARLY = timedelta(minutes=10)


def fold(booking: Booking, events: list[ev.Event], at: datetime = LONG_BEFORE) -> Booking:
    for event in events:
        booking.apply(event, at)
    return booking


def requested() -> Booking:
    b = Booking(id="b1")
    return fold(
        b,
        [
            ev.BookingRequested(
                booking_id="b1",
                location_id="mc",
                product_id="residence-card",
                start=START,
                end=END,
                person=ev.PersonName(given_name="A", family_name="B"),
                requested_at=LONG_BEFORE,
            )
        ],
    )


def reserved(hold: datetime | None = None) -> ev.SlotReserved:
    return ev.SlotReserved(
        booking_id="b1",
        location_id="mc",
        product_id="residence-card",
        desk_id="mc-1",
        start=START,
        end=END,
        hold_expires_at=hold,
    )


def confirmed() -> Booking:
    b = requested()
    return fold(b, b.on_slot_reserved(reserved()))


def held(expires: datetime = LONG_BEFORE + timedelta(minutes=30)) -> Booking:
    b = requested()
    return fold(b, b.on_slot_reserved(reserved(expires)))


def checked_in() -> Booking:
    b = confirmed()
    return fold(b, b.record_attendance("checked_in", "staff", START - timedelta(minutes=5), EARLY))


def by_status() -> dict[str, Callable[[], Booking]]:
    def rejected() -> Booking:
        b = requested()
        return fold(
            b,
            b.on_slot_rejected(
                ev.SlotRejected(
                    booking_id="b1", location_id="mc", product_id="residence-card", start=START, reason="slot-taken"
                )
            ),
        )

    def expired() -> Booking:
        b = held()
        return fold(b, b.on_hold_expired(hold_expired()))

    def cancelled() -> Booking:
        b = confirmed()
        return fold(b, b.cancel("resident", "x", LONG_BEFORE, DEADLINE))

    def no_show() -> Booking:
        b = confirmed()
        return fold(b, b.record_attendance("no_show", "staff", START + timedelta(minutes=15), EARLY))

    def completed() -> Booking:
        b = checked_in()
        return fold(b, b.record_attendance("completed", "staff", START + timedelta(minutes=20), EARLY))

    return {
        "requested": requested,
        "held": held,
        "confirmed": confirmed,
        "rejected": rejected,
        "expired": expired,
        "cancelled": cancelled,
        "checked_in": checked_in,
        "no_show": no_show,
        "completed": completed,
    }


def hold_expired() -> ev.HoldExpired:
    return ev.HoldExpired(booking_id="b1", location_id="mc", desk_id="mc-1", start=START, end=END)


# --- the allowed transitions --------------------------------------------------------------


def test_requested_to_confirmed() -> None:
    b = confirmed()
    assert (b.status, b.desk_id, b.version) == ("confirmed", "mc-1", 2)
    assert [h["event"] for h in b.history] == ["booking-requested", "booking-confirmed"]


def test_requested_to_held_to_confirmed_by_the_resident() -> None:
    b = held()
    assert b.status == "held" and b.hold_expires_at is not None
    events = b.confirm(LONG_BEFORE + timedelta(minutes=10))
    assert isinstance(events[0], ev.BookingConfirmed) and events[0].confirmed_by == "resident"
    fold(b, events)
    assert b.status == "confirmed" and b.hold_expires_at is None
    assert b.confirm(LONG_BEFORE) == []  # confirming twice (the link clicked again) is a no-op


def test_requested_to_rejected_keeps_reason() -> None:
    b = by_status()["rejected"]()
    assert b.status == "rejected"
    assert b.history[-1]["reason"] == "slot-taken"


def test_held_to_expired() -> None:
    b = by_status()["expired"]()
    assert b.status == "expired"


def test_decisions_are_idempotent_and_ignored_when_not_requested() -> None:
    b = confirmed()
    assert b.on_slot_reserved(reserved()) == []
    assert b.on_hold_expired(hold_expired()) == []  # only a held booking expires
    c = by_status()["cancelled"]()
    assert c.on_slot_reserved(reserved()) == []


def test_confirmed_to_cancelled_by_resident_before_the_deadline_and_by_staff_any_time() -> None:
    b = confirmed()
    events = b.cancel("resident", "cannot come", START - DEADLINE - timedelta(minutes=1), DEADLINE)
    assert isinstance(events[0], ev.BookingCancelled) and events[0].cancelled_by == "resident"
    late = confirmed()
    with pytest.raises(TransitionRefused) as exc:
        late.cancel("resident", "x", START - DEADLINE + timedelta(minutes=1), DEADLINE)
    assert exc.value.code == "cancel-deadline"
    staff = late.cancel("staff", "desk closed", START - timedelta(minutes=5), timedelta(0))
    assert isinstance(staff[0], ev.BookingCancelled)
    assert staff[0].cancelled_by == "staff" and staff[0].reason == "desk closed"
    fold(late, staff)
    assert late.cancel("staff", "again", START, timedelta(0)) == []  # cancelling twice is a no-op


def test_held_and_requested_can_be_cancelled() -> None:
    for make in (held, requested):
        b = make()
        fold(b, b.cancel("resident", "x", LONG_BEFORE, DEADLINE))
        assert b.status == "cancelled"


def test_check_in_window_then_complete() -> None:
    b = confirmed()
    with pytest.raises(TransitionRefused) as exc:
        b.record_attendance("checked_in", "staff", START - EARLY - timedelta(seconds=1), EARLY)
    assert exc.value.code == "too-early"
    fold(b, b.record_attendance("checked_in", "staff", START - EARLY, EARLY))
    assert b.status == "checked_in"
    assert b.record_attendance("checked_in", "staff", START, EARLY) == []
    fold(b, b.record_attendance("completed", "staff", START + timedelta(minutes=20), EARLY))
    assert b.status == "completed"
    assert b.history[-1]["by"] == "staff"


def test_no_show_only_after_the_start() -> None:
    b = confirmed()
    with pytest.raises(TransitionRefused):
        b.record_attendance("no_show", "staff", START - timedelta(minutes=1), EARLY)
    fold(b, b.record_attendance("no_show", "staff", START + timedelta(minutes=1), EARLY))
    assert b.status == "no_show"


def test_reschedule_keeps_the_old_time_until_reserved() -> None:
    b = confirmed()
    new_start = START + timedelta(days=1)
    fold(b, b.request_reschedule("r1", new_start, new_start + timedelta(minutes=20), LONG_BEFORE, DEADLINE))
    assert b.start == START and b.pending_reschedule == "r1"
    with pytest.raises(TransitionRefused) as exc:  # a second one while the first is decided
        b.request_reschedule("r2", new_start, new_start + timedelta(minutes=20), LONG_BEFORE, DEADLINE)
    assert exc.value.code == "reschedule-pending"
    decision = ev.RescheduleReserved(
        booking_id="b1",
        request_id="r1",
        location_id="mc",
        product_id="residence-card",
        desk_id="mc-2",
        old_start=START,
        start=new_start,
        end=new_start + timedelta(minutes=20),
    )
    fold(b, b.on_reschedule_reserved(decision))
    assert (b.start, b.desk_id, b.sequence) == (new_start, "mc-2", 1)
    assert b.pending_reschedule is None
    assert b.on_reschedule_reserved(decision) == []  # a duplicate decision changes nothing
    assert b.history[-1]["from"] == START and b.history[-1]["to"] == new_start


def test_a_rejected_reschedule_keeps_the_old_time() -> None:
    b = confirmed()
    new_start = START + timedelta(days=1)
    fold(b, b.request_reschedule("r1", new_start, new_start + timedelta(minutes=20), LONG_BEFORE, DEADLINE))
    rejected = ev.RescheduleRejected(
        booking_id="b1", request_id="r1", location_id="mc", new_start=new_start, reason="slot-taken"
    )
    fold(b, b.on_reschedule_rejected(rejected))
    assert (b.start, b.desk_id, b.pending_reschedule, b.status) == (START, "mc-1", None, "confirmed")
    assert b.on_reschedule_rejected(rejected) == []


def test_reschedule_refusals() -> None:
    b = confirmed()
    new = START + timedelta(days=1)
    with pytest.raises(TransitionRefused) as exc:
        b.request_reschedule("r", START, END, LONG_BEFORE, DEADLINE)
    assert exc.value.code == "same-time"
    with pytest.raises(TransitionRefused) as exc:
        b.request_reschedule("r", new, new + timedelta(minutes=20), START - timedelta(hours=1), DEADLINE)
    assert exc.value.code == "cancel-deadline"


def test_confirm_after_the_hold_ran_out_is_refused() -> None:
    b = held(expires=LONG_BEFORE + timedelta(minutes=30))
    with pytest.raises(TransitionRefused) as exc:
        b.confirm(LONG_BEFORE + timedelta(minutes=31))
    assert exc.value.code == "hold-expired"


# --- every refused transition, from every state ----------------------------------------------

ALLOWED = {
    "confirm": {"held", "confirmed"},
    "cancel": {"requested", "held", "confirmed", "cancelled"},
    "reschedule": {"held", "confirmed"},
    "checked_in": {"confirmed", "checked_in"},
    "no_show": {"confirmed", "no_show"},
    "completed": {"checked_in", "completed"},
}


def attempt(b: Booking, action: str) -> list[ev.Event]:
    new = START + timedelta(days=1)
    match action:
        case "confirm":
            return b.confirm(LONG_BEFORE)
        case "cancel":
            return b.cancel("resident", "x", LONG_BEFORE, DEADLINE)
        case "reschedule":
            return b.request_reschedule("r", new, new + timedelta(minutes=20), LONG_BEFORE, DEADLINE)
        case _:
            return b.record_attendance(action, "staff", START + timedelta(minutes=1), EARLY)


@pytest.mark.parametrize("status", list(by_status()))
@pytest.mark.parametrize("action", list(ALLOWED))
def test_transition_matrix(status: str, action: str) -> None:
    b = by_status()[status]()
    assert b.status == status
    if status in ALLOWED[action]:
        attempt(b, action)
    else:
        with pytest.raises(TransitionRefused) as exc:
            attempt(b, action)
        assert status.replace("_", " ") in str(exc.value) or status in str(exc.value)
