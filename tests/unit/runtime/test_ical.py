"""The one builder of calendar objects (loket_runtime.ical), parsed back with icalendar and held
against the rules: one UID per booking, a SEQUENCE that only grows through every life a booking
can have, STATUS and METHOD that say the booking's state, times in Europe/Brussels with a
VTIMEZONE that RFC 5545 readers turn into the tz database's offsets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from icalendar import Calendar

from loket_runtime import ical

START = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)  # 10:30 in Ghent
END = START + timedelta(minutes=20)
RESIDENT = ical.Party("anna@example.org", "Anna Peeters")


def appointment(start: datetime = START, end: datetime = END, **changes: Any) -> ical.Appointment:
    data: dict[str, Any] = dict(
        booking_id="b1",
        start=start,
        end=end,
        summary="Residence card - Loket Migratie, Stadskantoor Gent",
        location="Loket Migratie, Stadskantoor Gent, Woodrow Wilsonplein 1, 9000 Gent",
        description="Bring your passport",
        url="https://loket.gent/manage/b1?token=t",
    )
    data.update(changes)
    return ical.Appointment(**data)


def parsed(ics: bytes) -> tuple[Calendar, Any]:
    cal = Calendar.from_ical(ics)
    [event] = cal.walk("VEVENT")
    return cal, event


# --- which event a booking in each state is ---------------------------------------------------


@pytest.mark.parametrize(
    ("booking_status", "status", "step"),
    [
        ("held", "TENTATIVE", 0),
        ("confirmed", "CONFIRMED", 1),
        ("checked_in", "CONFIRMED", 1),
        ("no_show", "CONFIRMED", 1),
        ("completed", "CONFIRMED", 1),
        ("cancelled", "CANCELLED", 2),
        ("expired", "CANCELLED", 2),
        ("rejected", "CANCELLED", 2),
    ],
)
@pytest.mark.parametrize("reschedules", [0, 1, 4])
def test_each_booking_state_is_one_event_status_and_sequence(
    booking_status: str, status: str, step: int, reschedules: int
) -> None:
    assert ical.event_state(booking_status, reschedules) == ical.EventState(status, 3 * reschedules + step)  # type: ignore[arg-type]


@pytest.mark.parametrize("booking_status", ["new", "requested", "something-else"])
def test_a_booking_not_decided_has_no_event(booking_status: str) -> None:
    assert ical.event_state(booking_status, 0) is None


def test_a_negative_reschedule_count_is_refused() -> None:
    with pytest.raises(ValueError):
        ical.event_state("confirmed", -1)


def test_method_says_cancelled_and_otherwise_how_the_object_travels() -> None:
    assert ical.method_for("CANCELLED", email=True) == ical.method_for("CANCELLED", email=False) == "CANCEL"
    for status in ("TENTATIVE", "CONFIRMED"):
        assert ical.method_for(status, email=True) == "REQUEST"  # type: ignore[arg-type]
        assert ical.method_for(status, email=False) == "PUBLISH"  # type: ignore[arg-type]


# Every step a booking can take, from a decided state: the booking's (status, reschedules) after it.
def _step(state: tuple[str, int], move: str) -> tuple[str, int] | None:
    status, reschedules = state
    if status in ("cancelled", "expired", "rejected", "completed", "no_show"):
        return None  # final
    match move:
        case "reschedule" if status in ("held", "confirmed"):
            return status, reschedules + 1
        case "confirm" if status == "held":
            return "confirmed", reschedules
        case "expire" if status == "held":
            return "expired", reschedules
        case "cancel" if status in ("held", "confirmed"):
            return "cancelled", reschedules
        case "check-in" if status == "confirmed":
            return "checked_in", reschedules
        case "no-show" if status == "confirmed":
            return "no_show", reschedules
        case "complete" if status == "checked_in":
            return "completed", reschedules
    return state  # not possible now: nothing happens


MOVES = st.sampled_from(["reschedule", "confirm", "expire", "cancel", "check-in", "no-show", "complete"])


@given(first=st.sampled_from(["held", "confirmed", "rejected"]), moves=st.lists(MOVES, max_size=25))
def test_sequence_only_grows_through_every_life_a_booking_can_have(first: str, moves: list[str]) -> None:
    """A booking decided held, confirmed or rejected, then any steps the aggregate allows: each
    change of the event (its status or its time) raises SEQUENCE, and nothing ever lowers it."""
    state: tuple[str, int] | None = (first, 0)
    seen = [ical.event_state(*state)]
    for move in moves:
        assert state is not None
        after = _step(state, move)
        if after is None:
            break
        if after != state:
            event_before, event_after = ical.event_state(*state), ical.event_state(*after)
            assert event_before is not None and event_after is not None
            if (event_before.status, state[1]) != (event_after.status, after[1]):
                assert event_after.sequence > event_before.sequence, (state, after)
            else:
                assert event_after == event_before  # attendance: the same confirmed event
            seen.append(event_after)
        state = after
    sequences = [s.sequence for s in seen if s is not None]
    assert sequences == sorted(sequences)


# --- the object ---------------------------------------------------------------------------------


def test_an_invitation_parses_with_its_uid_sequence_status_and_brussels_times() -> None:
    ics = ical.build(appointment(), ical.EventState("CONFIRMED", 4), "REQUEST", stamp=START, attendee=RESIDENT)
    cal, event = parsed(ics)
    assert cal["METHOD"] == "REQUEST" and cal["VERSION"] == "2.0" and cal["PRODID"] == ical.PRODID
    assert str(event["UID"]) == ical.booking_uid("b1") == "booking-b1@loket.gent"
    assert event["SEQUENCE"] == 4 and str(event["STATUS"]) == "CONFIRMED" and str(event["TRANSP"]) == "OPAQUE"
    assert event["DTSTART"].params["TZID"] == event["DTEND"].params["TZID"] == "Europe/Brussels"
    assert b"DTSTART;TZID=Europe/Brussels:20261201T103000" in ics  # 10:30 wall-clock time in Ghent
    assert event.decoded("DTSTART") == START and event.decoded("DTEND") == END
    assert event.decoded("DTSTAMP") == START and event.decoded("DTSTAMP").tzinfo is not None
    assert [tz.tz_name for tz in cal.timezones] == ["Europe/Brussels"] and not cal.get_missing_tzids()
    assert "Woodrow Wilsonplein 1" in str(event["LOCATION"]) and "Loket Migratie" in str(event["LOCATION"])
    assert str(event["ORGANIZER"]) == "mailto:afspraken@loket.gent"
    attendee = event["ATTENDEE"]
    assert str(attendee) == "mailto:anna@example.org" and attendee.params["CN"] == "Anna Peeters"
    assert attendee.params["PARTSTAT"] == "ACCEPTED" and attendee.params["RSVP"] == "FALSE"


def test_a_fixed_offset_time_still_travels_as_brussels_time() -> None:
    """The old e-mails wrote `DTSTART;TZID="UTC+01:00"` (the offset of a parsed ISO string) and no
    VTIMEZONE: whatever zone the instant comes in, the object names Europe/Brussels."""
    plus_one = START.astimezone(timezone(timedelta(hours=1)))
    ics = ical.build(
        appointment(plus_one, END.astimezone(timezone(timedelta(hours=5)))),
        ical.EventState("CONFIRMED", 1),
        "PUBLISH",
        stamp=plus_one,
    )
    cal, event = parsed(ics)
    assert b"UTC+" not in ics and event["DTSTART"].params["TZID"] == "Europe/Brussels"
    assert event.decoded("DTSTART") == START and event.decoded("DTEND") == END
    assert not cal.get_missing_tzids()
    assert b"DTSTAMP:20261201T093000Z" in ics


def test_a_held_booking_is_a_tentative_event() -> None:
    _, event = parsed(
        ical.build(appointment(), ical.EventState("TENTATIVE", 3), "REQUEST", stamp=START, attendee=RESIDENT)
    )
    assert str(event["STATUS"]) == "TENTATIVE" and event["ATTENDEE"].params["PARTSTAT"] == "TENTATIVE"
    _, event = parsed(ical.build(appointment(), ical.EventState("TENTATIVE", 0), "PUBLISH", stamp=START))
    assert str(event["STATUS"]) == "TENTATIVE" and "ATTENDEE" not in event  # PUBLISH names no attendee


def test_a_cancel_is_the_same_event_cancelled_and_frees_the_time() -> None:
    cal, event = parsed(
        ical.build(appointment(), ical.EventState("CANCELLED", 5), "CANCEL", stamp=START, attendee=RESIDENT)
    )
    assert cal["METHOD"] == "CANCEL" and str(event["STATUS"]) == "CANCELLED" and str(event["TRANSP"]) == "TRANSPARENT"
    assert str(event["UID"]) == "booking-b1@loket.gent" and event["SEQUENCE"] == 5
    assert str(event["ATTENDEE"]) == "mailto:anna@example.org" and "PARTSTAT" not in event["ATTENDEE"].params


def test_optional_parts_are_left_out_when_empty() -> None:
    _, event = parsed(
        ical.build(appointment(description="", url=None), ical.EventState("CANCELLED", 2), "CANCEL", stamp=START)
    )
    assert "DESCRIPTION" not in event and "URL" not in event and "ATTENDEE" not in event


@pytest.mark.parametrize(
    ("status", "method"),
    [("CONFIRMED", "CANCEL"), ("TENTATIVE", "CANCEL"), ("CANCELLED", "REQUEST"), ("CANCELLED", "PUBLISH")],
)
def test_a_method_that_contradicts_the_status_is_refused(status: str, method: str) -> None:
    with pytest.raises(ValueError):
        ical.build(appointment(), ical.EventState(status, 1), method, stamp=START, attendee=RESIDENT)  # type: ignore[arg-type]


def test_an_invitation_needs_its_attendee_and_times_must_be_instants() -> None:
    with pytest.raises(ValueError):
        ical.build(appointment(), ical.EventState("CONFIRMED", 1), "REQUEST", stamp=START)
    with pytest.raises(ValueError):
        ical.build(appointment(), ical.EventState("CONFIRMED", 1), "REQUEST", stamp=START, attendee=ical.Party(""))
    with pytest.raises(ValueError):
        ical.build(
            appointment(start=START.replace(tzinfo=None)), ical.EventState("CONFIRMED", 1), "PUBLISH", stamp=START
        )
    with pytest.raises(ValueError):
        ical.build(appointment(start=END, end=START), ical.EventState("CONFIRMED", 1), "PUBLISH", stamp=START)
    with pytest.raises(ValueError):
        ical.build(appointment(), ical.EventState("CONFIRMED", -1), "PUBLISH", stamp=START)


def test_location_and_summary_texts() -> None:
    assert ical.location_text("Loket Migratie", "Woodrow Wilsonplein 1, 9000 Gent") == (
        "Loket Migratie, Woodrow Wilsonplein 1, 9000 Gent"
    )
    assert ical.location_text("Loket Migratie", "") == "Loket Migratie"
    assert ical.summary_text("Residence card", "Loket Migratie") == "Residence card - Loket Migratie"
    assert ical.summary_text("Residence card", None) == "Residence card"


# --- the VTIMEZONE ------------------------------------------------------------------------------


def onsets(cal: Calendar) -> list[tuple[datetime, timedelta]]:
    """Each observance's onsets as UTC instants, read as RFC 5545 defines them: DTSTART (and each
    RDATE) is a local time in the offset in use before the onset, TZOFFSETFROM."""
    found = []
    [vtimezone] = cal.timezones
    for part in vtimezone.subcomponents:
        offset_from, offset_to = part.decoded("TZOFFSETFROM"), part.decoded("TZOFFSETTO")
        locals_ = [part.decoded("DTSTART")]
        for rdate in part.get("RDATE", []) if isinstance(part.get("RDATE"), list) else [part.get("RDATE")]:
            if rdate is not None:
                locals_.extend(d.dt for d in rdate.dts)
        for local in locals_:
            assert local.tzinfo is None  # a local time, as RFC 5545 wants it
            found.append(((local - offset_from).replace(tzinfo=UTC), offset_to))
    return sorted(found)


def offset_by_vtimezone(cal: Calendar, instant: datetime) -> timedelta:
    before = [offset for onset, offset in onsets(cal) if onset <= instant]
    assert before, f"the VTIMEZONE does not reach back to {instant}"
    return before[-1]


@pytest.mark.parametrize(
    "start",
    [
        datetime(2026, 12, 1, 9, 30, tzinfo=UTC),  # winter
        datetime(2026, 7, 1, 8, 30, tzinfo=UTC),  # summer
        datetime(2027, 3, 29, 7, 0, tzinfo=UTC),  # the Monday after summer time began
        datetime(2026, 10, 26, 8, 0, tzinfo=UTC),  # the Monday after it ended
        datetime(2027, 12, 31, 12, 0, tzinfo=UTC),  # the last day of a year
    ],
)
def test_the_vtimezone_gives_the_tz_database_offset_around_the_appointment(start: datetime) -> None:
    cal, _ = parsed(
        ical.build(
            appointment(start, start + timedelta(minutes=45)), ical.EventState("CONFIRMED", 1), "PUBLISH", stamp=START
        )
    )
    assert offset_by_vtimezone(cal, start) == start.astimezone(ical.BRUSSELS).utcoffset()
    # Every half hour of the appointment's year and the next, the changes of offset included.
    instant = datetime(start.year, 1, 1, tzinfo=UTC)
    while instant < datetime(start.year + 1, 1, 1, tzinfo=UTC):
        assert offset_by_vtimezone(cal, instant) == instant.astimezone(ical.BRUSSELS).utcoffset(), instant
        instant += timedelta(minutes=30)


def test_summer_time_begins_at_two_and_ends_at_three_local_time() -> None:
    cal, _ = parsed(ical.build(appointment(), ical.EventState("CONFIRMED", 1), "PUBLISH", stamp=START))
    [vtimezone] = cal.timezones
    by_name = {str(part["TZNAME"]): part for part in vtimezone.subcomponents}
    assert by_name["CEST"].name == "DAYLIGHT" and by_name["CET"].name == "STANDARD"
    assert by_name["CEST"].decoded("DTSTART").time().hour == 2 and by_name["CET"].decoded("DTSTART").time().hour == 3
    assert by_name["CEST"].decoded("TZOFFSETTO") == timedelta(hours=2)
    assert by_name["CET"].decoded("TZOFFSETTO") == timedelta(hours=1)
