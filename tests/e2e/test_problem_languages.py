"""Every kind of problem the API answers, in Dutch, English and French, through the real stack
(issue 16): a French or Dutch page never shows an English error. For each problem and language
the answer carries `Content-Language`, the same `type`, `status` and `errors[].field` in every
language, and a `title`, `detail` and `errors[].message` that are texts of that language's
catalogue (and of no other language), so an untranslated text fails here. Manage links speak the
booking's own language when the request names none, and rule messages name products by their name."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from babel.messages.pofile import read_po

from loket_runtime import clock
from loket_runtime.i18n import LANGUAGES, catalogue_path
from loket_runtime.problems import errors_detail
from tests.conftest import RunningStack
from tests.e2e.helpers import beyond_window, booking_body, free_slots, open_day, today, wall

# Texts that only put others together ("field: message", "a; b"): checked as compositions.
COMPOSITIONS = {"%(field)s: %(message)s", "%(first)s; %(next)s"}


def _pattern(text: str) -> re.Pattern[str]:
    """A catalogue text as a pattern its renderings match in full (a placeholder is any text)."""
    return re.compile("(.+?)".join(re.escape(part) for part in re.split(r"%\(\w+\)[sr]", text)), re.S)


def _vocabulary() -> tuple[dict[str, list[re.Pattern[str]]], dict[str, list[re.Pattern[str]]]]:
    """Per language: the patterns of its texts, and those of the other languages' texts that differ."""
    translated = {}
    for language in ("nl", "fr"):
        with catalogue_path(language).open("rb") as source:
            translated[language] = {m.id: m.string for m in read_po(source) if m.id and m.id not in COMPOSITIONS}
    texts = {"en": {msgid: msgid for msgid in translated["nl"]}, **translated}
    own = {language: [_pattern(t) for t in texts[language].values()] for language in LANGUAGES}
    foreign = {
        language: [
            _pattern(texts[other][msgid])
            for other in LANGUAGES
            if other != language
            for msgid in texts[language]
            if texts[other][msgid] != texts[language][msgid]
        ]
        for language in LANGUAGES
    }
    return own, foreign


OWN, FOREIGN = _vocabulary()


def speaks(text: str, language: str) -> bool:
    """`text` is a text of `language`'s catalogue, and not one of another language."""
    return any(p.fullmatch(text) for p in OWN[language]) and not any(p.fullmatch(text) for p in FOREIGN[language])


def assert_speaks(answer: httpx.Response, language: str) -> dict[str, Any]:
    assert answer.headers["content-type"].startswith("application/problem+json"), answer.text
    assert answer.headers["content-language"] == language, (language, answer.headers)
    problem: dict[str, Any] = answer.json()
    untranslated = [
        (part, text)
        for part, text in [("title", problem["title"])] + [("message", e["message"]) for e in problem.get("errors", [])]
        if not speaks(text, language)
    ]
    if problem.get("errors"):  # the detail lists the errors, with this language's punctuation
        if errors_detail(problem["errors"]).in_language(language) != problem["detail"]:
            untranslated.append(("detail", problem["detail"]))
    elif not speaks(problem["detail"], language):
        untranslated.append(("detail", problem["detail"]))
    assert not untranslated, f"not in {language}: {untranslated}"
    return problem


def national_number() -> str:
    """A valid national register number no other booking of the run has (born in the 1980s)."""
    serial = uuid.uuid4().int
    base = int(
        f"8{serial % 10}{1 + serial // 10 % 12:02d}{1 + serial // 1000 % 28:02d}{1 + serial // 100_000 % 996:03d}"
    )
    return f"{base:09d}{97 - base % 97:02d}"


@dataclass(frozen=True)
class Stage:
    """What the cases need from the running stack: days, bookings in given states, tokens."""

    live: RunningStack
    wed: date  # an open Wednesday at the migration counter (09:00-12:30 and 14:00-16:00)
    taken: str  # a start at Ledeberg (one desk) a booking holds
    confirmed: dict[str, Any]  # a confirmed annex-35 booking, in French, with its national number
    cancelled: dict[str, Any]  # a cancelled booking, in French

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.live.token(user)}"}

    def manage(self, booking: dict[str, Any], action: str = "") -> str:
        return f"/api/v1/bookings/{booking['id']}" + (f"/{action}" if action else "")


Ask = Callable[[Stage, httpx.Client, dict[str, str]], httpx.Response]


def booking(
    product: str, location: str, start: Callable[[Stage], str], edit: Callable[[dict[str, Any]], None] | None = None
) -> Ask:
    """A booking request; `edit` changes the body before it is sent."""

    def ask(stage: Stage, client: httpx.Client, headers: dict[str, str]) -> httpx.Response:
        body = booking_body(product, location, start(stage))
        if edit is not None:
            edit(body)
        return client.post("/api/v1/bookings", json=body, headers=headers)

    return ask


def person(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["person"].update(fields)


def contact(**fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__("contact", fields)


def wed_at(hh: int, mm: int) -> Callable[[Stage], str]:
    return lambda stage: wall(stage.wed, hh, mm)


def twelve_on(stage: Stage) -> str:
    return date(stage.wed.year - 12, stage.wed.month, stage.wed.day).isoformat()


def in_two_hours(_: Stage) -> str:
    soon = clock.now().astimezone(clock.BRUSSELS) + timedelta(hours=2)
    return soon.replace(minute=0, second=0, microsecond=0).isoformat()


# Each kind of problem the services produce, by name: (status, how to provoke it). 429 is produced
# by none of them; a 503 (PostgreSQL or Kafka down) is tested where it is made (tests/unit/runtime).
CASES: dict[str, tuple[int, Ask]] = {
    # 404, 405: a manage link that matches no booking, a route or a method that does not exist
    "unknown booking": (
        404,
        lambda s, c, h: c.get(f"/api/v1/bookings/{uuid.uuid4()}", params={"token": "x"}, headers=h),
    ),
    "no such route": (404, lambda s, c, h: c.get("/api/v1/bookings/x/y/z", headers=h)),
    "method not allowed": (405, lambda s, c, h: c.put(s.manage(s.confirmed), headers=h)),
    "no API at the gateway": (404, lambda s, c, h: c.get("/api/v1/nothing-here", headers=h)),
    "unknown closure": (404, lambda s, c, h: c.delete("/api/v1/admin/closures/none", headers=h | s.auth("admin"))),
    # 401, 403
    "no token": (
        401,
        lambda s, c, h: c.get("/api/v1/agenda/migration-counter", params={"date": s.wed.isoformat()}, headers=h),
    ),
    "wrong password": (
        401,
        lambda s, c, h: c.post("/api/v1/auth/token", data={"username": "staff", "password": "no"}, headers=h),
    ),
    "another location": (
        403,
        lambda s, c, h: c.get(
            "/api/v1/agenda/sc-gentbrugge", params={"date": s.wed.isoformat()}, headers=h | s.auth("staff")
        ),
    ),
    "another role": (403, lambda s, c, h: c.get("/api/v1/ops/dead-letters", headers=h | s.auth("staff"))),
    # 413, 422 where a request enters
    "too large": (
        413,
        lambda s, c, h: c.post(
            "/api/v1/bookings", content=b"{" + b" " * 70_000 + b"}", headers=h | {"Content-Type": "application/json"}
        ),
    ),
    "unstorable text": (422, booking("residence-card", "migration-counter", wed_at(9, 0), person(given_name="A\x00"))),
    "fields missing": (422, lambda s, c, h: c.post("/api/v1/bookings", json={"person": {}}, headers=h)),
    "time without offset": (
        422,
        booking("residence-card", "migration-counter", lambda s: wall(s.wed, 9, 0).split("+")[0]),
    ),
    # 422: each resident rule
    "national number": (
        422,
        booking("annex-35", "migration-counter", wed_at(9, 0), person(national_number="85073003329")),
    ),
    "birth date and national number": (
        422,
        booking(
            "annex-35",
            "migration-counter",
            wed_at(9, 0),
            person(national_number="94021300145", birth_date="1994-02-14"),
        ),
    ),
    "birth date in the future": (
        422,
        booking(
            "annex-35",
            "migration-counter",
            wed_at(9, 0),
            lambda b: b["person"].update(birth_date=(today() + timedelta(days=3)).isoformat()),
        ),
    ),
    "phone": (422, booking("short-stay", "migration-counter", wed_at(9, 0), contact(phone="12345"))),
    "e-mail": (422, booking("short-stay", "migration-counter", wed_at(9, 0), contact(email="not-an-address"))),
    "no contact": (422, booking("short-stay", "migration-counter", wed_at(9, 0), contact())),
    "confirmation needs an e-mail": (
        422,
        booking("long-stay", "migration-counter", wed_at(9, 0), contact(phone="+32 470 12 34 56")),
    ),
    "child without birth date": (422, booking("child-card", "migration-counter", wed_at(9, 0))),
    "child of twelve": (
        422,
        lambda s, c, h: booking("child-card", "migration-counter", wed_at(9, 0), person(birth_date=twelve_on(s)))(
            s, c, h
        ),
    ),
    "card pick-up elsewhere": (
        422,
        booking(
            "card-pickup",
            "migration-counter",
            wed_at(9, 0),
            lambda b: b.__setitem__("applied_at_location", "sc-gentbrugge"),
        ),
    ),
    "unknown product": (422, booking("no-such-product", "migration-counter", wed_at(9, 0))),
    "unknown location": (422, booking("residence-card", "nowhere", wed_at(9, 0))),
    "product not offered": (422, booking("single-permit", "sc-ledeberg", wed_at(9, 0))),
    "off the grid": (422, booking("residence-card", "migration-counter", wed_at(9, 5))),
    "outside opening hours": (  # Thursday: the migration counter has no hours
        422,
        booking("residence-card", "migration-counter", lambda s: wall(s.wed + timedelta(days=1), 10, 0)),
    ),
    "too soon": (422, booking("residence-card", "migration-counter", in_two_hours)),
    "too far": (422, booking("residence-card", "migration-counter", lambda s: wall(beyond_window(3), 9, 0))),
    "one booking per person": (
        422,
        lambda s, c, h: booking(
            "annex-35", "migration-counter", wed_at(9, 0), person(national_number=s.confirmed["national_number"])
        )(s, c, h),
    ),
    # 422 from the other services
    "availability of an unknown product": (
        422,
        lambda s, c, h: c.get(
            "/api/v1/availability",
            params={"product": "nope", "from": s.wed.isoformat(), "to": s.wed.isoformat()},
            headers=h,
        ),
    ),
    "waitlist in the past": (
        422,
        lambda s, c, h: c.post(
            "/api/v1/waitlist",
            json={"product": "residence-card", "from": "2020-01-01", "to": "2020-01-02", "email": "a@example.org"},
            headers=h,
        ),
    ),
    "closure on a past day": (
        422,
        lambda s, c, h: c.post(
            "/api/v1/admin/closures",
            json={"location_id": None, "day": "2020-01-01", "reason": "r"},
            headers=h | s.auth("admin"),
        ),
    ),
    # 409, 412: the slot is gone (with alternatives), a refused transition, a view gone stale
    "slot gone": (
        409,
        lambda s, c, h: c.post(
            "/api/v1/bookings",
            json=booking_body("short-stay", "sc-ledeberg", s.taken),
            headers=h | {"Prefer": "wait=10"},
        ),
    ),
    "confirm a cancelled booking": (
        409,
        lambda s, c, h: c.post(
            s.manage(s.cancelled, "confirm"), params={"token": s.cancelled["manage_token"]}, headers=h
        ),
    ),
    "reschedule to the same time": (
        409,
        lambda s, c, h: c.post(
            s.manage(s.confirmed, "reschedule"),
            params={"token": s.confirmed["manage_token"]},
            json={"start": s.confirmed["start"]},
            headers=h,
        ),
    ),
    "changed since loaded": (
        412,
        lambda s, c, h: c.post(
            s.manage(s.confirmed, "cancel"),
            params={"token": s.confirmed["manage_token"]},
            headers=h | {"If-Match": '"999"'},
        ),
    ),
}


@pytest.fixture(scope="module")
def client(live: RunningStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, timeout=30)


def confirmed_booking(client: httpx.Client, product: str, weekday: int, **extra: Any) -> dict[str, Any]:
    day = open_day(client, product, "migration-counter", weekday=weekday)
    start = free_slots(client, product, "migration-counter", day)[0]["start"]
    body = booking_body(product, "migration-counter", start, language="fr")
    body["person"].update(extra)
    r = client.post("/api/v1/bookings", json=body, headers={"Prefer": "wait=10"})
    assert r.status_code == 201, r.text
    return {**r.json(), **extra}


@pytest.fixture(scope="module")
def stage(live: RunningStack, client: httpx.Client) -> Stage:
    day = open_day(client, "short-stay", "sc-ledeberg", exclusive=True)
    taken = free_slots(client, "short-stay", "sc-ledeberg", day)[0]["start"]
    held = client.post(
        "/api/v1/bookings", json=booking_body("short-stay", "sc-ledeberg", taken), headers={"Prefer": "wait=10"}
    )
    assert held.status_code == 201, held.text
    cancelled = confirmed_booking(client, "annex-35", 5)
    r = client.post(f"/api/v1/bookings/{cancelled['id']}/cancel", params={"token": cancelled["manage_token"]})
    assert r.status_code == 200, r.text
    return Stage(
        live=live,
        wed=open_day(client, "residence-card", "migration-counter", weekday=3),
        taken=taken,
        confirmed=confirmed_booking(client, "annex-35", 1, national_number=national_number()),
        cancelled=cancelled,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_every_problem_in_every_language(name: str, stage: Stage, client: httpx.Client) -> None:
    status, ask = CASES[name]
    problems = {}
    for language in LANGUAGES:
        answer = ask(stage, client, {"Accept-Language": language})
        assert answer.status_code == status, (name, language, answer.status_code, answer.text)
        problems[language] = assert_speaks(answer, language)
    # The machine contract is the same in every language; the words are not.
    assert len({p["type"] for p in problems.values()}) == 1
    assert len({tuple(e["field"] for e in p.get("errors", [])) for p in problems.values()}) == 1
    assert len({p["detail"] for p in problems.values()}) == len(LANGUAGES)
    if name == "slot gone":
        assert all(p["alternatives"] for p in problems.values())


def test_a_manage_link_speaks_the_booking_language_when_none_is_asked_for(client: httpx.Client, stage: Stage) -> None:
    again = stage.manage(stage.cancelled, "confirm")
    token = {"token": stage.cancelled["manage_token"]}
    unasked = client.post(again, params=token)  # the booking was made in French
    assert unasked.status_code == 409 and assert_speaks(unasked, "fr")
    unknown = client.post(again, params=token, headers={"Accept-Language": "de-DE, de;q=0.9"})
    assert_speaks(unknown, "fr")
    asked = client.post(again, params=token, headers={"Accept-Language": "en-GB, fr;q=0.5"})
    assert_speaks(asked, "en")
    # Without a booking to speak for, no language asked is Dutch, the city's.
    assert_speaks(client.get(f"/api/v1/bookings/{uuid.uuid4()}", params={"token": "x"}), "nl")


def test_a_rule_names_the_product_not_its_id(client: httpx.Client, stage: Stage) -> None:
    names = {p["id"]: p["name"] for p in client.get("/api/v1/products").json()}
    for language in LANGUAGES:
        body = booking_body("child-card", "migration-counter", wall(stage.wed, 9, 0))
        answer = client.post("/api/v1/bookings", json=body, headers={"Accept-Language": language})
        message = assert_speaks(answer, language)["errors"][0]["message"]
        assert names["child-card"][language] in message and "child-card" not in message, message
    # The per-person rule too: the second booking for one person names the product.
    first = booking_body("identity-change", "migration-counter", wall(stage.wed, 10, 0))
    first["person"]["national_number"] = national_number()
    assert client.post("/api/v1/bookings", json=first).status_code == 202
    again = client.post("/api/v1/bookings", json=first, headers={"Accept-Language": "fr"})
    message = assert_speaks(again, "fr")["errors"][0]["message"]
    assert names["identity-change"]["fr"] in message and "identity-change" not in message


def test_a_booking_request_speaks_its_own_language_when_none_is_asked_for(client: httpx.Client, stage: Stage) -> None:
    for language in LANGUAGES:
        body = booking_body("child-card", "migration-counter", wall(stage.wed, 9, 0), language=language)
        assert_speaks(client.post("/api/v1/bookings", json=body), language)  # the rule: a child's birth date
    body = booking_body("child-card", "migration-counter", wall(stage.wed, 9, 0), language="fr")
    assert_speaks(client.post("/api/v1/bookings", json=body, headers={"Accept-Language": "en"}), "en")


def test_an_invalid_booking_request_speaks_its_own_language_when_none_is_asked_for(client: httpx.Client) -> None:
    for language in LANGUAGES:
        body = booking_body("short-stay", "migration-counter", "2030-01-07T09:00:00", language=language)  # no offset
        answer = client.post("/api/v1/bookings", json=body)
        assert answer.status_code == 422
        assert_speaks(answer, language)
