"""The intake of new bookings takes a bounded number of waiting requests: past it, a request is
refused at once (the HTTP layer answers 503 with Retry-After) instead of waiting, and holding
memory, longer than its resident waits."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from loket_booking.application.intake import BookingRequest, Intake, IntakeFull


def request() -> BookingRequest:
    return BookingRequest(cmd=None, validated=None, now=datetime(2026, 3, 30, tzinfo=UTC))  # type: ignore[arg-type]


def test_past_the_bound_a_request_is_refused_and_the_waiting_ones_keep_their_place() -> None:
    async def scenario() -> list[Any]:
        intake = Intake(service=None, max_waiting=2)  # type: ignore[arg-type]  # no writer runs
        waiting = [asyncio.ensure_future(intake.submit(request())) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(IntakeFull):
            await intake.submit(request())
        still_waiting = [not task.done() for task in waiting]
        for task in waiting:
            task.cancel()
        return still_waiting

    assert asyncio.run(scenario()) == [True, True]
