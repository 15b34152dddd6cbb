"""Who a person is, and messages that leave through the channel the resident gave, over the stack.

- One appointment for one person (per product): the same resident writing their address in another
  case or adding a phone books once; a parent books a child's card for each of two children with
  one address (services/booking/README.md, "One appointment for one person").
- A contact must receive what the product needs: a phone alone is refused for a product that must
  be confirmed (the confirm link goes by e-mail); a staff cancellation of a phone-only booking is
  texted with the manage link, never "more in your e-mail".
- Confirmations to an IDN domain and to a UTF-8 local part are delivered (IDNA, SMTPUTF8).
"""

from __future__ import annotations

import json
import uuid
from datetime import date
from email import message_from_bytes, policy
from typing import Any

import httpx
import pytest

from tests.conftest import RunningStack
from tests.e2e.helpers import ENGLISH, booking_body, disjoint, free_slots, open_day, today, wait_until


@pytest.fixture(scope="module")
def client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30, headers=ENGLISH)


def uniq() -> str:
    return uuid.uuid4().hex[:10]


def book(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/api/v1/bookings", json=body, headers={"Prefer": "wait=10"})


def refused(r: httpx.Response, field: str) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    problem: dict[str, Any] = r.json()
    assert field in [e["field"] for e in problem["errors"]], problem
    return problem


def starts(client: httpx.Client, product: str, location: str, count: int) -> list[str]:
    """`count` free starts that do not overlap (a 15-minute product on a 10-minute grid would), on a
    day no other test books: each booking here must be decided by the person rule alone."""
    day = open_day(client, product, location, min_free=3 * count, exclusive=True)
    chosen = disjoint(free_slots(client, product, location, day))
    assert len(chosen) >= count, chosen
    return [slot["start"] for slot in chosen[:count]]


# --- one appointment for one person --------------------------------------------------------------


def test_one_resident_in_any_case_or_with_a_phone_books_one_residence_card(client: httpx.Client) -> None:
    first, *others = starts(client, "residence-card", "migration-counter", 4)
    tag = uniq()
    anna = {"given_name": "Anna", "family_name": f"Peeters-{tag}"}
    body = booking_body("residence-card", "migration-counter", first, person=anna)
    body["contact"] = {"email": f"anna.x.{tag}@example.org"}
    r = book(client, body)
    assert r.status_code == 201, r.text
    for start, contact in zip(
        others,
        [
            {"email": f"Anna.X.{tag}@example.org"},
            {"email": f"ANNA.X.{tag.upper()}@EXAMPLE.ORG"},
            {"email": f"anna.x.{tag}@example.org", "phone": "+32 470 12 34 56"},
        ],
        strict=True,
    ):
        again = booking_body("residence-card", "migration-counter", start, person=dict(anna), contact=contact)
        problem = refused(book(client, again), "person")
        assert "already has an active booking" in problem["detail"]
    # The first booking stands, and once it is cancelled the resident may book again.
    token = r.json()["manage_token"]
    assert client.post(f"/api/v1/bookings/{r.json()['id']}/cancel", params={"token": token}).status_code == 200
    again = booking_body("residence-card", "migration-counter", others[0], person=dict(anna))
    again["contact"] = {"email": f"ANNA.X.{tag}@example.org"}
    assert book(client, again).status_code == 201


def test_a_parent_books_a_childs_card_for_each_of_two_children_with_one_address(client: httpx.Client) -> None:
    first, second, third = starts(client, "child-card", "migration-counter", 3)
    tag = uniq()
    parent = {"email": f"ouder.{tag}@example.org", "phone": "+32 470 98 76 54"}
    year = today().year

    def child(given: str, born: date) -> dict[str, Any]:
        return {"given_name": given, "family_name": f"Peeters-{tag}", "birth_date": born.isoformat()}

    lina = child("Lina", date(year - 7, 3, 1))
    noor = child("Noor", date(year - 4, 9, 12))
    for start, kid in ((first, lina), (second, noor)):
        r = book(client, booking_body("child-card", "migration-counter", start, person=kid, contact=dict(parent)))
        assert r.status_code == 201, r.text
    # The same child again, the address in another case: that is one person.
    again = booking_body("child-card", "migration-counter", third, person=dict(lina))
    again["contact"] = {"email": parent["email"].upper()}
    refused(book(client, again), "person")


# --- the contact must receive what the product needs ---------------------------------------------


def test_a_phone_alone_is_refused_for_a_product_that_must_be_confirmed(client: httpx.Client) -> None:
    (start,) = starts(client, "long-stay", "migration-counter", 1)
    body = booking_body("long-stay", "migration-counter", start, contact={"phone": "+32 470 55 44 33"})
    problem = refused(book(client, body), "contact.email")
    assert "e-mail" in problem["errors"][0]["message"]
    body["contact"]["email"] = f"held.{uniq()}@example.org"
    assert book(client, body).json()["status"] == "held"  # with an address the confirm link can go


def sms_to(live: RunningStack, phone: str) -> list[str]:
    if not live.sms_file.exists():
        return []
    lines = [json.loads(line) for line in live.sms_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [line["body"] for line in lines if line["to"] == phone]


def test_a_staff_cancellation_of_a_phone_only_booking_is_texted_with_the_manage_link(
    live: RunningStack, client: httpx.Client
) -> None:
    (start,) = starts(client, "residence-card", "migration-counter", 1)
    phone = f"+3247{uuid.uuid4().int % 10**7:07d}"
    body = booking_body("residence-card", "migration-counter", start, contact={"phone": phone})
    r = book(client, body)
    assert r.status_code == 201, r.text  # a product without confirmation: a phone is enough
    booking = r.json()
    staff = {"Authorization": f"Bearer {live.token('staff')}"}
    cancelled = client.post(
        f"/api/v1/bookings/{booking['id']}/cancel", json={"reason": "desk closed for repairs"}, headers=staff
    )
    assert cancelled.status_code == 200, cancelled.text
    texts = wait_until(lambda: sms_to(live, phone), timeout=30)
    assert texts, "the cancellation reaches the phone"
    (text,) = texts
    assert "mail" not in text.lower()  # the resident gave no e-mail address
    assert f"/manage/{booking['id']}?token={booking['manage_token']}" in text


# --- e-mail to international addresses ------------------------------------------------------------


def delivered_to(live: RunningStack, header: str) -> list[Any]:
    found = []
    for path in sorted(live.mail_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.SMTPUTF8)
        if message["To"] == header:
            found.append(message)
    return found


@pytest.mark.parametrize(
    ("local", "domain", "header_domain"),
    [
        ("anna", "bücher.example", "xn--bcher-kva.example"),  # IDN domain: IDNA on the wire
        ("jörg", "example.org", "example.org"),  # UTF-8 local part: SMTPUTF8
        ("jörg", "bücher.example", "xn--bcher-kva.example"),
    ],
)
def test_a_confirmation_to_an_international_address_is_delivered(
    live: RunningStack, client: httpx.Client, local: str, domain: str, header_domain: str
) -> None:
    (start,) = starts(client, "residence-card", "migration-counter", 1)
    tag = uniq()
    body = booking_body("residence-card", "migration-counter", start, contact={"email": f"{local}.{tag}@{domain}"})
    r = book(client, body)
    assert r.status_code == 201, r.text
    messages = wait_until(lambda: delivered_to(live, f"{local}.{tag}@{header_domain}"), timeout=30)
    assert messages, "the confirmation leaves"
    assert body["person"]["family_name"] in messages[0].get_body(("plain",)).get_content()
    ops = {"Authorization": f"Bearer {live.token('ops')}"}

    def confirmation() -> dict[str, Any] | None:
        listed = client.get("/api/v1/ops/notifications", params={"booking": r.json()["id"]}, headers=ops)
        sent = [n for n in listed.json()["notifications"] if n["kind"] == "confirmation" and n["status"] == "sent"]
        return sent[0] if sent else None

    assert wait_until(confirmation), "recorded as sent"
