"""Availability over HTTP, through the gateway and straight to the calendar: gzip for clients that
accept it and plain JSON for the others (the same document), ETag and 304, and a booked slot gone
from an answer that was cached a moment before the decision."""

from __future__ import annotations

import gzip
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, today, wait_until

PRODUCT = "residence-card"
ONE_DESK = "sc-ledeberg"  # a single desk serves residence cards there: a booked start is gone


def bases(live: RunningStack) -> list[str]:
    return [live.base_url, f"http://127.0.0.1:{live.config.calendar}"]


def query(weeks_ahead: int, location: str | None = None) -> dict[str, str]:
    """A fortnight from the Monday `weeks_ahead` weeks on (each test its own, so its own kept answer):
    whatever the holidays in it, a fortnight has open days."""
    first = today() + timedelta(days=7 * weeks_ahead - today().weekday())
    params = {"product": PRODUCT, "from": first.isoformat(), "to": (first + timedelta(days=13)).isoformat()}
    return params | ({"location": location} if location else {})


@pytest.fixture(scope="module", autouse=True)
def catalogue_settled(live: RunningStack) -> None:
    """The calendar applies the seed's schedules a moment after its locations: wait for free starts."""
    assert wait_until(lambda: json.loads(raw_get(live.base_url, query(5), {})[1])["slots"], timeout=60), (
        "no free starts"
    )


def raw_get(base: str, params: dict[str, str], headers: dict[str, str]) -> tuple[httpx.Response, bytes]:
    """The bytes as sent (httpx would inflate them), without any header the test did not ask for."""
    with httpx.Client(base_url=base, timeout=30) as client:
        del client.headers["accept-encoding"]
        with client.stream("GET", "/api/v1/availability", params=params, headers=headers) as r:
            return r, b"".join(r.iter_raw())


@pytest.mark.parametrize("location", [None, ONE_DESK])
def test_gzip_answer_inflates_to_the_plain_one(live: RunningStack, location: str | None) -> None:
    params = query(5, location)
    for base in bases(live):
        for _ in range(2):  # the first builds the answer, the second is served from it
            r_plain, plain = raw_get(base, params, {})
            r_gzip, packed = raw_get(base, params, {"Accept-Encoding": "gzip, deflate"})
            r_none, refused = raw_get(base, params, {"Accept-Encoding": "gzip;q=0, identity"})
            assert r_plain.status_code == r_gzip.status_code == r_none.status_code == 200
            assert "content-encoding" not in r_plain.headers and "content-encoding" not in r_none.headers
            assert r_gzip.headers["content-encoding"] == "gzip"
            assert int(r_gzip.headers["content-length"]) == len(packed) < len(plain) / 5
            assert gzip.decompress(packed) == plain == refused
            assert r_plain.headers["vary"].lower() == "accept-encoding"
            assert r_plain.headers["content-type"] == "application/json"
            doc = json.loads(plain)
            assert doc["product"] == PRODUCT and doc["location"] == location and doc["slots"]
            assert ("location" in doc["slots"][0]) == (location is None)


def test_matching_etag_is_a_304(live: RunningStack) -> None:
    params = query(6)
    for base in bases(live):
        r, packed = raw_get(base, params, {"Accept-Encoding": "gzip"})
        etag = r.headers["etag"]
        assert etag.startswith('W/"') and "no-cache" in r.headers["cache-control"]
        r2, body = raw_get(base, params, {"Accept-Encoding": "gzip", "If-None-Match": etag})
        assert r2.status_code == 304 and body == b""
        assert r2.headers["etag"] == etag
        r3, _ = raw_get(base, params, {"If-None-Match": etag})  # the plain answer has the same validator
        assert r3.status_code == 304
        r4, again = raw_get(base, params, {"Accept-Encoding": "gzip", "If-None-Match": 'W/"something-else"'})
        assert r4.status_code == 200 and gzip.decompress(again) == gzip.decompress(packed)


def slots_at(doc: dict[str, Any], location: str) -> set[str]:
    return {s["start"] for s in doc["slots"] if s.get("location", doc["location"]) == location}


def test_a_booked_slot_is_gone_from_the_cached_answer_right_after_the_decision(live: RunningStack) -> None:
    every = query(7)
    one = query(7, ONE_DESK)
    # the answers are made and kept (each asked twice: the second comes from the kept bytes)
    for _ in range(2):
        r_every, packed = raw_get(live.base_url, every, {"Accept-Encoding": "gzip"})
        r_one, plain = raw_get(live.base_url, one, {})
    before = json.loads(gzip.decompress(packed))
    start = sorted(slots_at(before, ONE_DESK))[3]
    assert start in slots_at(json.loads(plain), ONE_DESK)

    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        r = client.post("/api/v1/bookings", json=booking_body(PRODUCT, ONE_DESK, start), headers={"Prefer": "wait=20"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] in ("confirmed", "held")

    # at once, no waiting: both answers, both encodings, gateway and calendar
    for base in bases(live):
        for params in (every, one):
            for headers in ({"Accept-Encoding": "gzip"}, {}):
                resp, body = raw_get(base, params, headers)
                assert resp.status_code == 200
                doc = json.loads(gzip.decompress(body) if resp.headers.get("content-encoding") == "gzip" else body)
                assert start not in slots_at(doc, ONE_DESK), (base, params, headers)
    # a validator from before the decision no longer matches
    stale, _ = raw_get(live.base_url, every, {"Accept-Encoding": "gzip", "If-None-Match": r_every.headers["etag"]})
    assert stale.status_code == 200 and stale.headers["etag"] != r_every.headers["etag"]
    stale_one, _ = raw_get(live.base_url, one, {"If-None-Match": r_one.headers["etag"]})
    assert stale_one.status_code == 200


def decoded(r: httpx.Response, body: bytes) -> Any:
    return json.loads(gzip.decompress(body) if r.headers.get("content-encoding") == "gzip" else body)


def test_the_days_view_is_a_small_calendar_whose_days_open_into_their_slots(live: RunningStack) -> None:
    """What a page shows first: each day of the range and its number of free starts, a few KB
    where the slots are hundreds; a day's slots on demand (from = to = that day) add up to it;
    a booking leaves its day's count at once; ETag and 304 as for the slots."""
    days_query = query(4, ONE_DESK) | {"view": "days"}
    for base in bases(live):
        r, body = raw_get(base, days_query, {"Accept-Encoding": "gzip"})
        assert r.status_code == 200 and r.headers["content-encoding"] == "gzip"
        doc = decoded(r, body)
        assert doc["product"] == PRODUCT and doc["location"] == ONE_DESK and len(doc["days"]) == 14
        _, slots_body = raw_get(base, query(4, ONE_DESK), {"Accept-Encoding": "gzip"})
        assert len(body) < len(slots_body)
        open_day = next(d for d in doc["days"] if d["free"])
        one_day = {"product": PRODUCT, "location": ONE_DESK, "from": open_day["date"], "to": open_day["date"]}
        r_day, day_body = raw_get(base, one_day, {})
        assert len(decoded(r_day, day_body)["slots"]) == open_day["free"]
        r304, empty = raw_get(base, days_query, {"If-None-Match": r.headers["etag"]})
        assert r304.status_code == 304 and empty == b""

    start = decoded(r_day, day_body)["slots"][0]["start"]
    with httpx.Client(base_url=live.base_url, timeout=30) as client:
        r = client.post("/api/v1/bookings", json=booking_body(PRODUCT, ONE_DESK, start), headers={"Prefer": "wait=20"})
    assert r.status_code == 201, r.text
    for base in bases(live):
        after = decoded(*raw_get(base, days_query, {}))
        left = decoded(*raw_get(base, one_day, {}))["slots"]
        assert start not in {s["start"] for s in left}
        assert next(d for d in after["days"] if d["date"] == open_day["date"])["free"] == len(left) < open_day["free"]

    everywhere = query(4) | {"view": "days"}
    doc = decoded(*raw_get(live.base_url, everywhere, {}))
    assert all(d["free"] == sum(d["locations"].values()) for d in doc["days"])
    assert any(ONE_DESK in d["locations"] for d in doc["days"])


def test_an_unknown_view_is_a_422(live: RunningStack) -> None:
    for base in bases(live):
        r, body = raw_get(base, query(8) | {"view": "weeks"}, {})
        assert r.status_code == 422
        assert json.loads(body)["errors"][0]["field"] in ("view", "query.view")
