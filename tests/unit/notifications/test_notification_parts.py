"""The small rules around a message: its channel, its idempotency key and the identifiers derived
from it, the unsubscribe token, the retry schedule, the calendar invitation, and the dates as a
resident reads them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from icalendar import Calendar

from loket_notifications.domain import formatting as fmt
from loket_notifications.domain.keys import (
    booking_key,
    message_id,
    notification_id,
    token_matches,
    waitlist_key,
    waitlist_token,
)
from loket_notifications.domain.kinds import CHANNEL, UPCOMING, WITH_ICS, Kind, channel_of
from loket_notifications.domain.retry import RetryPolicy
from loket_runtime.ical import PRODID, Appointment, EventState, Party, booking_uid, build

START = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Ghent
END = START + timedelta(minutes=20)

# --- kinds and channels -----------------------------------------------------------------------


def test_only_the_sms_kinds_go_out_as_texts() -> None:
    texts = {kind for kind in Kind if channel_of(kind) == "sms"}
    assert texts == {Kind.REMINDER_SMS, Kind.CANCELLATION_SMS}
    assert channel_of("waitlist-slot") == "email" and channel_of("reminder-sms") == "sms"
    assert set(CHANNEL) == set(Kind)
    with pytest.raises(ValueError):
        channel_of("fax")  # an unknown kind is refused, not mailed by default


def test_which_kinds_carry_an_invitation_and_which_are_about_an_upcoming_visit() -> None:
    assert WITH_ICS == {Kind.CONFIRMATION, Kind.RESCHEDULED, Kind.CANCELLATION, Kind.EXPIRED}
    assert Kind.REJECTION not in UPCOMING and Kind.CANCELLATION not in UPCOMING
    assert {Kind.CONFIRMATION, Kind.REMINDER, Kind.REMINDER_SMS} <= UPCOMING


# --- keys and identifiers ---------------------------------------------------------------------


def test_keys_name_the_booking_kind_and_version() -> None:
    assert booking_key("b1", "confirmation", 0) == "booking/b1/confirmation/v0"
    assert (
        waitlist_key("s1", "loc", "d1", "2026-12-01T09:00:00+01:00") == "waitlist/s1/loc/d1/2026-12-01T09:00:00+01:00"
    )


def test_identifiers_stay_the_same_across_releases() -> None:
    # A retry after an upgrade must reuse the id and Message-ID of the first attempt, or a resident
    # gets the same message twice: these values are fixed for good.
    key = booking_key("b1", "confirmation", 0)
    assert str(notification_id(key)) == "bd69c8e6-063f-5f64-94d7-b43f91612658"
    assert message_id(key, "loket.gent") == "<bd69c8e6-063f-5f64-94d7-b43f91612658@loket.gent>"


def test_the_unsubscribe_token_is_fixed_short_and_url_safe() -> None:
    # Links in e-mails already sent must keep working after an upgrade: the token is pinned.
    token = waitlist_token("secret", "sub-1")
    assert token == "39ULXfxZkM0qVF0efcupdrsT9fylHiUY"
    assert len(token) == 32 and "=" not in token  # 24 bytes of the HMAC, no padding in the link
    assert token_matches("secret", "sub-1", token)
    assert not token_matches("secret", "sub-1", token[:-1])
    assert not token_matches("secret", "sub-2", token)
    assert not token_matches("other", "sub-1", token)


# --- retries ----------------------------------------------------------------------------------


def test_the_default_schedule_doubles_from_five_seconds_up_to_ten_minutes_over_eight_tries() -> None:
    policy = RetryPolicy()
    waits = [policy.delay(attempt).total_seconds() for attempt in range(1, 9)]
    assert waits == [5, 10, 20, 40, 80, 160, 320, 600]  # 640 s capped at 10 minutes
    assert not policy.gives_up(7)
    assert policy.gives_up(8)  # the eighth failed try is the last
    assert policy.gives_up(9)  # and a count past it (a crash between tries) does not revive it


def test_before_any_failure_the_wait_is_the_base() -> None:
    assert RetryPolicy().delay(0) == timedelta(seconds=5)


def test_jitter_shortens_the_wait_proportionally() -> None:
    policy = RetryPolicy(base_seconds=3, max_seconds=100)
    assert policy.delay(3, jitter=0.5) == timedelta(seconds=6)  # 12 s, halved
    assert policy.delay(3, jitter=0.75) == timedelta(seconds=9)
    assert policy.delay(10, jitter=0.5) == timedelta(seconds=50)  # the cap applies before the jitter


# --- the calendar invitation ------------------------------------------------------------------


def appointment(url: str | None = "https://loket.gent/manage/b1") -> Appointment:
    return Appointment(
        booking_id="b1",
        start=START,
        end=END,
        summary="Residence card",
        location="Migratieloket, Woodrow Wilsonplein 1",
        description="Bring your passport",
        url=url,
    )


ORGANIZER = Party("noreply@loket.gent", "Stad Gent")
RESIDENT = Party("r@example.org")


def event_of(ics: bytes) -> tuple[Calendar, object]:
    cal = Calendar.from_ical(ics)
    return cal, cal.walk("VEVENT")[0]


def test_an_invitation_is_a_confirmed_opaque_event_with_the_booking_details() -> None:
    ics = build(
        appointment(),
        EventState("CONFIRMED", 2),
        "REQUEST",
        stamp=START - timedelta(days=1),
        organizer=ORGANIZER,
        attendee=RESIDENT,
    )
    cal, event = event_of(ics)
    assert cal["METHOD"] == "REQUEST" and cal["PRODID"] == PRODID and cal["VERSION"] == "2.0"
    assert event["STATUS"] == "CONFIRMED" and event["TRANSP"] == "OPAQUE"  # type: ignore[index]
    assert event["UID"] == booking_uid("b1") == "booking-b1@loket.gent"  # type: ignore[index]
    assert event["SEQUENCE"] == 2  # type: ignore[index]
    assert event.decoded("DTSTART") == START and event.decoded("DTEND") == END  # type: ignore[attr-defined]
    assert event["SUMMARY"] == "Residence card" and event["URL"] == "https://loket.gent/manage/b1"  # type: ignore[index]
    assert str(event["ORGANIZER"]) == "mailto:noreply@loket.gent"  # type: ignore[index]
    assert event["ORGANIZER"].params["CN"] == "Stad Gent"  # type: ignore[index]
    attendee = event["ATTENDEE"]  # type: ignore[index]
    assert str(attendee) == "mailto:r@example.org" and attendee.params["PARTSTAT"] == "ACCEPTED"


def test_a_cancel_marks_the_same_event_cancelled() -> None:
    ics = build(appointment(), EventState("CANCELLED", 3), "CANCEL", stamp=START - timedelta(days=1), attendee=RESIDENT)
    cal, event = event_of(ics)
    assert cal["METHOD"] == "CANCEL" and event["STATUS"] == "CANCELLED"  # type: ignore[index]
    assert event["UID"] == "booking-b1@loket.gent" and event["SEQUENCE"] == 3  # type: ignore[index]


def test_an_object_without_a_link_or_an_attendee_leaves_them_out() -> None:
    _, event = event_of(build(appointment(url=None), EventState("CONFIRMED", 0), "PUBLISH", stamp=START))
    assert "URL" not in event and "ATTENDEE" not in event  # type: ignore[operator]
    _, event = event_of(build(appointment(url=""), EventState("CANCELLED", 2), "CANCEL", stamp=START))
    assert "URL" not in event and "ATTENDEE" not in event  # type: ignore[operator]


# --- dates for people -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "long", "short"),
    [
        ("nl", "dinsdag 1 december 2026 om 10:30", "di 1 dec 10:30"),
        ("en", "Tuesday, 1 December 2026 at 10:30", "Tue 1 Dec 10:30"),
        ("fr", "mardi 1 décembre 2026 à 10:30", "mar. 1 déc. 10:30"),
    ],
)
def test_dates_are_written_in_ghent_time_the_way_each_language_does(language: str, long: str, short: str) -> None:
    assert fmt.when(START, language) == long
    assert fmt.when_short(START, language) == short


def test_the_day_is_the_day_in_ghent() -> None:
    late = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)  # already 2 December in Ghent
    assert fmt.local_date(late).isoformat() == "2026-12-02"
    assert fmt.long_date(late, "nl") == "woensdag 2 december 2026"
    summer = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)
    assert fmt.clock(summer, "fr") == "11:30" and fmt.local(summer).utcoffset() == timedelta(hours=2)
