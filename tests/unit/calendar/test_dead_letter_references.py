"""A dead letter whose body was cut to fit, or that an outbox relay parked, says so in the
operations API, and keeps none of its dead-letter headers as the original's."""

from __future__ import annotations

from types import SimpleNamespace

from loket_calendar.application.ops import dead_letter_row


def record(headers: list[tuple[str, bytes]], value: bytes | None) -> SimpleNamespace:
    return SimpleNamespace(headers=headers, value=value, offset=3, timestamp=1_700_000_000_000, key=b"grp")


def test_a_copy_cut_to_fit_names_the_original() -> None:
    rec = record(
        [
            ("ce_id", b"e1"),
            ("dlq_group", b"calendar-allocator"),
            ("dlq_topic", b"loket.bookings"),
            ("dlq_partition", b"2"),
            ("dlq_offset", b"40"),
            ("dlq_error", b"body is not JSON"),
            ("dlq_truncated", b"1047000"),
            ("dlq_ref", b"calendar-allocator:dead_letters/7"),
        ],
        b"x" * 100,
    )
    row = dead_letter_row(0, rec)  # type: ignore[arg-type]
    assert row[7] == [["ce_id", "e1"]]  # the original's headers only
    assert row[13:] == (1_047_000, "calendar-allocator:dead_letters/7", False)


def test_a_record_the_relay_parked_says_so() -> None:
    rec = record(
        [
            ("ce_id", b"e2"),
            ("dlq_group", b"booking-outbox"),
            ("dlq_topic", b"loket.bookings"),
            ("dlq_key", b"sc-ledeberg"),
            ("dlq_error", b"parked by the outbox relay: unknown-topic"),
            ("dlq_parked", b"12"),
            ("dlq_ref", b"booking-outbox:outbox_parked/12"),
        ],
        b"{}",
    )
    row = dead_letter_row(0, rec)  # type: ignore[arg-type]
    assert (row[4], row[5], row[6]) == (None, None, "sc-ledeberg")  # no partition or offset: never published
    assert row[13:] == (None, "booking-outbox:outbox_parked/12", True)


def test_an_ordinary_dead_letter_is_whole_and_not_parked() -> None:
    row = dead_letter_row(0, record([("ce_id", b"e3"), ("dlq_group", b"g")], b"{}"))  # type: ignore[arg-type]
    assert row[13:] == (None, None, False)
