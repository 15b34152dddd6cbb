"""The iCalendar object sent with the e-mails, so calendar apps keep one event per booking.

UID is stable per booking; a confirmation is METHOD:REQUEST with SEQUENCE = the booking's
reschedule count, each reschedule raises it, and a cancellation is METHOD:CANCEL with a higher
SEQUENCE still, so every client applies the messages in order to the same event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from icalendar import Calendar, Event, vCalAddress, vText

PRODID = "-//Stad Gent//Loket//EN"


def booking_uid(booking_id: str, domain: str) -> str:
    return f"booking-{booking_id}@{domain}"


@dataclass(frozen=True)
class Appointment:
    booking_id: str
    start: datetime
    end: datetime
    summary: str
    location: str
    description: str
    organizer_email: str
    organizer_name: str
    attendee_email: str | None
    url: str | None = None


def build_ics(
    appt: Appointment, method: Literal["REQUEST", "CANCEL"], sequence: int, stamp: datetime, domain: str
) -> bytes:
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", method)
    event = Event()
    event.add("uid", booking_uid(appt.booking_id, domain))
    event.add("sequence", sequence)
    event.add("dtstamp", stamp)
    event.add("dtstart", appt.start)
    event.add("dtend", appt.end)
    event.add("summary", appt.summary)
    event.add("location", appt.location)
    event.add("description", appt.description)
    event.add("status", "CANCELLED" if method == "CANCEL" else "CONFIRMED")
    event.add("transp", "OPAQUE")
    if appt.url:
        event.add("url", appt.url)
    organizer = vCalAddress(f"mailto:{appt.organizer_email}")
    organizer.params["cn"] = vText(appt.organizer_name)
    event.add("organizer", organizer)
    if appt.attendee_email:
        attendee = vCalAddress(f"mailto:{appt.attendee_email}")
        attendee.params["role"] = vText("REQ-PARTICIPANT")
        attendee.params["partstat"] = vText("ACCEPTED")
        attendee.params["rsvp"] = vText("FALSE")
        event.add("attendee", attendee)
    cal.add_component(event)
    ics: bytes = cal.to_ical()
    return ics
