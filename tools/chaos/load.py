"""An open-loop booking load: one resident's POST every 1/rate seconds whatever the answers, each a
new resident (tests/e2e/helpers.booking_body), with `Prefer: wait` and an `Idempotency-Key` that a
retry repeats (as the web app does and API.md asks); some confirmed bookings are cancelled or
rescheduled by their resident afterwards.

The requests go in turn to the gateway (which routes to booking's first instance) and straight to
booking's second instance, so the load is served while either of them is down.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx

from loket_runtime import clock
from tests.e2e import helpers

PRODUCT = "residence-card"  # decided at once: no e-mail confirmation hold
WAIT_SECONDS = 10  # `Prefer: wait=N`
RETRY_FOR_SECONDS = 45  # a resident's client retries an outage (502, 503, 504, no answer) this long
CANCEL_SHARE = 0.10
RESCHEDULE_SHARE = 0.10
OUTAGE_ANSWERS = (502, 503, 504)


@dataclass
class Booking:
    """A booking some client was told about (201 or 202), and what its resident did next."""

    id: str
    manage_token: str
    location: str
    start: str
    answered: int  # 201 (decided in the request) or 202
    accepted_at: float  # time.monotonic()
    cancelled: bool = False  # the resident's cancel was answered 200
    rescheduled_to: str | None = None  # the reschedule was answered 200 or 202


@dataclass
class Load:
    """Start with `start()`, end with `stop()`; `burst(n)` adds n requests at once."""

    urls: list[str]
    rate_per_second: float
    seed: int = 15
    bookings: list[Booking] = field(default_factory=list)
    answers: Counter[str] = field(default_factory=Counter)
    gave_up: int = 0  # POSTs never accepted after RETRY_FOR_SECONDS of outage answers
    _starts: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=96, thread_name_prefix="resident")
        self._sent = 0
        self._local = threading.local()

    # --- running ----------------------------------------------------------------------------

    def start(self) -> None:
        self._starts = self._free_starts()
        threading.Thread(target=self._pace, name="load-pacer", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True)

    def burst(self, count: int) -> None:
        for _ in range(count):
            self._pool.submit(self._book_one)

    def accepted_since(self, since: float) -> int:
        return sum(1 for b in self.bookings if b.accepted_at >= since)

    def _pace(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            with contextlib.suppress(RuntimeError):  # stopped meanwhile: the pool takes no more
                self._pool.submit(self._book_one)
            next_at += 1 / self.rate_per_second
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _client(self) -> httpx.Client:
        if not hasattr(self._local, "client"):
            self._local.client = httpx.Client(timeout=WAIT_SECONDS + 20)
        client: httpx.Client = self._local.client
        return client

    # --- one resident -----------------------------------------------------------------------

    def time_to_decision(self, timeout: float = 60) -> float | None:
        """Seconds until one new booking, posted through the gateway now, is decided (201 or 409 in
        the answer, else seen decided by its resident); None when not within `timeout`."""
        began = time.monotonic()
        answer, booking = self._post_booking(self.urls[0])
        if answer is None or answer.status_code not in (201, 202, 409):
            return None
        while booking is not None and answer.status_code == 202 and time.monotonic() - began < timeout:
            with contextlib.suppress(httpx.HTTPError):
                seen = self._client().get(f"{self.urls[0]}/api/v1/bookings/{booking.id}", headers=self._owner(booking))
                if seen.status_code == 200 and seen.json()["status"] != "requested":
                    return time.monotonic() - began
            time.sleep(0.1)
        return time.monotonic() - began if answer.status_code != 202 else None

    def _book_one(self) -> None:
        with self._lock:
            self._sent += 1
            url = self.urls[self._sent % len(self.urls)]
            follow_up = self._random.random()
        answer, booking = self._post_booking(url)
        if answer is None or booking is None or answer.json().get("status") != "confirmed":
            return
        if follow_up < CANCEL_SHARE:
            cancelled = self._send(f"{url}/api/v1/bookings/{booking.id}/cancel", {}, self._owner(booking))
            booking.cancelled = cancelled is not None and cancelled.status_code == 200
        elif follow_up < CANCEL_SHARE + RESCHEDULE_SHARE:
            with self._lock:
                new_start = self._take_start(booking.location)
            headers = {**self._owner(booking), "Prefer": f"wait={WAIT_SECONDS}"}
            moved = self._send(f"{url}/api/v1/bookings/{booking.id}/reschedule", {"start": new_start}, headers)
            if moved is not None and moved.status_code in (200, 202):
                booking.rescheduled_to = new_start

    def _post_booking(self, url: str) -> tuple[httpx.Response | None, Booking | None]:
        """One new resident's booking: the last answer, and the booking when it was accepted."""
        with self._lock:
            location = self._random.choice(sorted(self._starts))
            start = self._take_start(location)
        body = helpers.booking_body(PRODUCT, location, start, language="en")
        answer = self._send(f"{url}/api/v1/bookings", body, {"Prefer": f"wait={WAIT_SECONDS}"})
        if answer is None or answer.status_code not in (201, 202):
            return answer, None
        made = answer.json()
        booking = Booking(made["id"], made["manage_token"], location, start, answer.status_code, time.monotonic())
        self.bookings.append(booking)
        return answer, booking

    def _send(self, url: str, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response | None:
        """POST with one Idempotency-Key, repeated while the answer says a part is down."""
        headers = {**headers, "Idempotency-Key": str(uuid.uuid4())}
        deadline = time.monotonic() + RETRY_FOR_SECONDS
        while True:
            try:
                answer = self._client().post(url, json=body, headers=headers)
                self._count(str(answer.status_code))
                if answer.status_code not in OUTAGE_ANSWERS:
                    return answer
                pause = min(float(answer.headers.get("retry-after", 1)), 3.0)
            except httpx.HTTPError as exc:
                self._count(type(exc).__name__)
                pause = 1.0
            if time.monotonic() + pause > deadline or self._stop.is_set():
                with self._lock:
                    self.gave_up += 1
                return None
            time.sleep(pause)

    @staticmethod
    def _owner(booking: Booking) -> dict[str, str]:
        return {"Authorization": f"Bearer {booking.manage_token}"}

    def _count(self, what: str) -> None:
        with self._lock:
            self.answers[what] += 1

    # --- where to book ------------------------------------------------------------------------

    def _free_starts(self) -> dict[str, list[str]]:
        """Free starts of PRODUCT per location offering it, over the booking window, shuffled."""
        with httpx.Client(base_url=self.urls[0], timeout=60) as client:
            offered = client.get("/api/v1/locations", params={"product": PRODUCT})
            offered.raise_for_status()
            first = clock.today() + timedelta(days=2)
            last = clock.today() + timedelta(days=helpers.MAX_DAYS_AHEAD)
            starts: dict[str, list[str]] = {}
            for location in (loc["id"] for loc in offered.json()):
                by_day = helpers.free_by_day(client, PRODUCT, location, first, last)
                starts[location] = [slot["start"] for slots in by_day.values() for slot in slots]
                self._random.shuffle(starts[location])
        return {location: found for location, found in starts.items() if found}

    def _take_start(self, location: str) -> str:
        """A free start not handed out yet (an old one once all are: a taken slot is a decision too)."""
        free = self._starts[location]
        return free.pop() if len(free) > 1 else free[0]
