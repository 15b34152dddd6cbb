"""Helpers for tests that talk to the running stack over HTTP, as a frontend would."""

from __future__ import annotations

import itertools
import time
from datetime import date, timedelta
from typing import Any

import httpx

_names = itertools.count(1)


def next_weekday(weekday: int, weeks_ahead: int = 1) -> date:
    """A date in the future (weeks_ahead weeks from now) falling on ISO `weekday` (1 = Monday)."""
    day = date.today() + timedelta(days=7 * weeks_ahead)
    return day + timedelta(days=(weekday - day.isoweekday()) % 7)


def free_slots(client: httpx.Client, product: str, location: str, day: date) -> list[dict[str, str]]:
    r = client.get(
        "/api/v1/availability",
        params={"product": product, "location": location, "from": day.isoformat(), "to": day.isoformat()},
    )
    r.raise_for_status()
    slots: list[dict[str, str]] = r.json()["slots"]
    return slots


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
