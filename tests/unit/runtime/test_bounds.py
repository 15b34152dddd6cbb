"""Sizes bounded where they enter, what the relay parks, and an instance identity of its own: the
pure parts of issue 15, parts 1 and 2 (the real Kafka and PostgreSQL are in tests/integration)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from aiokafka import errors as kafka_errors
from fastapi import FastAPI, Request
from hypothesis import given, settings
from hypothesis import strategies as st

from loket_runtime.outbox import (
    DEAD_LETTER_PREFIX_BYTES,
    DEAD_LETTER_VALUE_BYTES,
    MAX_EVENT_BYTES,
    MAX_HEADERS,
    MAX_RECORD_BYTES,
    PayloadTooLarge,
    bounded_copy,
    check_event_size,
    pg_text,
    record_size,
    refused_for_good,
)
from loket_runtime.problems import install_problem_handlers
from loket_runtime.service import LimitBody
from loket_runtime.settings import ServiceSettings, unique_instance_id

# --- dead-letter copies ------------------------------------------------------------------------


def test_a_copy_of_an_event_of_ours_is_kept_whole() -> None:
    headers = [("ce_id", b"e1"), ("ce_type", b"booking-requested")]
    value = b"{" + b"x" * 2000 + b"}"
    assert bounded_copy(headers, value) == (headers, value, None)


def test_a_copy_of_a_body_too_large_keeps_its_first_bytes_and_says_how_large_it_was() -> None:
    value = b"y" * 1_047_000
    headers, copy, cut = bounded_copy([("ce_id", b"e1")], value)
    assert cut == 1_047_000 and copy == value[:DEAD_LETTER_PREFIX_BYTES] and headers == [("ce_id", b"e1")]


dlq_headers = [(f"dlq_{n}", b"z" * 2000) for n in range(6)]  # what a consumer adds, at their largest


@settings(max_examples=60, deadline=None)
@given(
    headers=st.lists(st.tuples(st.text(max_size=400), st.binary(max_size=20_000)), max_size=120),
    size=st.integers(min_value=0, max_value=2 * 1024 * 1024),
)
def test_a_copy_always_fits_a_record_whatever_the_original(headers: list[tuple[str, bytes]], size: int) -> None:
    kept, copy, cut = bounded_copy(headers, b"v" * size)
    assert len(kept) <= MAX_HEADERS and len(copy) <= DEAD_LETTER_VALUE_BYTES
    assert (cut is None) == (size <= DEAD_LETTER_VALUE_BYTES)
    assert record_size(b"consumer-group", copy, kept + dlq_headers) < MAX_RECORD_BYTES


def test_text_postgresql_can_store() -> None:
    assert pg_text(b"ok\x00\xff") == "ok\ufffd\ufffd"
    assert pg_text("a\x00b") == "a\ufffdb" and pg_text(None) == ""


# --- events and the relay ------------------------------------------------------------------------


def test_an_event_above_the_bound_is_refused() -> None:
    check_event_size("booking-requested", b"x" * MAX_EVENT_BYTES)
    with pytest.raises(PayloadTooLarge) as raised:
        check_event_size("booking-requested", b"x" * (MAX_EVENT_BYTES + 1))
    assert raised.value.size == MAX_EVENT_BYTES + 1 and raised.value.limit == MAX_EVENT_BYTES


@pytest.mark.parametrize(
    ("error", "parked"),
    [
        (kafka_errors.MessageSizeTooLargeError(), True),  # the client's or the broker's limit
        (kafka_errors.RecordListTooLargeError(), True),
        (kafka_errors.TopicAuthorizationFailedError(), True),
        (kafka_errors.PolicyViolationError(), True),
        (kafka_errors.InvalidTopicError(), True),
        (TypeError("header value is not bytes"), True),
        (kafka_errors.KafkaConnectionError(), False),  # the cluster, not the record: wait
        (kafka_errors.KafkaTimeoutError(), False),
        (kafka_errors.NotEnoughReplicasError(), False),
        (kafka_errors.OutOfOrderSequenceNumber(), False),  # the producer: a new one, then again
        (kafka_errors.ProducerClosed(), False),
        (ConnectionResetError(), False),
    ],
)
def test_what_the_relay_parks_and_what_it_waits_out(error: BaseException, parked: bool) -> None:
    assert refused_for_good(error) is parked


# --- request bodies ------------------------------------------------------------------------------


def bounded_app(limit: int) -> Any:
    app = FastAPI()
    install_problem_handlers(app)

    @app.post("/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    return LimitBody(app, max_bytes=limit)


async def post(app: Any, content: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
        return await client.post("/echo", content=content, headers=headers)


async def test_a_body_within_the_bound_passes() -> None:
    r = await post(bounded_app(1000), b"x" * 1000)
    assert r.status_code == 200 and r.json() == {"bytes": 1000}


async def test_a_declared_body_above_the_bound_gets_413_at_once() -> None:
    r = await post(bounded_app(1000), b"x" * 1001)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/payload-too-large") and r.json()["limit"] == 1000


async def test_a_streamed_body_above_the_bound_gets_413() -> None:
    async def chunks() -> Any:
        for _ in range(5):
            await asyncio.sleep(0)
            yield b"x" * 400

    r = await post(bounded_app(1000), chunks())  # no Content-Length: chunked
    assert r.status_code == 413 and r.json()["status"] == 413


# --- instance identity -----------------------------------------------------------------------------


def test_every_process_has_an_identity_of_its_own_unless_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOKET_INSTANCE_ID", raising=False)
    first, second = ServiceSettings(), ServiceSettings()
    assert first.instance_id != second.instance_id
    assert unique_instance_id() != unique_instance_id()
    monkeypatch.setenv("LOKET_INSTANCE_ID", "counter-a")
    assert ServiceSettings().instance_id == "counter-a"
