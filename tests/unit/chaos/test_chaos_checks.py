"""The chaos run's own checks (tools/chaos): a resident counts as told from the SMTP sink's files,
and the run's table replaces only its own part of docs/reliability.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loket_notifications.domain.keys import booking_key, message_id
from tools.chaos.checks import MESSAGE_DOMAIN, untold
from tools.chaos.report import BEGIN, END, tables, write_into_docs

CONFIRMED = [{"event": "booking-requested"}, {"event": "booking-confirmed"}]


def deliver(mail_dir: Path, booking_id: str, kind: str, version: int, copies: int = 1) -> None:
    """What the sink writes for one message: `<stamp>-<Message-ID>.eml`, once per delivery."""
    mid = message_id(booking_key(booking_id, kind, version), MESSAGE_DOMAIN).strip("<>")
    for copy in range(copies):
        (mail_dir / f"20261129T10000{copy}000000-{mid}.eml").write_text("Subject: x\n\nx\n")


def state(status: str, history: list[dict[str, Any]] = CONFIRMED) -> dict[str, Any]:
    return {"status": status, "history": history}


def test_every_resident_told_where_the_booking_stands_once(tmp_path: Path) -> None:
    deliver(tmp_path, "told", "confirmation", 2)
    deliver(tmp_path, "moved-before-told", "rescheduled", 4)
    deliver(tmp_path, "cancelled-before-told", "cancellation", 3)
    deliver(tmp_path, "told-twice", "confirmation", 2, copies=2)
    deliver(tmp_path, "cancelled-untold", "confirmation", 2)
    states = {
        "told": state("confirmed"),
        "moved-before-told": state("confirmed"),
        "cancelled-before-told": state("cancelled"),
        "told-twice": state("confirmed"),
        "cancelled-untold": state("cancelled"),
        "never-told": state("confirmed"),
        "rejected": state("rejected", [{"event": "booking-requested"}, {"event": "booking-rejected"}]),
    }
    missing, twice, replaced = untold(tmp_path, states, timeout=0)
    assert sorted(missing) == ["cancelled-untold", "never-told"]
    assert twice == ["told-twice"]
    assert replaced == 3  # moved-before-told, cancelled-before-told, never-told


def test_the_table_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    docs = tmp_path / "reliability.md"
    docs.write_text(f"# Reliability\n\nby hand\n\n{BEGIN}\nold table\n{END}\n\nafter\n")
    write_into_docs("| new | table |", docs)
    assert docs.read_text() == f"# Reliability\n\nby hand\n\n{BEGIN}\n| new | table |\n{END}\n\nafter\n"


def figures(**changes: Any) -> dict[str, Any]:
    """A run's figures as tools/chaos/__main__.py gathers them: all promises kept."""
    kept: dict[str, Any] = {
        "started": "2026-11-29T19:00:00+00:00",
        "minutes": 8.0,
        "machine": "2 cores",
        "rate_per_second": 2.0,
        "accepted": 10,
        "statuses": {"confirmed": 10},
        "gave_up": 0,
        "answers": {"201": 10},
        "lost": {},
        "double_booked_reservations": 0,
        "double_booked_on_agendas": 0,
        "agenda_days": 3,
        "confirmed": 10,
        "confirmations_replaced": 0,
        "missing_confirmations": [],
        "duplicate_confirmations": [],
        "failed_notifications": [],
        "dead_letters": 0,
        "parked": 0,
        "invisible_letters": [],
        "converged_at_end_s": 0.5,
        "faults": [
            {"fault": "kill -9 kafka", "back_s": 9.0, "decided_s": 1.0, "decide_within": None, "converged_s": 4.0,
             "lag_zero_s": 6.0, "accepted_during": 5, "detail": "", "notes": [], "ok": True},
            {"fault": "1 MiB record on loket.bookings", "back_s": None, "decided_s": 0.4, "decide_within": 5.0,
             "converged_s": 2.0, "lag_zero_s": None, "accepted_during": 1, "detail": "", "notes": [], "ok": True},
        ],
        "ok": True,
    }  # fmt: skip
    return kept | changes


def test_the_tables_mark_each_broken_promise() -> None:
    assert "VIOLATED" not in tables(figures()) and "every promise held" in tables(figures())
    late = figures(ok=False)
    late["faults"][0].update(converged_s=39.4, lag_zero_s=None, notes=["backlog not applied within 30 s"], ok=False)
    text = tables(late)
    assert "when it ended): kill -9 kafka | 39.4 s | ≤ 30 s | **VIOLATED** |" in text
    assert (
        "| kill -9 kafka | 9.0 s | 1.0 s | 39.4 s | not within a minute | 5 | **VIOLATED**: backlog not applied"
        " within 30 s |"
    ) in text
    assert "at least one promise was broken" in text
    lost = tables(figures(lost={"b-1": "requested"}, ok=False))
    assert "| lost bookings (accepted, not in the store or never decided) | 1 | 0 | **VIOLATED** |" in lost
    assert "- lost: ('b-1', 'requested')" in lost
    assert "when it ended) | not run |" in tables(figures(faults=[]))
