"""The chaos run's own checks (tools/chaos): a resident counts as told from the SMTP sink's files,
and the run's table replaces only its own part of docs/reliability.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loket_notifications.domain.keys import booking_key, message_id
from tools.chaos.checks import MESSAGE_DOMAIN, untold
from tools.chaos.report import BEGIN, END, write_into_docs

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
