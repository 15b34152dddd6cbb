"""The contracts: exported schemas are current, old events stay readable, the envelope round-trips."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from loket_contracts import events as ev
from loket_contracts.envelope import Envelope, EnvelopeError
from loket_contracts.export import DEFAULT_OUT, rendered
from loket_contracts.topics import ALL_TOPICS, topic_of
from loket_contracts.upcasting import UnknownEventType, parse_event


def test_committed_schemas_and_asyncapi_are_current() -> None:
    stale = [path for path, text in rendered().items() if (DEFAULT_OUT / path).read_text() != text]
    assert not stale, f"run `make contracts` and commit: stale {stale}"


def test_no_schema_file_without_an_event() -> None:
    files = {p.name for p in (DEFAULT_OUT / "schemas").glob("*.json")}
    assert files == {Path(p).name for p in rendered() if p.startswith("schemas/")}


def test_every_event_has_exactly_one_topic() -> None:
    for event_type in ev.EVENT_TYPES:
        assert sum(any(m.TYPE == event_type for m in t.events) for t in ALL_TOPICS) == 1, event_type
        assert topic_of(event_type).partitions >= 1


def test_envelope_round_trips_through_kafka_headers() -> None:
    original = Envelope(
        type="closure-lifted",
        source="test",
        subject="closure:x",
        correlationid="c-1",
        data={"closure_id": "x", "location_id": None, "day": "2026-12-24"},
    )
    back = Envelope.from_kafka(original.kafka_headers(), original.kafka_value())
    assert back == original
    headers = dict(original.kafka_headers())
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_type"] == b"closure-lifted"


@pytest.mark.parametrize(
    "headers, value, message",
    [
        ([], b"{}", "ce_id"),
        ([("ce_id", b"1"), ("ce_type", b"x"), ("ce_source", b"s")], b"{oops", "not JSON"),
        ([("ce_id", b"1"), ("ce_type", b"x"), ("ce_source", b"s")], b"[1]", "not a JSON object"),
        ([("ce_id", b"1"), ("ce_type", b"x"), ("ce_source", b"s")], None, "no body"),
    ],
)
def test_unreadable_records_are_refused_with_a_reason(headers, value, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(EnvelopeError, match=message):
        Envelope.from_kafka(headers, value)


def test_unknown_types_and_invalid_payloads_are_refused() -> None:
    with pytest.raises(UnknownEventType):
        parse_event("booking-teleported", 1, {})
    with pytest.raises(ValidationError):
        parse_event("closure-lifted", 1, {"closure_id": "x", "day": "not a date"})


def test_instants_must_carry_an_offset() -> None:
    with pytest.raises(ValidationError):
        ev.HoldExpired(
            booking_id="b",
            location_id="l",
            desk_id="d",
            start="2026-12-01T09:00:00",  # type: ignore[arg-type]
            end="2026-12-01T09:20:00",
        )  # type: ignore[arg-type]
