"""The calendar's internal route the catalogue asks before a change: which active bookings the
change would strand, and where each could move (`POST {calendar_url}/internal/strandings` with
`X-Internal-Token`). The calendar knows bookings; the catalogue does not. The answer is advisory:
the allocator resolves what a published change strands in any case.

Plain `urllib` in a thread: one small call per admin change needs no client library.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from loket_contracts import events as ev


class CalendarUnavailable(RuntimeError):
    """The calendar could not be asked (down, slow, or it refused the token)."""


class CalendarStrandings:
    def __init__(self, calendar_url: str, internal_token: str, timeout: float = 5.0) -> None:
        self.url = calendar_url.rstrip("/") + "/internal/strandings"
        self.token = internal_token
        self.timeout = timeout

    async def __call__(self, changes: Sequence[ev.Event], action: str) -> list[dict[str, Any]]:
        body = json.dumps(
            {"changes": [{"type": c.TYPE, "data": c.model_dump(mode="json")} for c in changes], "action": action}
        ).encode()
        return await asyncio.to_thread(self._post, body)

    def _post(self, body: bytes) -> list[dict[str, Any]]:
        request = urllib.request.Request(
            self.url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-Internal-Token": self.token},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                answer = json.loads(response.read())
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise CalendarUnavailable(str(exc)) from exc
        bookings: list[dict[str, Any]] = answer.get("bookings", [])
        return bookings
