"""Availability answers kept as bytes: one computation for requests that miss together, never one
that started before a change, gzip that inflates to the plain answer, and the HTTP helpers
(Accept-Encoding, If-None-Match, the query key of the fast path)."""

from __future__ import annotations

import asyncio
import gzip
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from loket_calendar.application import availability
from loket_calendar.application.availability import AvailabilityCache
from loket_calendar.domain.schedule import Booked, Interval
from loket_calendar.entrypoints.app import accepts_gzip, answer_key, etag_matches, render_answer
from loket_runtime import clock
from loket_runtime.catalogue import BRUSSELS
from tests.unit.calendar.model import make_view

NOW = datetime(2026, 9, 1, tzinfo=UTC)
MONDAY = date(2026, 9, 7)
SUNDAY = date(2026, 9, 13)


class FakeStore:
    """`store.taken_in_range` with a count of calls, a gate to hold a query open, and reservations."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.taken: list[Booked] = []
        self.frees_at: dict[str, datetime] = {}

    async def taken_in_range(
        self, conn: Any, locations: list[str], *args: Any
    ) -> tuple[dict[str, list[Booked]], dict[str, datetime]]:
        self.calls += 1
        await asyncio.sleep(0.01)  # a real query takes a while: the others arrive meanwhile
        if self.gate is not None:
            await self.gate.wait()
        return {"loc": list(self.taken)}, dict(self.frees_at)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> FakeStore:
    fake = FakeStore()
    monkeypatch.setattr(availability.store, "taken_in_range", fake.taken_in_range)
    return fake


def ask(cache: AvailabilityCache, location: str | None = "loc", view: str = "slots") -> Any:
    return cache.answer(None, "card", location, ["loc"], MONDAY, SUNDAY, NOW, view)  # type: ignore[arg-type]


async def test_requests_that_miss_together_share_one_computation(fake: FakeStore) -> None:
    cache = AvailabilityCache(make_view())
    answers = await asyncio.gather(*(ask(cache) for _ in range(20)))
    assert fake.calls == 1
    assert cache.answers_built == 1
    assert all(a is answers[0] for a in answers)
    assert cache.fresh_answer(("card", "loc", MONDAY.isoformat(), SUNDAY.isoformat(), "slots")) is answers[0]


async def test_a_request_after_a_change_never_joins_a_computation_started_before_it(fake: FakeStore) -> None:
    cache = AvailabilityCache(make_view())
    fake.gate = asyncio.Event()
    before = asyncio.ensure_future(ask(cache))
    await asyncio.sleep(0.02)  # the first computation has read its versions and waits in its query
    cache.invalidate("loc")  # a decision at the location
    after = asyncio.ensure_future(ask(cache))
    await asyncio.sleep(0.02)
    fake.gate.set()
    first, second = await before, await after
    assert fake.calls == 2
    assert first is not second
    assert second.versions != first.versions
    # the older one is stale at once: only the newer one is kept
    assert cache.fresh_answer(first.key) is second


async def test_gzip_inflates_to_the_plain_json_and_the_etag_follows_the_content(fake: FakeStore) -> None:
    cache = AvailabilityCache(make_view(), answer_ttl_seconds=60)
    answer = await ask(cache, location=None)
    assert gzip.decompress(answer.gzip) == answer.body
    doc = json.loads(answer.body)
    assert doc["product"] == "card" and doc["location"] is None
    first = doc["slots"][0]
    assert set(first) == {"start", "end", "location"} and first["location"] == "loc"
    assert first["start"] == "2026-09-07T09:00:00+02:00"

    again = await ask(cache, location=None)
    assert again is answer  # kept

    # a reservation of the first start on both desks that serve the product: the start is gone
    start = datetime.fromisoformat(first["start"]).astimezone(BRUSSELS)
    taken = Interval(start, start + timedelta(minutes=20))
    fake.taken = [Booked("d1", taken), Booked("d2", taken)]
    cache.invalidate("loc")
    changed = await ask(cache, location=None)
    assert changed.etag != answer.etag
    assert first["start"] not in {s["start"] for s in json.loads(gzip.decompress(changed.gzip))["slots"]}


@pytest.mark.parametrize("location", ["loc", None])
async def test_the_days_view_counts_the_free_starts_of_each_day(fake: FakeStore, location: str | None) -> None:
    """What a calendar page shows first: every day of the range and how many starts are free, the
    same starts the slots answer lists; a booked start is gone from its day's count."""
    cache = AvailabilityCache(make_view())
    slots = json.loads((await ask(cache, location)).body)["slots"]
    days_answer = await ask(cache, location, "days")
    doc = json.loads(gzip.decompress(days_answer.gzip))
    assert doc["product"] == "card" and doc["location"] == location
    per_day: dict[str, int] = {}
    for slot in slots:
        per_day[slot["start"][:10]] = per_day.get(slot["start"][:10], 0) + 1
    assert [d["date"] for d in doc["days"]] == [(MONDAY + timedelta(days=n)).isoformat() for n in range(7)]
    assert {d["date"]: d["free"] for d in doc["days"] if d["free"]} == per_day
    assert doc["days"][6]["free"] == 0  # Sunday: closed
    if location is None:
        assert all(d["locations"] == ({"loc": d["free"]} if d["free"] else {}) for d in doc["days"])
    else:
        assert all("locations" not in d for d in doc["days"])
    assert len(days_answer.body) < len(json.dumps(slots)) / 10

    first = datetime.fromisoformat(slots[0]["start"]).astimezone(BRUSSELS)
    taken = Interval(first, first + timedelta(minutes=20))
    fake.taken = [Booked("d1", taken), Booked("d2", taken)]
    cache.invalidate("loc")
    changed = json.loads((await ask(cache, location, "days")).body)
    still_free = [
        s for s in json.loads((await ask(cache, location)).body)["slots"] if s["start"][:10] == slots[0]["start"][:10]
    ]
    assert slots[0]["start"] not in {s["start"] for s in still_free}
    assert changed["days"][0]["free"] == len(still_free) < doc["days"][0]["free"]


async def test_free_starts_are_computed_again_when_a_hold_runs_out(fake: FakeStore) -> None:
    """No change is announced when a hold runs out (the timer frees it later): the starts it took
    are kept only until then, however long the cache's TTL."""
    cache = AvailabilityCache(make_view(), ttl_seconds=3600)
    runs_out = datetime(2026, 9, 7, 12, 0, tzinfo=UTC)
    fake.frees_at = {"loc": runs_out}
    with clock.shifted(runs_out - timedelta(minutes=1)):
        await cache.free(None, "card", ["loc"], [MONDAY], NOW)  # type: ignore[arg-type]
        await cache.free(None, "card", ["loc"], [MONDAY], NOW)  # type: ignore[arg-type]
        assert fake.calls == 1
    with clock.shifted(runs_out):
        await cache.free(None, "card", ["loc"], [MONDAY], NOW)  # type: ignore[arg-type]
        assert fake.calls == 2


async def test_an_answer_is_kept_until_its_first_start_leaves_the_booking_window(
    fake: FakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No change is announced when time alone takes a start away: a kept answer lives only until
    its first start passes the product's notice, however long its TTL."""
    cache = AvailabilityCache(make_view(), ttl_seconds=3600)
    first_start = datetime(2026, 9, 7, 7, 0, tzinfo=UTC)  # Monday 09:00 in Brussels; no notice for "card"
    now = first_start - timedelta(minutes=2)
    answer = await cache.answer(None, "card", "loc", ["loc"], MONDAY, SUNDAY, now)  # type: ignore[arg-type]
    assert json.loads(answer.body)["slots"][0]["start"] == "2026-09-07T09:00:00+02:00"
    assert answer.stale_at - answer.made_at == pytest.approx(120)
    monkeypatch.setattr(availability.time, "monotonic", lambda: answer.made_at + 119)
    assert cache.fresh_answer(answer.key) is answer
    monkeypatch.setattr(availability.time, "monotonic", lambda: answer.made_at + 120)
    assert cache.fresh_answer(answer.key) is None


async def test_an_answer_lives_until_a_change_or_its_ttl(fake: FakeStore) -> None:
    cache = AvailabilityCache(make_view(), answer_ttl_seconds=0.05)
    answer = await ask(cache)
    assert cache.fresh_answer(answer.key) is answer
    cache.invalidate("other-location")
    assert cache.fresh_answer(answer.key) is answer  # not one of its locations
    cache.invalidate("loc")
    assert cache.fresh_answer(answer.key) is None
    renewed = await ask(cache)
    await asyncio.sleep(0.06)
    assert cache.fresh_answer(renewed.key) is None
    assert (await ask(cache)).etag == renewed.etag  # same content, same validator


def test_accept_encoding() -> None:
    assert accepts_gzip("gzip, deflate")
    assert accepts_gzip("gzip, deflate, br, zstd")
    assert accepts_gzip("br;q=1.0, gzip;q=0.8, *;q=0.1")
    assert accepts_gzip("*")
    assert not accepts_gzip("")
    assert not accepts_gzip("identity")
    assert not accepts_gzip("deflate, br")
    assert not accepts_gzip("gzip;q=0, deflate")
    assert not accepts_gzip("*, gzip;q=0")


def test_if_none_match() -> None:
    etag = 'W/"abc"'
    assert etag_matches('W/"abc"', etag)
    assert etag_matches('"abc"', etag)  # weak comparison
    assert etag_matches('W/"old", W/"abc"', etag)
    assert etag_matches("*", etag)
    assert not etag_matches(None, etag)
    assert not etag_matches('W/"old"', etag)


def test_query_key_of_the_fast_path() -> None:
    week = ("2026-09-07", "2026-09-13")
    assert answer_key(b"product=card&from=2026-09-07&to=2026-09-13") == ("card", None, *week, "slots")
    assert answer_key(b"location=loc&to=2026-09-13&product=card&from=2026-09-07") == ("card", "loc", *week, "slots")
    assert answer_key(b"product=card&from=2026-09-07&to=2026-09-13&view=days") == ("card", None, *week, "days")
    # anything unusual goes to the route, which validates it
    assert answer_key(b"product=card&from=2026-09-07&to=2026-09-13&view=weeks") is None
    assert answer_key(b"product=card&from=2026-09-07") is None
    assert answer_key(b"product=card&product=x&from=2026-09-07&to=2026-09-13") is None
    assert answer_key(b"product=card&from=2026-09-07&to=2026-09-13&extra=1") is None
    assert answer_key(b"product=card&from=2026-09-07&to=2026-09-13&bad") is None


async def test_rendering_for_each_client(fake: FakeStore) -> None:
    answer = await ask(AvailabilityCache(make_view()))
    status, headers, body = render_answer(answer, "gzip, deflate", None)
    names = dict(headers)
    assert status == 200 and names[b"content-encoding"] == b"gzip" and body == answer.gzip
    assert names[b"vary"] == b"Accept-Encoding" and names[b"etag"] == answer.etag.encode()
    assert int(names[b"content-length"]) == len(body)
    status, headers, body = render_answer(answer, "", None)
    assert status == 200 and b"content-encoding" not in dict(headers) and body == answer.body
    status, headers, body = render_answer(answer, "gzip", answer.etag)
    assert status == 304 and body == b"" and dict(headers)[b"etag"] == answer.etag.encode()


async def test_past_half_its_ttl_an_answer_is_renewed_in_the_background(fake: FakeStore) -> None:
    cache = AvailabilityCache(make_view(), answer_ttl_seconds=0.2)
    first = await ask(cache)
    await asyncio.sleep(0.12)
    fake.gate = asyncio.Event()
    assert cache.fresh_answer(first.key) is first  # still served ...
    assert len(cache._building) == 1  # ... and a new one is on its way
    assert cache.fresh_answer(first.key) is first  # one renewal, not one per request
    assert len(cache._building) == 1
    fake.gate.set()
    await asyncio.gather(*cache._building.values())
    renewed = cache.fresh_answer(first.key)
    assert renewed is not None and renewed is not first and renewed.made_at > first.made_at
    assert cache.answers_built == 2
    # past the TTL with nobody asking, it is never served
    await asyncio.sleep(0.25)
    assert cache.fresh_answer(first.key) is None


async def test_the_booking_window_cuts_the_first_day_only(fake: FakeStore) -> None:
    cache = AvailabilityCache(make_view())
    days = [MONDAY + timedelta(days=n) for n in range(7)]
    now = datetime(2026, 9, 8, 8, 5, tzinfo=UTC)  # Tuesday 10:05 in Brussels
    free = await cache.free(None, "card", ["loc"], days, now)  # type: ignore[arg-type]
    everything = await cache.free(None, "card", ["loc"], days, NOW)  # type: ignore[arg-type]
    assert free[("loc", MONDAY)] == []
    tuesday = MONDAY + timedelta(days=1)
    assert free[("loc", tuesday)] == [s for s in everything[("loc", tuesday)] if s.interval.start >= now]
    assert 0 < len(free[("loc", tuesday)]) < len(everything[("loc", tuesday)])
    for day in days[2:]:
        assert free[("loc", day)] == everything[("loc", day)]
        assert free[("loc", day)] is not everything[("loc", day)]  # a list of the caller's own
