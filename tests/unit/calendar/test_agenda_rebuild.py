"""The rebuild's own paths agree with the live consumer's: its record decoder accepts and refuses
what the envelope and the event models do, and its in-place fold gives the states `merge` gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loket_calendar.application import agenda
from loket_calendar.application.agenda import AGENDA_MODELS, Change, change_of, change_of_record
from loket_calendar.domain.agenda import AgendaFold, merge, version
from loket_calendar.domain.agenda import changes_for as agenda_changes
from loket_contracts import events as ev
from loket_contracts.envelope import Envelope, EnvelopeError
from loket_contracts.upcasting import parse_event
from tests.unit.calendar.test_calendar_properties import run, step

Headers = list[tuple[str, Any]]


def reference(headers: Headers | None, value: bytes | None) -> Change | None:
    """What the live agenda consumer makes of a record (it dead-letters what this maps to None)."""
    try:
        envelope = Envelope.from_kafka(headers, value)
        if envelope.type not in AGENDA_MODELS:
            return None
        event = parse_event(envelope.type, envelope.schemaversion, envelope.data)
    except (EnvelopeError, ValueError, LookupError):
        return None
    return change_of(envelope.id, envelope.time, event)


START = datetime(2027, 1, 11, 9, 0, tzinfo=UTC)
REQUESTED = ev.BookingRequested(
    booking_id="b1",
    location_id="loc",
    product_id="card",
    start=START,
    end=START + timedelta(minutes=20),
    person=ev.PersonName(given_name="Ana", family_name="Peeters"),
    requested_at=START - timedelta(days=2),
)
REJECTED = ev.SlotRejected(
    booking_id="b2",
    location_id="loc",
    product_id="card",
    start=START,
    reason="slot-taken",
    alternatives=[ev.Slot(start=START, end=START + timedelta(minutes=20), location_id="other")],
)
RESERVED = ev.SlotReserved(
    booking_id="b1",
    location_id="loc",
    product_id="card",
    desk_id="d1",
    start=START,
    end=START + timedelta(minutes=20),
)


def record(event: ev.Event, **attrs: Any) -> tuple[Headers, bytes]:
    envelope = Envelope(type=event.TYPE, source="tests", data=event.model_dump(mode="json"), **attrs)
    return envelope.kafka_headers(), envelope.kafka_value()


def replaced(headers: Headers, name: str, value: Any) -> Headers:
    return [(n, value if n == name else v) for n, v in headers]


def without(headers: Headers, name: str) -> Headers:
    return [(n, v) for n, v in headers if n != name]


GOOD_HEADERS, GOOD_BODY = record(REQUESTED)
CASES: dict[str, tuple[Headers | None, bytes | None]] = {
    "requested": (GOOD_HEADERS, GOOD_BODY),
    "rejected with alternatives": record(REJECTED),
    "reserved": record(RESERVED),
    "not an agenda event": record(
        ev.BookingHeld(
            booking_id="b1",
            location_id="loc",
            product_id="card",
            desk_id="d1",
            start=START,
            end=START,
            hold_expires_at=START,
        )
    ),
    "unknown type": (replaced(GOOD_HEADERS, "ce_type", b"booking-teleported"), GOOD_BODY),
    "no type": (without(GOOD_HEADERS, "ce_type"), GOOD_BODY),
    "no id": (without(GOOD_HEADERS, "ce_id"), GOOD_BODY),
    "no source": (without(GOOD_HEADERS, "ce_source"), GOOD_BODY),
    "no headers": (None, GOOD_BODY),
    "a header that is not UTF-8": ([*GOOD_HEADERS, ("x-other", b"\xff\xfe")], GOOD_BODY),
    "a header without a value": ([*GOOD_HEADERS, ("x-other", None)], GOOD_BODY),
    "bad time": (replaced(GOOD_HEADERS, "ce_time", b"yesterday"), GOOD_BODY),
    "bad schema version": (replaced(GOOD_HEADERS, "ce_schemaversion", b"one"), GOOD_BODY),
    "old schema version without an upcaster": (replaced(GOOD_HEADERS, "ce_schemaversion", b"0"), GOOD_BODY),
    "newer schema version": (replaced(GOOD_HEADERS, "ce_schemaversion", b"7"), GOOD_BODY),
    "no body": (GOOD_HEADERS, None),
    "body not JSON": (GOOD_HEADERS, b"{not json"),
    "body a list": (GOOD_HEADERS, b"[1, 2]"),
    "body missing fields": (GOOD_HEADERS, json.dumps({"booking_id": "b1", "location_id": "loc"}).encode()),
    "naive start": (GOOD_HEADERS, GOOD_BODY.replace(b"+00:00", b"").replace(b"Z", b"")),
    "extra fields": (GOOD_HEADERS, GOOD_BODY[:-1] + b',"surprise":1}'),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_rebuild_decodes_a_record_as_the_live_consumer_does(case: str) -> None:
    headers, value = CASES[case]
    assert change_of_record(headers, value) == reference(headers, value)


def test_the_good_cases_give_a_change() -> None:
    for case in ("requested", "rejected with alternatives", "reserved", "newer schema version", "extra fields"):
        assert change_of_record(*CASES[case]) is not None, case


def test_a_current_record_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def envelope_read(*_: Any) -> None:
        raise AssertionError("read through the envelope")

    monkeypatch.setattr(agenda, "_change_of_envelope", envelope_read)
    for case in ("requested", "rejected with alternatives", "reserved"):
        assert change_of_record(*CASES[case]) == reference(*CASES[case]), case


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=30), st.randoms(use_true_random=False))
def test_the_rebuild_fold_equals_merging_event_by_event(steps: list[tuple[Any, ...]], rnd: Any) -> None:
    events = run(steps).events
    merged: dict[str, Any] = {}
    for time, event_id, event in events:
        changes = agenda_changes(event)
        if changes is not None:
            merged[event.booking_id] = merge(merged.get(event.booking_id, {}), changes, version(time, event_id))
    replayed = list(events) + list(events[: len(events) // 2])  # some sent twice by the relay
    rnd.shuffle(replayed)
    folded = AgendaFold()
    for time, event_id, event in replayed:
        changes = agenda_changes(event)
        if changes is not None:
            folded.add(event.booking_id, event_id, time, changes)
    assert folded.states == merged
