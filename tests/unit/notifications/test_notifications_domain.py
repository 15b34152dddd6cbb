"""Pure rules of the notifications service: planning, reminders, SMS text, keys, retries, ICS."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from loket_contracts import events as ev
from loket_notifications.domain import formatting as fmt
from loket_notifications.domain import sms
from loket_notifications.domain.keys import booking_key, message_id, notification_id, token_matches, waitlist_token
from loket_notifications.domain.kinds import Kind, channel_of
from loket_notifications.domain.planning import (
    BookingView,
    ReminderPolicy,
    ReminderRule,
    decide,
    reminder_still_valid,
    reminders,
    rules_from_config,
)
from loket_notifications.domain.retry import RetryPolicy
from loket_runtime.ical import Appointment, EventState, Party, build

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
START = NOW + timedelta(days=3)
END = START + timedelta(minutes=20)
POLICY = ReminderPolicy()


def confirmed(**kw: object) -> ev.BookingConfirmed:
    data = dict(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=START,
        end=END,
        confirmed_by="calendar",
        language="en",
    )
    data.update(kw)
    return ev.BookingConfirmed(**data)  # type: ignore[arg-type]


def view(**kw: object) -> BookingView:
    data = dict(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        start=START,
        end=END,
        language="en",
        status="confirmed",
        sequence=0,
    )
    data.update(kw)
    return BookingView(**data)  # type: ignore[arg-type]


def kinds(decision) -> list[str]:  # type: ignore[no-untyped-def]
    return [m.kind.value for m in decision.messages]


# --- planning -------------------------------------------------------------------------------


def test_confirmation_plans_message_and_both_reminders() -> None:
    decision = decide(confirmed(), None, POLICY, NOW)
    assert kinds(decision) == ["confirmation", "reminder", "reminder-sms"]
    assert decision.state is not None and decision.state.status == "confirmed"
    reminder = {m.kind: m for m in decision.messages}
    assert reminder[Kind.REMINDER].due_at == START - timedelta(hours=24)
    assert reminder[Kind.REMINDER_SMS].due_at == START - timedelta(hours=2)
    assert all(m.version == 0 for m in decision.messages)


def test_reminder_already_due_at_decision_is_not_planned() -> None:
    start = NOW + timedelta(hours=5)  # booked 5 h ahead: the 24 h e-mail is moot, the 2 h SMS is not
    decision = decide(confirmed(start=start, end=start + timedelta(minutes=20)), None, POLICY, NOW)
    assert kinds(decision) == ["confirmation", "reminder-sms"]


def test_reminder_may_be_late_within_grace_but_not_near_start() -> None:
    planned = reminders(view(), POLICY, NOW)
    email = next(p for p in planned if p.kind is Kind.REMINDER)
    assert email.not_after == email.due_at + POLICY.grace
    sms_reminder = next(p for p in planned if p.kind is Kind.REMINDER_SMS)
    assert sms_reminder.not_after == START - POLICY.min_lead


def test_held_plans_please_confirm_until_hold_expires() -> None:
    held = ev.BookingHeld(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=START,
        end=END,
        hold_expires_at=NOW + timedelta(minutes=30),
        language="fr",
    )
    decision = decide(held, None, POLICY, NOW)
    assert kinds(decision) == ["please-confirm"]
    assert decision.messages[0].not_after == NOW + timedelta(minutes=30)
    assert decision.state is not None and decision.state.status == "held"


def test_rejection_carries_alternatives() -> None:
    rejected = ev.BookingRejected(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        start=START,
        reason="slot-taken",
        alternatives=[ev.Slot(start=START + timedelta(hours=1), end=END, location_id="x")],
    )
    decision = decide(rejected, None, POLICY, NOW)
    assert kinds(decision) == ["rejection"]
    assert decision.messages[0].context["alternatives"][0]["location_id"] == "x"


def test_cancellation_by_staff_voids_reminders_and_texts() -> None:
    cancelled = ev.BookingCancelled(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=START,
        end=END,
        cancelled_by="staff",
        reason="closure",
        cancelled_at=NOW,
    )
    decision = decide(cancelled, view(sequence=2), POLICY, NOW)
    assert kinds(decision) == ["cancellation", "cancellation-sms"]
    assert decision.void_below == 3 and Kind.PLEASE_CONFIRM in decision.void_kinds
    assert decision.messages[0].version == 2
    # the CANCEL's SEQUENCE (3 x 2 reschedules + 2) is above the invitation's (3 x 2 + 1)
    assert decision.messages[0].context["ics"] == {"method": "CANCEL", "status": "CANCELLED", "sequence": 8}
    assert decision.messages[0].context["cancelled_by"] == "staff"


def test_cancellation_by_resident_sends_no_sms() -> None:
    cancelled = ev.BookingCancelled(
        booking_id="b1",
        location_id="loc",
        product_id="p",
        desk_id="d",
        start=START,
        end=END,
        cancelled_by="resident",
        reason="",
        cancelled_at=NOW,
    )
    assert kinds(decide(cancelled, view(), POLICY, NOW)) == ["cancellation"]


def test_reschedule_raises_version_and_replans_reminders() -> None:
    new_start = START + timedelta(days=1)
    moved = ev.BookingRescheduled(
        booking_id="b1",
        request_id="r",
        location_id="loc",
        product_id="p",
        desk_id="d",
        old_start=START,
        start=new_start,
        end=new_start + timedelta(minutes=20),
        sequence=1,
        language="en",
    )
    decision = decide(moved, view(), POLICY, NOW)
    assert kinds(decision) == ["rescheduled", "reminder", "reminder-sms"]
    assert {m.version for m in decision.messages} == {1}
    assert decision.void_below == 1 and Kind.REMINDER in decision.void_kinds
    assert decision.state is not None and decision.state.sequence == 1 and decision.state.start == new_start


def test_expired_voids_everything() -> None:
    expired = ev.BookingExpired(booking_id="b1", location_id="loc", product_id="p", start=START, language="nl")
    decision = decide(expired, view(status="held"), POLICY, NOW)
    assert kinds(decision) == ["expired"]
    assert decision.state is not None and decision.state.status == "expired"


def test_reminder_valid_only_for_the_current_confirmed_time() -> None:
    assert reminder_still_valid(view(), 0)
    assert not reminder_still_valid(view(sequence=1), 0)
    assert not reminder_still_valid(view(status="cancelled"), 0)
    assert not reminder_still_valid(None, 0)


def test_rules_from_config() -> None:
    rules = rules_from_config([{"channel": "sms", "hours_before": 3}, {"channel": "email", "minutes_before": 90}])
    assert rules == (ReminderRule("sms", timedelta(hours=3)), ReminderRule("email", timedelta(minutes=90)))


def test_other_events_plan_nothing() -> None:
    attendance = ev.AttendanceRecorded(booking_id="b1", location_id="loc", start=START, outcome="checked_in", by="s")
    assert decide(attendance, None, POLICY, NOW).messages == []


# --- keys -----------------------------------------------------------------------------------


def test_keys_are_stable_and_distinct() -> None:
    key = booking_key("b1", "confirmation", 0)
    assert notification_id(key) == notification_id(booking_key("b1", "confirmation", 0))
    assert notification_id(key) != notification_id(booking_key("b1", "confirmation", 1))
    assert message_id(key, "loket.gent") == f"<{notification_id(key)}@loket.gent>"
    assert channel_of(Kind.REMINDER_SMS) == "sms" and channel_of("confirmation") == "email"


def test_waitlist_token() -> None:
    token = waitlist_token("secret", "sub-1")
    assert token_matches("secret", "sub-1", token)
    assert not token_matches("secret", "sub-2", token)
    assert not token_matches("other", "sub-1", token)


# --- retries --------------------------------------------------------------------------------


def test_backoff_doubles_and_is_capped() -> None:
    policy = RetryPolicy(max_attempts=5, base_seconds=2, max_seconds=10)
    assert [policy.delay(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 10]
    assert policy.delay(2, jitter=0.5).total_seconds() == 2
    assert not policy.gives_up(4) and policy.gives_up(5)


# --- SMS ------------------------------------------------------------------------------------


def test_gsm7_counts_extension_characters_twice() -> None:
    assert sms.septets("abc") == 3
    assert sms.septets("€[") == 4
    with pytest.raises(ValueError):
        sms.septets("ê")


def test_to_gsm7_transliterates() -> None:
    assert sms.to_gsm7("é è à ü") == "é è à ü"  # in the GSM-7 alphabet
    assert sms.to_gsm7("ê ç ô “x” – …") == 'e c o "x" - ...'
    assert sms.is_gsm7(sms.to_gsm7("Déjà vu? Ça va! Łódź 日本"))


def test_compose_keeps_one_sms_and_adds_link_only_if_it_fits() -> None:
    essential = "Ville de Gand : rappel de votre rendez-vous mer. 2 déc. 10:30 à Guichet Migration."
    link = "http://127.0.0.1:8000/manage/0190-abc?token=xyz"
    text = sms.compose(essential, [link])
    assert text.endswith(link) and sms.septets(text) <= 160 and sms.is_gsm7(text)
    long_link = "http://example.org/" + "x" * 120
    text = sms.compose(essential, [long_link])
    assert "example.org" not in text and sms.septets(text) <= 160


@pytest.mark.parametrize("length", [159, 160, 161, 400])
def test_compose_truncates_long_text(length: int) -> None:
    text = sms.compose("a" * length)
    assert sms.septets(text) <= 160
    assert text.endswith("...") == (length > 160)


def test_compose_with_extension_characters_at_the_limit() -> None:
    text = sms.compose("€" * 100)
    assert sms.septets(text) <= 160


# --- formatting -----------------------------------------------------------------------------


def test_dates_in_brussels_per_language() -> None:
    winter = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Brussels (CET)
    summer = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)  # 11:30 (CEST)
    assert fmt.when(winter, "nl") == "dinsdag 1 december 2026 om 10:30"
    assert fmt.when(winter, "en") == "Tuesday, 1 December 2026 at 10:30"
    assert fmt.when(winter, "fr") == "mardi 1 décembre 2026 à 10:30"
    assert fmt.clock(summer, "en") == "11:30"


# --- ICS ------------------------------------------------------------------------------------


def test_ics_request_and_cancel_share_uid() -> None:
    appt = Appointment(
        "b1", START, END, "Residence card", "Counter, Street 1", "Bring your passport", "http://x/manage"
    )
    resident = Party("r@example.org")
    request = Calendar.from_ical(build(appt, EventState("CONFIRMED", 0), "REQUEST", stamp=NOW, attendee=resident))
    cancel = Calendar.from_ical(build(appt, EventState("CANCELLED", 1), "CANCEL", stamp=NOW, attendee=resident))
    assert request["METHOD"] == "REQUEST" and cancel["METHOD"] == "CANCEL"
    req_event = request.walk("VEVENT")[0]
    cancel_event = cancel.walk("VEVENT")[0]
    assert req_event["UID"] == cancel_event["UID"] == "booking-b1@loket.gent"
    assert req_event["SEQUENCE"] == 0 and cancel_event["SEQUENCE"] == 1
    assert cancel_event["STATUS"] == "CANCELLED"
    assert req_event.decoded("DTSTART") == START
