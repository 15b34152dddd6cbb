"""Every calendar object (iCalendar, RFC 5545 and 5546) Loket gives out about a booking: the
booking service's `calendar.ics` download and the notifications service's e-mailed invitations,
updates and cancellations come from this one builder, so a calendar keeps one event per booking.

The rules:
- **One UID per booking**, whoever builds the object: `booking-<id>@loket.gent` (`booking_uid`).
- **SEQUENCE only grows** over the booking's life. It is a function of the booking's state, so the
  two services agree without talking to each other: `3 x reschedules + step`, where step is 0
  while held (STATUS:TENTATIVE), 1 once confirmed (CONFIRMED) and 2 once the booking ended
  (CANCELLED: cancelled, expired or rejected). A booking only moves forward (held, then
  confirmed, then ended) and a reschedule adds 3, so every later state has a higher SEQUENCE than
  every earlier one (`event_state`). Check-in, no-show and completion keep the confirmed event.
- **STATUS and METHOD say the booking's state**: TENTATIVE while held, CONFIRMED once confirmed,
  CANCELLED once it ended, which always goes with METHOD:CANCEL; otherwise METHOD:REQUEST in an
  e-mail (an invitation or its update, with the resident as ATTENDEE) and METHOD:PUBLISH for the
  download (`method_for`). A requested booking (not decided yet) has no calendar object.
- **Times**: DTSTART and DTEND in `Europe/Brussels` with its VTIMEZONE (from the tz database,
  for the years of the appointment); DTSTAMP in UTC. LOCATION is the location's name and street
  address (`location_text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone, TimezoneDaylight, TimezoneStandard, vCalAddress, vText

PRODID = "-//Stad Gent//Loket//EN"
UID_DOMAIN = "loket.gent"
TZID = "Europe/Brussels"
BRUSSELS = ZoneInfo(TZID)

EventStatus = Literal["TENTATIVE", "CONFIRMED", "CANCELLED"]
Method = Literal["REQUEST", "PUBLISH", "CANCEL"]

# The event a booking in each state stands for; a requested (or unknown) booking has none.
STATUS_OF_BOOKING: dict[str, EventStatus] = {
    "held": "TENTATIVE",
    "confirmed": "CONFIRMED",
    "checked_in": "CONFIRMED",
    "no_show": "CONFIRMED",
    "completed": "CONFIRMED",
    "cancelled": "CANCELLED",
    "expired": "CANCELLED",
    "rejected": "CANCELLED",
}
_STEP: dict[EventStatus, int] = {"TENTATIVE": 0, "CONFIRMED": 1, "CANCELLED": 2}
STEPS_PER_RESCHEDULE = 3


def booking_uid(booking_id: str) -> str:
    """The UID of the booking's event, the same in every object either service builds."""
    return f"booking-{booking_id}@{UID_DOMAIN}"


@dataclass(frozen=True)
class EventState:
    """What the booking's event is at one step of its life: its STATUS and SEQUENCE."""

    status: EventStatus
    sequence: int


def sequence_of(status: EventStatus, reschedules: int) -> int:
    if reschedules < 0:
        raise ValueError("a booking cannot have been rescheduled a negative number of times")
    return STEPS_PER_RESCHEDULE * reschedules + _STEP[status]


def event_state(booking_status: str, reschedules: int) -> EventState | None:
    """The event of a booking in `booking_status` after `reschedules` reschedules (the booking's
    `sequence`), or None while it is not decided (requested): nothing to put in a calendar yet."""
    status = STATUS_OF_BOOKING.get(booking_status)
    if status is None:
        return None
    return EventState(status, sequence_of(status, reschedules))


def method_for(status: EventStatus, *, email: bool) -> Method:
    """CANCEL once the event is cancelled; else REQUEST in an e-mail, PUBLISH for a download."""
    if status == "CANCELLED":
        return "CANCEL"
    return "REQUEST" if email else "PUBLISH"


def location_text(name: str, address: str | None) -> str:
    """LOCATION: the location's name and street address."""
    return f"{name}, {address}" if address else name


def summary_text(product: str, location: str | None) -> str:
    """SUMMARY: what the appointment is for, and where."""
    return f"{product} - {location}" if location else product


@dataclass(frozen=True)
class Party:
    email: str
    name: str | None = None


DEFAULT_ORGANIZER = Party("afspraken@loket.gent", "Stad Gent - Loket")


@dataclass(frozen=True)
class Appointment:
    booking_id: str
    start: datetime
    end: datetime
    summary: str
    location: str
    description: str = ""
    url: str | None = None


@lru_cache(maxsize=16)
def _vtimezone(first_year: int, last_year: int) -> bytes:
    """Europe/Brussels as a VTIMEZONE from the tz database, every change of offset from the year
    before `first_year` to the end of `last_year` (so the offset on 1 January is defined too).

    Each observance's DTSTART is the local time of its onset in the offset in use before it
    (TZOFFSETFROM), as RFC 5545 defines it: summer time begins at 02:00 (+01:00), winter time at
    03:00 (+02:00). (icalendar's own `Timezone.from_tzid` writes 03:00 for the spring onset.)"""
    observances: dict[tuple[timedelta, timedelta, str, bool], list[datetime]] = {}
    for onset, before, after in _changes(
        datetime(first_year - 1, 1, 1, tzinfo=UTC), datetime(last_year + 1, 1, 1, tzinfo=UTC)
    ):
        local = after.tzname() or ""
        key = (_offset(before), _offset(after), local, after.dst() != timedelta(0))
        observances.setdefault(key, []).append((onset + _offset(before)).replace(tzinfo=None))
    tz = Timezone()
    tz.add("tzid", TZID)
    for (offset_from, offset_to, name, summer), onsets in observances.items():
        part = TimezoneDaylight() if summer else TimezoneStandard()
        part.add("dtstart", onsets[0])
        if onsets[1:]:
            part.add("rdate", onsets[1:])
        part.add("tzoffsetfrom", offset_from)
        part.add("tzoffsetto", offset_to)
        part.add("tzname", name)
        tz.add_component(part)
    data: bytes = tz.to_ical()
    return data


def _offset(local: datetime) -> timedelta:
    offset = local.utcoffset()
    assert offset is not None
    return offset


def _changes(begin: datetime, end: datetime) -> list[tuple[datetime, datetime, datetime]]:
    """The instants (UTC) in [begin, end) where Brussels changes its offset, with the local times
    just before and at the change; found six hours at a time, then to the second."""

    def offset_at(second: int) -> timedelta:
        return _offset(datetime.fromtimestamp(second, BRUSSELS))

    found = []
    step = 6 * 3600
    instant, last = int(begin.timestamp()), int(end.timestamp())
    while instant < last:
        if offset_at(instant) != offset_at(instant + step):
            low, high = instant, instant + step  # the offset changes in (low, high]
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (middle, high) if offset_at(middle) == offset_at(low) else (low, middle)
            found.append(
                (
                    datetime.fromtimestamp(high, UTC),
                    datetime.fromtimestamp(low, BRUSSELS),
                    datetime.fromtimestamp(high, BRUSSELS),
                )
            )
        instant += step
    return found


def _brussels(instant: datetime, what: str) -> datetime:
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{what} must be an aware datetime (an instant), not {instant!r}")
    return instant.astimezone(BRUSSELS)


def build(
    appointment: Appointment,
    state: EventState,
    method: Method,
    *,
    stamp: datetime,
    organizer: Party = DEFAULT_ORGANIZER,
    attendee: Party | None = None,
) -> bytes:
    """The calendar object (one VEVENT, its VTIMEZONE) for `appointment` in `state`.

    Raises ValueError for an object the rules above forbid: a CANCEL that is not CANCELLED (or the
    other way round), a REQUEST without its attendee, naive times, an end before the start."""
    if (method == "CANCEL") != (state.status == "CANCELLED"):
        raise ValueError(f"METHOD:{method} does not go with STATUS:{state.status}")
    if method == "REQUEST" and (attendee is None or not attendee.email):
        raise ValueError("METHOD:REQUEST needs the attendee it is sent to")
    if state.sequence < 0:
        raise ValueError("SEQUENCE is never negative")
    start = _brussels(appointment.start, "start")
    end = _brussels(appointment.end, "end")
    if end < start:
        raise ValueError("the appointment ends before it starts")

    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    cal.add_component(Timezone.from_ical(_vtimezone(start.year, end.year)))

    event = Event()
    event.add("uid", booking_uid(appointment.booking_id))
    event.add("sequence", state.sequence)
    event.add("dtstamp", _brussels(stamp, "stamp").astimezone(UTC))
    event.add("dtstart", start)
    event.add("dtend", end)
    event.add("summary", appointment.summary)
    event.add("location", appointment.location)
    if appointment.description:
        event.add("description", appointment.description)
    event.add("status", state.status)
    event.add("transp", "TRANSPARENT" if state.status == "CANCELLED" else "OPAQUE")
    if appointment.url:
        event.add("url", appointment.url)
    event.add("organizer", _address(organizer))
    if method != "PUBLISH" and attendee is not None and attendee.email:
        address = _address(attendee)
        address.params["role"] = vText("REQ-PARTICIPANT")
        if state.status != "CANCELLED":
            address.params["partstat"] = vText("ACCEPTED" if state.status == "CONFIRMED" else "TENTATIVE")
        address.params["rsvp"] = vText("FALSE")
        event.add("attendee", address)
    cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics


def _address(party: Party) -> vCalAddress:
    address = vCalAddress(f"mailto:{party.email}")
    if party.name:
        address.params["cn"] = vText(party.name)
    return address


__all__ = [
    "BRUSSELS",
    "DEFAULT_ORGANIZER",
    "PRODID",
    "STATUS_OF_BOOKING",
    "TZID",
    "UID_DOMAIN",
    "Appointment",
    "EventState",
    "EventStatus",
    "Method",
    "Party",
    "booking_uid",
    "build",
    "event_state",
    "location_text",
    "method_for",
    "sequence_of",
    "summary_text",
]
