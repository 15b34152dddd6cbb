"""Inputs no service can keep or show are refused with 422 naming the field (loket_runtime.inputs)."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, Path, Query
from fastapi.testclient import TestClient
from pydantic import BaseModel

from loket_runtime.inputs import Day, RowId, install_input_guards, unstorable
from loket_runtime.problems import install_problem_handlers


class Person(BaseModel):
    given_name: str
    birth_date: Day | None = None


class Body(BaseModel):
    person: Person
    notes: list[str] = []


def client() -> TestClient:
    app = FastAPI()
    install_problem_handlers(app)
    install_input_guards(app)

    @app.get("/items/{item_id}")
    async def item(item_id: Annotated[RowId, Path()], q: str = "") -> dict[str, Any]:
        return {"id": item_id, "q": q}

    @app.get("/days")
    async def days(from_: Annotated[Day, Query(alias="from")]) -> dict[str, str]:
        return {"from": from_.isoformat()}

    @app.post("/things")
    async def things(body: Body) -> dict[str, str]:
        return {"name": body.person.given_name}

    @app.get("/overflow")
    async def overflow() -> None:
        raise OverflowError("date value out of range")

    return TestClient(app)


def fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return [e["field"] for e in response.json().get("errors", [])]


@pytest.mark.parametrize("text", ["a\x00b", "bell\x07", "esc\x1b[31m", "\x7f", "\ud800"])
def test_unstorable_text_is_named(text: str) -> None:
    assert unstorable(text)


@pytest.mark.parametrize("text", ["", "Nuñez", "line\nbreak\ttab\r", "Ŝtefan 😀", "\u200b"])
def test_ordinary_text_passes(text: str) -> None:
    assert unstorable(text) is None


def test_a_nul_in_a_query_parameter_is_refused_naming_it() -> None:
    assert fields(client().get("/items/1", params={"q": "x\x00"})) == ["q"]
    assert client().get("/items/1", params={"q": "Nuñez"}).json() == {"id": 1, "q": "Nuñez"}


def test_a_nul_in_the_path_is_refused() -> None:
    assert fields(client().get("/items/%00")) == ["path"]


def test_an_id_beyond_a_bigint_is_refused() -> None:
    assert fields(client().get(f"/items/{2**63}")) == ["item_id"]
    assert client().get(f"/items/{2**63 - 1}").status_code == 200


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1899-12-31", "3000-01-01"])
def test_days_outside_the_calendar_are_refused(day: str) -> None:
    assert fields(client().get("/days", params={"from": day})) == ["from"]


def test_days_inside_the_calendar_pass() -> None:
    for day in (date(1900, 1, 1), date(2999, 12, 31)):
        assert client().get("/days", params={"from": day.isoformat()}).status_code == 200


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"person": {"given_name": "Nu\x00ll"}}, "person.given_name"),
        ({"person": {"given_name": "ok"}, "notes": ["fine", "not\x00fine"]}, "notes.1"),
        ({"person": {"given_name": "ok", "b\x00d": 1}}, "person"),
        ({"person": {"given_name": "\ud800"}}, "person.given_name"),
    ],
)
def test_a_json_body_with_unstorable_text_is_refused_naming_the_field(body: dict[str, Any], field: str) -> None:
    r = client().post("/things", content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert fields(r) == [field]


def test_a_good_body_reaches_the_route_whole() -> None:
    r = client().post("/things", json={"person": {"given_name": "Nuñez\nJr"}})
    assert r.status_code == 200 and r.json() == {"name": "Nuñez\nJr"}


def test_a_date_overflow_is_a_client_error() -> None:
    assert client().get("/overflow").status_code == 422
