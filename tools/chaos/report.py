"""The chaos run's figures as Markdown tables, printed and kept in docs/reliability.md between two
markers (the rest of that page is written by hand)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from loket_stack.runner import REPO
from tools.chaos.faults import CONVERGE_WITHIN, DECIDE_WITHIN
from tools.chaos.load import RETRY_FOR_SECONDS

DOCS = REPO / "docs" / "reliability.md"
BEGIN = "<!-- chaos:begin (written by `make chaos`) -->"
END = "<!-- chaos:end -->"


def machine(load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    return (
        f"{os.cpu_count()} cores ({platform.machine()}), load average {load_before[0]:.1f} before the run"
        f" and {load_after[0]:.1f} at its end (1-minute figures)"
    )


def tables(f: dict[str, Any]) -> str:
    """The run's summary (one row per promise) and its faults (one row each), in Markdown."""

    def row(check: str, figure: object, bound: str, ok: bool) -> str:
        return f"| {check} | {figure} | {bound} | {'ok' if ok else '**VIOLATED**'} |"

    never = float("inf")
    slowest = max(f["faults"], key=lambda o: never if o["converged_s"] is None else o["converged_s"], default=None)
    bounded = [o for o in f["faults"] if o["decide_within"] is not None]
    slowest_decision = max((never if o["decided_s"] is None else o["decided_s"] for o in bounded), default=None)
    lines = [
        f"Run of {f['started']} UTC, {f['minutes']} minutes; {f['machine']}.",
        f"Load: {f['rate_per_second']:g} bookings a second, open loop; {f['accepted']} accepted (201 or 202),"
        f" final statuses {f['statuses']}; {f['gave_up']} requests given up after {RETRY_FOR_SECONDS} s of outage"
        " answers (never accepted: not counted);"
        f" answers seen {f['answers']}.",
        "",
        "| promise | figure | bound | |",
        "|---|---|---|---|",
        row("lost bookings (accepted, not in the store or never decided)", len(f["lost"]), "0", not f["lost"]),
        row(
            "double-booked desk-times in the calendar's `reservations`",
            f["double_booked_reservations"],
            "0",
            f["double_booked_reservations"] == 0,
        ),
        row(
            f"double-booked desk-times on the agendas ({f['agenda_days']} location-days)",
            f["double_booked_on_agendas"],
            "0",
            f["double_booked_on_agendas"] == 0,
        ),
        row(
            f"missing confirmations (of {f['confirmed']} bookings ever confirmed; {f['confirmations_replaced']}"
            " replaced, before they went out, by the cancellation or new time that followed)",
            len(f["missing_confirmations"]),
            "0",
            not f["missing_confirmations"],
        ),
        row(
            "duplicate confirmations (two of one booking, or one message in two `.eml` files)",
            len(f["duplicate_confirmations"]),
            "0",
            not f["duplicate_confirmations"],
        ),
        row("notifications failed for good", len(f["failed_notifications"]), "0", not f["failed_notifications"]),
        row(
            "slowest catch-up after a fault (every group applied the records there were when it ended)"
            + (f": {slowest['fault']}" if slowest else ""),
            _s(slowest["converged_s"]) if slowest else "not run",
            f"≤ {CONVERGE_WITHIN:.0f} s",
            all(o["converged_s"] is not None and o["converged_s"] <= CONVERGE_WITHIN for o in f["faults"]),
        ),
        row(
            "convergence (lag 0) once the load had stopped and every check was done",
            _s(f["converged_at_end_s"]),
            f"≤ {CONVERGE_WITHIN:.0f} s",
            f["converged_at_end_s"] is not None and f["converged_at_end_s"] <= CONVERGE_WITHIN,
        ),
        row(
            "slowest decision after a 1 MiB record",
            _s(slowest_decision, "not run"),
            f"≤ {DECIDE_WITHIN:.0f} s",
            slowest_decision is None or slowest_decision <= DECIDE_WITHIN,
        ),
        row(
            f"dead letters ({f['dead_letters']}) and parked records ({f['parked']}) not in `/api/v1/ops/dead-letters`",
            len(f["invisible_letters"]),
            "0",
            not f["invisible_letters"],
        ),
        "",
        "| fault | back after | a booking decided after | backlog applied after | lag 0 seen after"
        " | accepted meanwhile | |",
        "|---|---|---|---|---|---|---|",
    ]
    for o in f["faults"]:
        detail = "; ".join(filter(None, [o["detail"], *o["notes"]]))
        lines.append(
            f"| {o['fault']} | {_s(o['back_s'], '')} | {_s(o['decided_s'])} | {_s(o['converged_s'])}"
            f" | {_s(o['lag_zero_s'], 'not within a minute')}"
            f" | {o['accepted_during']} | {'ok' if o['ok'] else '**VIOLATED**'}{': ' + detail if detail else ''} |"
        )
    verdict = "every promise held" if f["ok"] else "**at least one promise was broken**"
    lines += ["", f"Result: {verdict}."]
    for name in ("lost", "missing_confirmations", "duplicate_confirmations", "failed_notifications"):
        if f[name]:
            lines.append(f"- {name}: {_first(f[name])}")
    if f["invisible_letters"]:
        lines.append(f"- not shown to ops: {_first(f['invisible_letters'])}")
    return "\n".join(lines)


def write_into_docs(text: str, docs: Path = DOCS) -> None:
    """Replace what lies between the markers of docs/reliability.md with `text`."""
    page = docs.read_text()
    head, _, rest = page.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise RuntimeError(f"{docs} lacks the markers {BEGIN!r} ... {END!r}")
    docs.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")


def _s(seconds: float | None, never: str = "never") -> str:
    return never if seconds is None else f"{seconds:.1f} s"


def _first(items: Any, shown: int = 10) -> str:
    listed = list(items.items() if isinstance(items, dict) else items)
    more = f" ... and {len(listed) - shown} more" if len(listed) > shown else ""
    return ", ".join(str(item) for item in listed[:shown]) + more
