"""The DST days (2026-10-25, 2027-03-28) and the weeks around them: slots open at 09:00 Brussels
time on both sides of the change, and are shown with the offset in force that day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loket_calendar.domain.agenda import changes_for, merge, row_of, version
from loket_calendar.domain.schedule import Rejection, free_desk, free_starts
from loket_calendar.entrypoints.app import brussels
from loket_contracts import events as ev
from tests.unit.calendar.model import make_view

NOW = datetime(2026, 9, 1, tzinfo=UTC)


def days_around(change: date) -> list[date]:
    return [change + timedelta(days=n) for n in range(-7, 8)]


@pytest.mark.parametrize(
    ("change", "before", "after"),
    [(date(2026, 10, 25), "+02:00", "+01:00"), (date(2027, 3, 28), "+01:00", "+02:00")],
)
def test_slots_open_at_nine_local_with_the_right_offset(change: date, before: str, after: str) -> None:
    view = make_view(every_day=True)
    for day in days_around(change):
        slots = free_starts(view, "loc", "card", day, [], NOW)
        shown = [brussels(s.start) for s in slots]
        offset = before if day < change else after
        assert shown[0] == f"{day.isoformat()}T09:00:00{offset}", day
        assert all(s.endswith(offset) for s in shown), day
        # 09:00-12:30 and 14:00-16:00 on d1, 09:00-11:00 on d2: the same 31 starts every day,
        # each 20 real minutes long, also on the 23- and 25-hour days.
        assert len(slots) == 31, day
        assert all(s.end - s.start == timedelta(minutes=20) for s in slots)
        assert brussels(slots[-1].start) == f"{day.isoformat()}T15:40:00{offset}"


def test_the_instant_of_nine_oclock_moves_by_an_hour_in_utc() -> None:
    view = make_view(every_day=True)
    firsts = {
        day: free_starts(view, "loc", "card", day, [], NOW)[0].start.astimezone(UTC).strftime("%H:%M")
        for day in (date(2026, 10, 24), date(2026, 10, 25), date(2027, 3, 27), date(2027, 3, 28))
    }
    assert firsts == {
        date(2026, 10, 24): "07:00",
        date(2026, 10, 25): "08:00",
        date(2027, 3, 27): "08:00",
        date(2027, 3, 28): "07:00",
    }


@pytest.mark.parametrize("day", [date(2026, 10, 25), date(2026, 10, 26), date(2027, 3, 28), date(2027, 3, 29)])
def test_a_request_given_in_any_offset_is_placed_at_the_same_instant(day: date) -> None:
    view = make_view(every_day=True)
    first = free_starts(view, "loc", "card", day, [], NOW)[0]
    as_utc = first.start.astimezone(UTC)  # a frontend may send UTC: it is the same instant
    desk = free_desk(view, "loc", "card", as_utc, [], NOW)
    assert not isinstance(desk, Rejection)
    off = free_desk(view, "loc", "card", as_utc + timedelta(minutes=5), [], NOW)
    assert isinstance(off, Rejection) and off.reason == "off-grid"
    early = free_desk(view, "loc", "card", as_utc - timedelta(hours=1), [], NOW)
    assert isinstance(early, Rejection) and early.reason == "outside-hours"  # 08:00 local, not 09:00


def test_the_agenda_puts_an_appointment_on_its_local_day_across_the_change() -> None:
    start = datetime.fromisoformat("2026-10-25T09:00:00+01:00")
    event = ev.SlotReserved(
        booking_id="b",
        location_id="loc",
        product_id="card",
        desk_id="d1",
        start=start,
        end=start + timedelta(minutes=20),
    )
    changes = changes_for(event)
    assert changes is not None
    row = row_of(merge({}, changes, version(NOW, "e1")))
    assert row is not None
    assert row["day"] == date(2026, 10, 25)
    assert brussels(row["start_at"]) == "2026-10-25T09:00:00+01:00"
    assert brussels(row["end_at"]) == "2026-10-25T09:20:00+01:00"
