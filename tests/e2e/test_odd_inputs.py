"""No input, however odd, gets a 5xx: each cause the fuzzer found (issue 15, part 6), by hand.
Text that cannot be stored or shown (a NUL, another control character, a lone surrogate) is
refused with 422 naming the field, wherever it comes: a query, a path, a JSON body."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack
from tests.e2e.helpers import booking_body, free_slots, open_day


def client(live: RunningStack, user: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {live.token(user)}"} if user else {}
    return httpx.Client(base_url=live.base_url, timeout=30, headers=headers)


def refused(response: httpx.Response, field: str) -> dict[str, Any]:
    assert response.status_code == 422, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert field in [e["field"] for e in body["errors"]], body
    return body


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_days_at_the_ends_of_the_calendar_are_refused(live: RunningStack, day: str) -> None:
    anonymous = client(live)
    r = anonymous.get(
        "/api/v1/availability",
        params={"product": "residence-card", "location": "migration-counter", "from": day, "to": day},
    )
    refused(r, "from")
    r = client(live, "staff").get("/api/v1/agenda/migration-counter", params={"date": day})
    assert r.status_code < 500, r.text


def test_a_nul_in_a_query_parameter_of_the_ops_api_is_refused(live: RunningStack) -> None:
    ops = client(live, "ops")
    refused(ops.get("/api/v1/ops/dead-letters", params={"group": "a\x00b"}), "group")
    refused(ops.get("/api/v1/ops/events", params={"booking": "\x00"}), "booking")


def test_an_id_beyond_64_bits_in_an_ops_path_is_refused(live: RunningStack) -> None:
    ops = client(live, "ops")
    refused(ops.get(f"/api/v1/ops/dead-letters/{2**64}"), "letter_id")
    refused(ops.post(f"/api/v1/ops/dead-letters/{2**70}/replay"), "letter_id")


def test_a_multipart_form_without_a_boundary_on_the_token_endpoint_is_a_client_error(live: RunningStack) -> None:
    r = httpx.post(
        f"{live.base_url}/api/v1/auth/token",
        content=b"username=admin&password=demo",
        headers={"Content-Type": "multipart/form-data"},
    )
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_nul_in_admin_text_fields_is_refused_naming_the_field(live: RunningStack) -> None:
    admin = client(live, "admin")
    r = admin.post("/api/v1/admin/closures", json={"location_id": None, "day": "2031-03-03", "reason": "Nu\x00ll"})
    refused(r, "reason")
    r = admin.post("/api/v1/admin/closures", json={"location_id": "x\x00", "day": "2031-03-03", "reason": "r"})
    refused(r, "location_id")


@pytest.mark.parametrize("name", ["Nu\x00ll", "Bell\x07", "\ud800"])
def test_a_name_that_cannot_be_stored_is_refused_naming_the_field(live: RunningStack, name: str) -> None:
    # A free slot, so nothing but the name stands between the request and the database.
    anonymous = client(live)
    day = open_day(anonymous, "residence-card", "migration-counter", min_free=1)
    start = free_slots(anonymous, "residence-card", "migration-counter", day)[0]["start"]
    body = booking_body("residence-card", "migration-counter", start)
    body["person"]["given_name"] = name
    # Escaped JSON ("\\u0000", "\\ud800"), as any client library writes it.
    r = anonymous.post("/api/v1/bookings", content=json.dumps(body), headers={"Content-Type": "application/json"})
    refused(r, "person.given_name")
