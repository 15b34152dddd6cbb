"""A calendar application, as far as the tests need one: it imports iCalendar objects the way RFC
5546 (iTIP) asks, and checks each object against the rules Loket keeps (loket_runtime.ical).

- Events are kept by UID. An object whose SEQUENCE is lower than the event's is stale and ignored
  (equal SEQUENCE: the later DTSTAMP wins), so a resident's calendar shows what the newest object
  says. REQUEST and PUBLISH create or update the event; CANCEL marks it cancelled.
- `check` parses one object and fails on anything a calendar could misread: not exactly one
  VEVENT, a TZID without its VTIMEZONE (`TZID="UTC+01:00"`), times not in Europe/Brussels or UTC,
  a METHOD that contradicts the STATUS.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from icalendar import Calendar


@dataclass
class Entry:
    uid: str
    sequence: int
    stamp: datetime
    status: str
    start: datetime
    end: datetime
    summary: str
    location: str


@dataclass(frozen=True)
class Parsed:
    method: str
    uid: str
    sequence: int
    stamp: datetime
    status: str
    start: datetime
    end: datetime
    summary: str
    location: str
    attendee: str | None


def check(ics: bytes) -> Parsed:
    cal = Calendar.from_ical(ics)
    events = cal.walk("VEVENT")
    assert len(events) == 1, f"one VEVENT per object, not {len(events)}"
    [event] = events
    method = str(cal["METHOD"])
    status = str(event["STATUS"])
    assert method in ("REQUEST", "PUBLISH", "CANCEL"), method
    assert (method == "CANCEL") == (status == "CANCELLED"), (method, status)
    assert status in ("TENTATIVE", "CONFIRMED", "CANCELLED"), status
    assert not cal.get_missing_tzids(), f"TZID without its VTIMEZONE: {cal.get_missing_tzids()}"
    for name in ("DTSTART", "DTEND"):
        tzid = event[name].params.get("TZID")
        value: datetime = event.decoded(name)
        assert value.tzinfo is not None, f"{name} is a floating time"
        assert tzid in (None, "Europe/Brussels"), f"{name};TZID={tzid}"
        if tzid is None:
            assert value.utcoffset() is not None and value.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    attendee: Any = event.get("ATTENDEE")
    return Parsed(
        method=method,
        uid=str(event["UID"]),
        sequence=int(event["SEQUENCE"]),
        stamp=event.decoded("DTSTAMP"),
        status=status,
        start=event.decoded("DTSTART"),
        end=event.decoded("DTEND"),
        summary=str(event["SUMMARY"]),
        location=str(event["LOCATION"]),
        attendee=str(attendee) if attendee is not None else None,
    )


@dataclass
class CalendarApp:
    events: dict[str, Entry] = field(default_factory=dict)
    stale: list[Parsed] = field(default_factory=list)  # objects ignored as older than the event

    def apply(self, ics: bytes) -> Parsed:
        obj = check(ics)
        known = self.events.get(obj.uid)
        if known is not None and (obj.sequence, obj.stamp) < (known.sequence, known.stamp):
            self.stale.append(obj)
            return obj
        if obj.method == "CANCEL" and known is None:
            return obj  # nothing to cancel: a calendar adds nothing
        self.events[obj.uid] = Entry(
            obj.uid, obj.sequence, obj.stamp, obj.status, obj.start, obj.end, obj.summary, obj.location
        )
        return obj
