"""Helpers for tests that talk to the running stack over HTTP, as a frontend would.

Days are chosen by what a test needs, never by an offset from today: `open_day` asks availability
for the first day with free starts (on a given weekday if the test needs that day's hours), so the
suite passes on Christmas week, at a DST change or at year end. "Today" is the stack's clock
(`loket_runtime.clock`), which `make test-dates` moves to other days.
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from typing import Any

import httpx

from loket_runtime import clock

_names = itertools.count(1)

# The API answers in the language asked for, Dutch when none is (docs/languages.md): tests that
# read its texts ask for the English ones.
ENGLISH = {"Accept-Language": "en"}
MAX_DAYS_AHEAD = 60  # the seed's booking window (every product's max_days_ahead)
# Every day handed out, and the ones asked for with exclusive=True, per location: an exclusive day
# is one no other test of this run books (a storm counts its free desks, an agenda its rows).
_handed_out: set[tuple[str, date]] = set()
_exclusive: set[tuple[str, date]] = set()


def today() -> date:
    """Today in Brussels on the stack's clock (moved by `make test-dates`, see tests/conftest.py)."""
    return clock.today()


def wall(day: date, hh: int, mm: int) -> str:
    """A Brussels wall-clock time on `day` as the API writes it (ISO 8601 with its offset)."""
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=clock.BRUSSELS).isoformat()


def free_by_day(
    client: httpx.Client, product: str, location: str, first: date, last: date
) -> dict[date, list[dict[str, str]]]:
    """The free starts of `product` at `location` from `first` to `last` (Brussels days), by day."""
    r = client.get(
        "/api/v1/availability",
        params={"product": product, "location": location, "from": first.isoformat(), "to": last.isoformat()},
    )
    r.raise_for_status()
    by_day: dict[date, list[dict[str, str]]] = {}
    for slot in r.json()["slots"]:
        by_day.setdefault(datetime.fromisoformat(slot["start"]).astimezone(clock.BRUSSELS).date(), []).append(slot)
    return by_day


def free_slots(client: httpx.Client, product: str, location: str, day: date) -> list[dict[str, str]]:
    return free_by_day(client, product, location, day, day).get(day, [])


def open_day(
    client: httpx.Client,
    product: str,
    location: str,
    *,
    weekday: int | None = None,
    not_before: date | None = None,
    min_free: int = 5,
    exclusive: bool = False,
    timeout: float = 30,
) -> date:
    """The first day from `not_before` (default: two days from today) to the end of the booking
    window on which `location` offers at least `min_free` free starts of `product`, on ISO
    `weekday` (1 = Monday) when the test needs that day's hours. Holidays, closures and full days
    have no free starts, so they are skipped whatever the date the suite runs on.

    `exclusive=True` skips every day already given to another test at `location` and keeps this one
    for the caller alone. Waits up to `timeout` seconds (the catalogue reaches the calendar a moment
    after the stack starts); fails the test with AssertionError when no day qualifies.
    """
    first = not_before or today() + timedelta(days=2)
    last = today() + timedelta(days=MAX_DAYS_AHEAD)
    taken = _handed_out if exclusive else _exclusive

    def find() -> date | None:
        try:
            by_day = free_by_day(client, product, location, first, last)
        except httpx.HTTPStatusError as error:
            if error.response.status_code == 422:  # a product or location the calendar has not seen yet
                return None
            raise
        for day in sorted(by_day):
            if weekday in (None, day.isoweekday()) and (location, day) not in taken and len(by_day[day]) >= min_free:
                return day
        return None

    found: date | None = wait_until(find, timeout=timeout)
    assert found, f"no day from {first} to {last} with {min_free} free {product} starts at {location} ({weekday=})"
    _handed_out.add((location, found))
    if exclusive:
        _exclusive.add((location, found))
    return found


def disjoint(slots: list[dict[str, str]]) -> list[dict[str, str]]:
    """The free slots, in order, that do not overlap the one chosen before (a 15-minute product on a
    10-minute grid overlaps the next start): times that several bookings can hold at once."""
    chosen: list[dict[str, str]] = []
    for slot in slots:
        if not chosen or datetime.fromisoformat(slot["start"]) >= datetime.fromisoformat(chosen[-1]["end"]):
            chosen.append(slot)
    return chosen


def beyond_window(weekday: int) -> date:
    """The first ISO `weekday` past the booking window: a booking on it is refused as too far ahead
    (a day of margin, so that Brussels midnight passing between here and the service changes nothing)."""
    day = today() + timedelta(days=MAX_DAYS_AHEAD + 2)
    return day + timedelta(days=(weekday - day.isoweekday()) % 7)


def closures(client: httpx.Client, admin_token: str, location: str) -> dict[date, str]:
    """The days `location` is closed from today to the end of the booking window, with the reason:
    public holidays, local closing days and ad hoc closures, as the catalogue's admin API lists them."""
    r = client.get(
        "/api/v1/admin/closures",
        params={"from": today().isoformat(), "to": (today() + timedelta(days=MAX_DAYS_AHEAD)).isoformat()},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    r.raise_for_status()
    return {date.fromisoformat(c["day"]): c["reason"] for c in r.json() if c["location_id"] in (None, location)}


def booking_body(product: str, location: str, start: str, **overrides: Any) -> dict[str, Any]:
    n = next(_names)
    body: dict[str, Any] = {
        "product": product,
        "location": location,
        "start": start,
        "person": {"given_name": "Resident", "family_name": f"Number{n}-{time.monotonic_ns()}"},
        "contact": {"email": f"resident{n}.{time.monotonic_ns()}@example.org"},
        "language": "nl",
    }
    body.update(overrides)
    return body


def wait_until(check: Any, timeout: float = 15, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(interval)


async def sse_events(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str | None, dict[str, Any]]]:
    """(event name, parsed data) of each Server-Sent Event whose data is JSON, from a stream's lines."""
    event = None
    async for line in lines:
        if line.startswith("event:"):
            event = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            yield event, json.loads(line[5:])
