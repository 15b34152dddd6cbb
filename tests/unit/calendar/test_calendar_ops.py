"""Pure parts of the operations API: reading a dead-letter record, and finding the original key."""

from __future__ import annotations

import json
from types import SimpleNamespace

from loket_calendar.application.ops import dead_letter_row, original_key


def record(headers: list[tuple[str, bytes]], value: bytes | None, offset: int = 7) -> SimpleNamespace:
    return SimpleNamespace(headers=headers, value=value, offset=offset, timestamp=1_700_000_000_000, key=b"grp")


def test_a_dead_letter_keeps_the_original_headers_apart_from_the_dlq_ones() -> None:
    body = json.dumps({"booking_id": "b1", "location_id": "migration-counter"}).encode()
    rec = record(
        [
            ("ce_id", b"e1"),
            ("ce_type", b"booking-requested"),
            ("dlq_group", b"calendar-allocator"),
            ("dlq_topic", b"loket.bookings"),
            ("dlq_partition", b"4"),
            ("dlq_offset", b"12"),
            ("dlq_error", b"ValidationError: product_id field required"),
        ],
        body,
    )
    row = dead_letter_row(0, rec)  # type: ignore[arg-type]
    (dlq_partition, dlq_offset, group, topic, partition, offset, key, headers, value, error, event_id, event_type) = (
        row[:12]
    )
    assert (dlq_partition, dlq_offset, group, topic, partition, offset) == (
        0,
        7,
        "calendar-allocator",
        "loket.bookings",
        4,
        12,
    )
    assert key == "migration-counter"  # loket.bookings is keyed by location_id
    assert headers == [["ce_id", "e1"], ["ce_type", "booking-requested"]]
    assert (
        value == body and error.startswith("ValidationError") and (event_id, event_type) == ("e1", "booking-requested")
    )


def test_the_original_key() -> None:
    body = json.dumps({"booking_id": "b1", "location_id": "sc-ledeberg"}).encode()
    assert original_key("loket.bookings", {"dlq_key": "kept"}, body) == "kept"
    assert original_key("loket.calendar", {}, body) == "sc-ledeberg"
    assert original_key("loket.notifications", {}, body) == "b1"
    assert original_key("loket.bookings", {"ce_subject": "b1"}, b"not json") == "b1"
    assert original_key(None, {}, None) == ""


def test_a_record_without_dlq_headers_is_kept_with_what_it_has() -> None:
    row = dead_letter_row(0, record([("x", b"\xff")], None))  # type: ignore[arg-type]
    assert row[2] is None and row[3] is None and row[4] is None and row[7] == [["x", "\ufffd"]]
