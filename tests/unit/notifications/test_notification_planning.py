"""Which messages a booking event plans, pinned at each rule's edges: the reminder times of the default
policy, the 'already due' and 'too close to the start' cut-offs, the calendar CANCEL of a booking that
had an invitation, the staff cancellation text, and which pending messages each event makes void."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loket_contracts import events as ev
from loket_notifications.domain.kinds import Kind
from loket_notifications.domain.planning import (
    TOLD_IN_RESPONSE,
    VOID_ON_END,
    VOID_ON_MOVE,
    BookingView,
    ReminderPolicy,
    ReminderRule,
    decide,
    reminder_still_valid,
    reminders,
    rules_from_config,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
START = NOW + timedelta(days=3)
END = START + timedelta(minutes=20)
POLICY = ReminderPolicy()
SECOND = timedelta(seconds=1)


def view(**changes: object) -> BookingView:
    data: dict[str, object] = dict(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        start=START,
        end=END,
        language="en",
        status="confirmed",
        sequence=0,
    )
    data.update(changes)
    return BookingView(**data)  # type: ignore[arg-type]


def confirmed(start: datetime = START) -> ev.BookingConfirmed:
    return ev.BookingConfirmed(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=start,
        end=start + timedelta(minutes=20),
        confirmed_by="calendar",
        language="en",
    )  # type: ignore[arg-type]


def cancelled(by: str = "staff", start: datetime = START) -> ev.BookingCancelled:
    return ev.BookingCancelled(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=start,
        end=start + timedelta(minutes=20),
        cancelled_by=by,
        reason="counter closed",
        cancelled_at=NOW,
        language="nl",
    )  # type: ignore[arg-type]


def rescheduled(new_start: datetime, sequence: int = 1) -> ev.BookingRescheduled:
    return ev.BookingRescheduled(
        booking_id="b1",
        request_id="r1",
        location_id="loc-2",
        product_id="p",
        desk_id="d2",
        old_start=START,
        start=new_start,
        end=new_start + timedelta(minutes=30),
        sequence=sequence,
        language="fr",
    )  # type: ignore[arg-type]


def by_kind(messages: list) -> dict[Kind, object]:  # type: ignore[type-arg]
    return {m.kind: m for m in messages}


# --- the default reminders --------------------------------------------------------------------


def test_default_policy_mails_a_day_ahead_and_texts_two_hours_ahead() -> None:
    planned = by_kind(reminders(view(), POLICY, NOW))
    email, text = planned[Kind.REMINDER], planned[Kind.REMINDER_SMS]
    assert email.due_at == START - timedelta(hours=24)  # type: ignore[attr-defined]
    assert text.due_at == START - timedelta(hours=2)  # type: ignore[attr-defined]
    # Missed by our own downtime, the e-mail may still go out 12 hours late (12 h before the start) ...
    assert email.not_after == START - timedelta(hours=12)  # type: ignore[attr-defined]
    # ... and the text until 15 minutes before the start, never later.
    assert text.not_after == START - timedelta(minutes=15)  # type: ignore[attr-defined]


def test_a_reminder_says_when_the_appointment_is_and_belongs_to_the_booked_time() -> None:
    for planned in reminders(view(sequence=3), POLICY, NOW):
        assert planned.version == 3  # voided when the booking moves to a 4th time
        assert planned.context == {"start": START.isoformat(), "end": END.isoformat()}


@pytest.mark.parametrize(
    ("decided_before_start", "expected"),
    [
        (timedelta(hours=24) + SECOND, ["reminder", "reminder-sms"]),  # one second before the e-mail is due
        (timedelta(hours=24), ["reminder-sms"]),  # exactly when it is due: the confirmation says it all
        (timedelta(hours=5), ["reminder-sms"]),  # booked 5 hours ahead: the text is still worth sending
        (timedelta(hours=2) + SECOND, ["reminder-sms"]),
        (timedelta(hours=2), []),  # the text would be due now: nothing left to remind of
        (timedelta(minutes=30), []),
    ],
)
def test_a_reminder_already_due_when_the_booking_is_decided_is_not_planned(
    decided_before_start: timedelta, expected: list[str]
) -> None:
    decided_at = START - decided_before_start
    assert [p.kind.value for p in reminders(view(), POLICY, decided_at)] == expected


def test_a_booking_made_less_than_a_day_ahead_still_gets_its_two_hour_text() -> None:
    # The e-mail reminder comes first in the policy and is skipped: the text after it must not be.
    start = NOW + timedelta(hours=20)
    decision = decide(confirmed(start), None, POLICY, NOW)
    assert [m.kind for m in decision.messages] == [Kind.CONFIRMATION, Kind.REMINDER_SMS]
    assert decision.messages[1].due_at == start - timedelta(hours=2)


def test_the_order_of_the_rules_does_not_matter() -> None:
    texts_first = ReminderPolicy(
        rules=(ReminderRule("sms", timedelta(hours=2)), ReminderRule("email", timedelta(days=1)))
    )
    start = NOW + timedelta(hours=20)  # the e-mail is moot, whichever rule comes first
    assert [p.kind for p in reminders(view(start=start), texts_first, NOW)] == [Kind.REMINDER_SMS]
    assert [p.kind for p in reminders(view(), texts_first, NOW)] == [Kind.REMINDER_SMS, Kind.REMINDER]


@pytest.mark.parametrize(
    ("before", "planned"),
    [
        (timedelta(minutes=16), True),  # one minute of sending window before the last 15 minutes
        (timedelta(minutes=15), False),  # due exactly when it becomes too late to send: pointless
        (timedelta(minutes=10), False),
    ],
)
def test_a_reminder_inside_the_last_quarter_hour_is_never_planned(before: timedelta, planned: bool) -> None:
    policy = ReminderPolicy(rules=(ReminderRule("sms", before),))
    found = reminders(view(), policy, NOW)
    assert bool(found) == planned
    if planned:
        assert found[0].not_after == START - timedelta(minutes=15)


def test_a_rule_channel_names_the_reminder_kind() -> None:
    assert ReminderRule("email", timedelta(hours=1)).kind is Kind.REMINDER
    assert ReminderRule("sms", timedelta(hours=1)).kind is Kind.REMINDER_SMS


@given(
    lead=st.integers(min_value=0, max_value=14 * 24 * 60),
    before=st.integers(min_value=1, max_value=7 * 24 * 60),
    channel=st.sampled_from(["email", "sms"]),
)
def test_a_planned_reminder_is_due_after_the_decision_and_sendable_for_a_while(
    lead: int, before: int, channel: str
) -> None:
    """Whatever the rule and however far ahead the booking: a planned reminder is due later than the
    decision, has some time to be sent in, and that time ends at least 15 minutes before the start."""
    start = NOW + timedelta(minutes=lead)
    policy = ReminderPolicy(rules=(ReminderRule(channel, timedelta(minutes=before)),))  # type: ignore[arg-type]
    planned = reminders(view(start=start), policy, NOW)
    due = start - timedelta(minutes=before)
    should = due > NOW and min(due + POLICY.grace, start - POLICY.min_lead) > due
    assert bool(planned) == should
    for p in planned:
        assert NOW < p.due_at < p.not_after <= start - timedelta(minutes=15)  # type: ignore[operator]
        assert p.not_after <= p.due_at + timedelta(hours=12)  # type: ignore[operator]


# --- reminders from configuration -------------------------------------------------------------


def test_rules_from_config_read_hours_or_minutes_and_default_to_email() -> None:
    rules = rules_from_config(
        [
            {"channel": "sms", "hours_before": 1.5},
            {"hours_before": 24},  # no channel: e-mail
            {"channel": "fax", "minutes_before": 45},  # an unknown channel is not texted
            {"channel": "sms", "minutes_before": 30, "hours_before": 5},  # minutes win when both are given
        ]
    )
    assert rules == (
        ReminderRule("sms", timedelta(minutes=90)),
        ReminderRule("email", timedelta(hours=24)),
        ReminderRule("email", timedelta(minutes=45)),
        ReminderRule("sms", timedelta(minutes=30)),
    )


# --- held, confirmed, rejected ----------------------------------------------------------------


def test_a_held_booking_asks_for_confirmation_until_the_hold_expires() -> None:
    held = ev.BookingHeld(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=START,
        end=END,
        hold_expires_at=NOW + timedelta(minutes=30),
        language="fr",
    )  # type: ignore[arg-type]
    decision = decide(held, view(sequence=2, status="confirmed"), POLICY, NOW)
    (message,) = decision.messages
    assert (message.kind, message.due_at, message.not_after) == (Kind.PLEASE_CONFIRM, NOW, NOW + timedelta(minutes=30))
    assert message.context["hold_expires_at"] == (NOW + timedelta(minutes=30)).isoformat()
    assert message.context["start"] == START.isoformat() and message.context["end"] == END.isoformat()
    assert decision.state == view(sequence=2, status="held", language="fr")
    assert message.version == 2
    assert decision.void_below is None  # nothing sent before is void


def test_a_confirmation_is_sent_now_and_pointless_after_the_start() -> None:
    decision = decide(confirmed(), view(sequence=1, status="held"), POLICY, NOW)
    message = decision.messages[0]
    assert (message.kind, message.due_at, message.not_after, message.version) == (Kind.CONFIRMATION, NOW, START, 1)
    assert decision.state is not None and (decision.state.status, decision.state.sequence) == ("confirmed", 1)
    assert decision.void_below is None


def test_a_first_event_starts_the_booking_at_its_first_time() -> None:
    decision = decide(confirmed(), None, POLICY, NOW)
    assert decision.state == view(sequence=0)


def test_a_rejection_lists_the_alternatives_offered() -> None:
    other = START + timedelta(hours=1)
    rejected = ev.BookingRejected(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        start=START,
        reason="slot-taken",
        alternatives=[ev.Slot(start=other, end=other + timedelta(minutes=20), location_id="loc-2")],
        language="nl",
    )  # type: ignore[arg-type]
    decision = decide(rejected, None, POLICY, NOW)
    (message,) = decision.messages
    assert message.kind is Kind.REJECTION and message.due_at == NOW and message.not_after is None
    assert message.context == {
        "start": START.isoformat(),
        "end": None,  # a rejected request has no end of its own
        "reason": "slot-taken",
        "alternatives": [
            {"start": other.isoformat(), "end": (other + timedelta(minutes=20)).isoformat(), "location_id": "loc-2"}
        ],
    }
    assert decision.state is not None and decision.state.status == "rejected"


def rejected(told_in_response: bool) -> ev.BookingRejected:
    return ev.BookingRejected(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        start=START,
        reason="slot-taken",
        language="en",
        told_in_response=told_in_response,
    )  # type: ignore[arg-type]


def test_a_rejection_told_on_screen_is_recorded_as_skipped_and_never_sent() -> None:
    """The resident saw the 409 with the alternatives in the request itself: no e-mail, and the
    reason is kept so ops see why nothing went out."""
    decision = decide(rejected(told_in_response=True), None, POLICY, NOW)
    (message,) = decision.messages
    assert message.kind is Kind.REJECTION and message.skipped == TOLD_IN_RESPONSE
    assert "told in the response" in message.skipped
    assert decision.state is not None and decision.state.status == "rejected"


def test_a_rejection_decided_after_the_request_was_answered_is_e_mailed() -> None:
    (message,) = decide(rejected(told_in_response=False), None, POLICY, NOW).messages
    assert message.kind is Kind.REJECTION and message.skipped is None


def test_only_a_rejection_can_be_planned_as_skipped() -> None:
    """Every other event's messages go out: nothing but `told_in_response` skips at planning."""
    for event in (confirmed(), cancelled()):
        assert all(m.skipped is None for m in decide(event, None, POLICY, NOW).messages)


# --- cancelled --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("known", "had_invitation"),
    [
        (None, True),  # we missed its confirmation: better a CANCEL too many than a ghost appointment
        (view(status="confirmed"), True),  # the confirmation e-mail carried the invitation
        (view(status="held"), True),  # the download offered the held time as a tentative event
        (view(status="expired"), False),
        (view(status="rejected"), False),
        (view(status="cancelled"), False),  # the same cancellation seen again
    ],
)
def test_a_cancelled_booking_that_had_an_invitation_gets_a_calendar_cancel(
    known: BookingView | None, had_invitation: bool
) -> None:
    decision = decide(cancelled(), known, POLICY, NOW)
    assert decision.messages[0].kind is Kind.CANCELLATION
    assert (decision.messages[0].context["ics"] is not None) is had_invitation


def test_a_cancellation_raises_the_calendar_sequence_and_voids_what_was_not_sent() -> None:
    decision = decide(cancelled(), view(sequence=2), POLICY, NOW)
    message = decision.messages[0]
    assert message.version == 2 and message.due_at == NOW and message.not_after is None
    # above the invitation's 3 x 2 + 1: calendar apps apply the CANCEL
    assert message.context["ics"] == {"method": "CANCEL", "status": "CANCELLED", "sequence": 8}
    assert (message.context["cancelled_by"], message.context["reason"]) == ("staff", "counter closed")
    # Reminders and confirmations of this time (version 2) and before are void; nothing after it.
    assert decision.void_below == 3 and decision.void_kinds == VOID_ON_END
    assert Kind.PLEASE_CONFIRM in VOID_ON_END and Kind.REMINDER_SMS in VOID_ON_END
    assert decision.state is not None and decision.state.status == "cancelled" and decision.state.language == "nl"


@pytest.mark.parametrize(
    ("by", "start", "texted"),
    [
        ("staff", NOW + SECOND, True),  # staff cancelled: worth a text while the appointment is ahead
        ("staff", NOW, False),  # the appointment starts now: too late for a text to help
        ("staff", NOW - timedelta(hours=1), False),
        ("resident", NOW + timedelta(days=1), False),  # the resident did it themselves
    ],
)
def test_a_cancellation_by_staff_is_also_texted_while_the_appointment_is_ahead(
    by: str, start: datetime, texted: bool
) -> None:
    decision = decide(cancelled(by, start), view(start=start), POLICY, NOW)
    kinds = [m.kind for m in decision.messages]
    assert kinds == ([Kind.CANCELLATION, Kind.CANCELLATION_SMS] if texted else [Kind.CANCELLATION])
    if texted:
        assert decision.messages[1].not_after == start  # pointless once the appointment has begun
        assert decision.messages[1].due_at == NOW


# --- rescheduled, expired, others -------------------------------------------------------------


def test_a_reschedule_moves_the_booking_and_voids_what_was_about_the_old_time() -> None:
    new_start = START + timedelta(days=2)
    decision = decide(rescheduled(new_start, sequence=4), view(sequence=3), POLICY, NOW)
    assert decision.state == view(
        location_id="loc-2",
        start=new_start,
        end=new_start + timedelta(minutes=30),
        language="fr",
        status="confirmed",
        sequence=4,
    )
    notice = decision.messages[0]
    assert (notice.kind, notice.version, notice.due_at, notice.not_after) == (Kind.RESCHEDULED, 4, NOW, new_start)
    assert notice.context["old_start"] == START.isoformat() and notice.context["start"] == new_start.isoformat()
    assert [m.kind for m in decision.messages[1:]] == [Kind.REMINDER, Kind.REMINDER_SMS]
    assert {m.due_at for m in decision.messages[1:]} == {
        new_start - timedelta(hours=24),
        new_start - timedelta(hours=2),
    }
    # Everything of versions below 4 about the old time is void; a please-confirm is not about a time.
    assert decision.void_below == 4 and decision.void_kinds == VOID_ON_MOVE
    assert Kind.PLEASE_CONFIRM not in VOID_ON_MOVE and Kind.REMINDER in VOID_ON_MOVE


def test_a_reschedule_of_a_booking_not_seen_before_is_a_confirmed_booking() -> None:
    new_start = START + timedelta(days=2)
    decision = decide(rescheduled(new_start), None, POLICY, NOW)
    assert decision.state is not None
    assert (decision.state.status, decision.state.sequence, decision.state.booking_id) == ("confirmed", 1, "b1")


def test_an_expired_hold_is_told_and_voids_the_please_confirm() -> None:
    expired = ev.BookingExpired(booking_id="b1", location_id="loc", product_id="p", start=START, language="nl")
    decision = decide(expired, view(status="held", sequence=2), POLICY, NOW)
    (message,) = decision.messages
    assert (message.kind, message.version, message.due_at, message.not_after) == (Kind.EXPIRED, 2, NOW, None)
    cancel = {"method": "CANCEL", "status": "CANCELLED", "sequence": 8}  # of the downloaded tentative event
    assert message.context == {"start": START.isoformat(), "end": END.isoformat(), "ics": cancel}  # the end we knew
    assert decision.void_below == 3 and decision.void_kinds == VOID_ON_END
    assert decision.state is not None and decision.state.status == "expired"
    unseen = decide(expired, None, POLICY, NOW)
    assert unseen.state is not None and unseen.state.end is None and unseen.void_below == 1


def test_events_without_a_message_leave_what_we_know_as_it_was() -> None:
    attendance = ev.AttendanceRecorded(booking_id="b1", location_id="loc", start=START, outcome="checked_in", by="s")
    known = view(sequence=2)
    decision = decide(attendance, known, POLICY, NOW)
    assert decision.state is known and decision.messages == [] and decision.void_below is None


@pytest.mark.parametrize(
    ("known", "version", "valid"),
    [
        (view(status="confirmed", sequence=1), 1, True),
        (view(status="confirmed", sequence=2), 1, False),  # moved since: the reminder is of the old time
        (view(status="confirmed", sequence=1), 2, False),
        (view(status="held", sequence=1), 1, False),
        (view(status="expired", sequence=1), 1, False),
        (view(status="rejected", sequence=1), 1, False),
        (view(status="cancelled", sequence=1), 1, False),
        (None, 0, False),
    ],
)
def test_a_reminder_is_sent_only_for_a_confirmed_booking_still_at_its_time(
    known: BookingView | None, version: int, valid: bool
) -> None:
    assert reminder_still_valid(known, version) is valid


@pytest.mark.parametrize("sequence", [0, 1, 3, 4])
def test_a_cancellation_voids_the_messages_of_every_time_up_to_the_current_one(sequence: int) -> None:
    # Whatever the number of reschedules: the void line sits just above the current time's version.
    assert decide(cancelled(), view(sequence=sequence), POLICY, NOW).void_below == sequence + 1


def test_a_rule_inside_the_last_quarter_hour_does_not_stop_the_rules_after_it() -> None:
    rules = (ReminderRule("sms", timedelta(minutes=10)), ReminderRule("email", timedelta(days=1)))
    assert [p.kind for p in reminders(view(), ReminderPolicy(rules=rules), NOW)] == [Kind.REMINDER]
