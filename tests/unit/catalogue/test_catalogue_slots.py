"""Slot counting of the what-if preview: grid, durations, versions, closures, and the DST weeks."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from loket_catalogue.domain.rules import closing_days
from loket_catalogue.domain.slots import (
    DeskHours,
    ProductSpec,
    as_instants,
    block_starts,
    bookable_starts,
    hours_on,
    preview_counts,
    with_proposal,
)
from loket_contracts.events import TimeBlock

BRUSSELS = ZoneInfo("Europe/Brussels")
SEED = Path(__file__).resolve().parents[3] / "services" / "catalogue" / "seed" / "ghent.yaml"


def block(start: str, end: str) -> TimeBlock:
    return TimeBlock(start=start, end=end)


def weekly(**days: list[tuple[str, str]]) -> dict[str, list[TimeBlock]]:
    names = {"mon": "1", "tue": "2", "wed": "3", "thu": "4", "fri": "5", "sat": "6", "sun": "7"}
    return {names[d]: [block(s, e) for s, e in pairs] for d, pairs in days.items()}


def count(day: date, b: TimeBlock, duration: int, grid: int) -> int:
    return len(list(block_starts(day, b, duration, grid)))


MONDAY = date(2027, 1, 11)


def test_starts_on_the_grid_with_room_for_the_whole_duration() -> None:
    # 09:00-12:30 (210 minutes): a 20-minute product on a 10-minute grid starts 09:00 ... 12:10.
    starts = as_instants(block_starts(MONDAY, block("09:00", "12:30"), 20, 10))
    assert len(starts) == 20
    assert starts[0] == datetime(2027, 1, 11, 9, 0, tzinfo=BRUSSELS)
    assert starts[-1] == datetime(2027, 1, 11, 12, 10, tzinfo=BRUSSELS)
    assert count(MONDAY, block("09:00", "12:30"), 20, 5) == 39
    assert count(MONDAY, block("09:00", "12:30"), 30, 15) == 13
    assert count(MONDAY, block("09:00", "09:25"), 30, 5) == 0  # shorter than the product
    assert count(MONDAY, block("09:00", "09:30"), 30, 5) == 1  # exactly one
    assert count(MONDAY, block("22:00", "24:00"), 60, 30) == 3  # until midnight


def test_grid_is_counted_from_midnight_not_from_the_block() -> None:
    starts = as_instants(block_starts(MONDAY, block("09:05", "10:00"), 10, 10))
    assert [s.strftime("%H:%M") for s in starts] == ["09:10", "09:20", "09:30", "09:40", "09:50"]
    odd = as_instants(block_starts(MONDAY, block("00:00", "01:00"), 5, 7))
    assert [s.minute for s in odd] == [0, 7, 14, 21, 28, 35, 42, 49]


def test_desks_in_parallel_count_a_start_once() -> None:
    one = [block("09:00", "12:00")]
    other = [block("11:00", "13:00")]
    assert len(bookable_starts(MONDAY, 30, 10, [one])) == 16
    assert len(bookable_starts(MONDAY, 30, 10, [one, other])) == 22  # 09:00 ... 12:30
    assert len(bookable_starts(MONDAY, 30, 10, [one, one])) == 16


# --- DST: hours are wall-clock in Brussels ---------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (date(2026, 10, 19), date(2026, 10, 26)),  # autumn: the week of Sunday 25 October 2026, and the next
        (date(2026, 10, 23), date(2026, 10, 30)),
        (date(2027, 3, 22), date(2027, 3, 29)),  # spring: Sunday 28 March 2027
        (date(2027, 3, 26), date(2027, 4, 2)),
    ],
)
@pytest.mark.parametrize(("b", "expected"), [(block("09:00", "12:30"), 20), (block("14:00", "19:00"), 29)])
def test_office_hours_give_the_same_slots_on_either_side_of_a_dst_change(
    before: date, after: date, b: TimeBlock, expected: int
) -> None:
    # 15 minutes on a 10-minute grid: 09:00 ... 12:10 and 14:00 ... 18:40.
    assert count(before, b, 15, 10) == count(after, b, 15, 10) == expected
    first_before = as_instants(block_starts(before, b, 15, 10))[0]
    first_after = as_instants(block_starts(after, b, 15, 10))[0]
    assert first_before.strftime("%H:%M") == first_after.strftime("%H:%M") == b.start
    assert first_before.utcoffset() != first_after.utcoffset()  # same wall clock, another UTC instant


def test_a_night_block_counts_real_time_on_the_dst_nights() -> None:
    night = block("01:00", "04:00")
    assert count(date(2026, 10, 18), night, 30, 5) == 31  # ordinary Sunday: 3 hours
    assert count(date(2026, 10, 25), night, 30, 5) == 43  # 02:00-03:00 twice: 4 real hours
    assert count(date(2027, 3, 28), night, 30, 5) == 19  # 02:00-03:00 skipped: 2 real hours
    spring = as_instants(block_starts(date(2027, 3, 28), night, 30, 30))
    assert [s.strftime("%H:%M%z") for s in spring] == ["01:00+0100", "01:30+0100", "03:00+0200", "03:30+0200"]
    autumn = as_instants(block_starts(date(2026, 10, 25), night, 60, 60))
    assert [s.strftime("%H:%M%z") for s in autumn] == ["01:00+0200", "02:00+0200", "02:00+0100", "03:00+0100"]


# --- versions and the preview ---------------------------------------------------------------------------


def test_the_version_in_force_decides() -> None:
    versions = [
        DeskHours("d", date(2027, 1, 1), weekly(mon=[("09:00", "12:00")])),
        DeskHours("d", date(2027, 2, 1), weekly(mon=[("13:00", "16:00")])),
    ]
    assert hours_on(versions, date(2026, 12, 28)) == ()
    assert hours_on(versions, date(2027, 1, 25)) == [block("09:00", "12:00")]
    assert hours_on(versions, date(2027, 2, 1)) == [block("13:00", "16:00")]
    assert hours_on(versions, date(2027, 2, 2)) == ()  # Tuesday: closed
    replaced = with_proposal(versions, [DeskHours("d", date(2027, 2, 1), weekly(mon=[("08:00", "09:00")]))])
    assert hours_on(replaced, date(2027, 2, 1)) == [block("08:00", "09:00")]
    assert len(replaced) == 2


def preview(proposal: list[DeskHours], first: date, last: date, closed: set[date] = frozenset()):  # type: ignore[no-untyped-def, assignment]
    # Two desks: a-1 serves both products, a-2 only the short one. Both open Mon/Wed 09:00-12:00.
    today = weekly(mon=[("09:00", "12:00")], wed=[("09:00", "12:00")])
    schedules = [
        DeskHours("a-1", date(2026, 1, 1), today),
        DeskHours("a-2", date(2026, 1, 1), today),
        DeskHours("a-1", date(2027, 3, 1), weekly(mon=[("09:00", "10:00")])),
    ]  # already published
    products = [
        ProductSpec("short", 10, ("a-1", "a-2")),
        ProductSpec("long", 60, ("a-1",)),
        ProductSpec("nowhere", 10, ()),
    ]
    counts = preview_counts(products, 10, schedules, proposal, lambda d: d in closed, first, last)
    return {(c.product_id, c.day.isoformat()): (c.current, c.proposed) for c in counts}


def test_preview_for_one_desk() -> None:
    # From Wednesday 13 January 2027, desk a-2 also opens in the afternoon and on Friday.
    proposal = [
        DeskHours(
            "a-2",
            date(2027, 1, 13),
            weekly(mon=[("09:00", "12:00")], wed=[("09:00", "12:00"), ("13:00", "15:00")], fri=[("09:00", "10:00")]),
        )
    ]
    counts = preview(proposal, date(2027, 1, 11), date(2027, 1, 17))
    assert counts[("short", "2027-01-11")] == (18, 18)  # Monday, 09:00 ... 11:50
    assert counts[("long", "2027-01-11")] == (13, 13)  # 09:00 ... 11:00
    assert counts[("short", "2027-01-13")] == (18, 30)  # + 13:00 ... 14:50
    assert counts[("long", "2027-01-13")] == (13, 13)  # a-2 does not serve it
    assert counts[("short", "2027-01-15")] == (0, 6)  # Friday
    assert counts[("short", "2027-01-12")] == (0, 0)
    assert counts[("nowhere", "2027-01-11")] == (0, 0)
    assert len(counts) == 3 * 7


def test_preview_for_every_desk_with_a_closure_and_a_later_version() -> None:
    shorter = weekly(mon=[("09:00", "11:00")], wed=[("09:00", "11:00")])
    proposal = [DeskHours(d, date(2027, 2, 1), shorter) for d in ("a-1", "a-2")]
    counts = preview(proposal, date(2027, 1, 25), date(2027, 3, 3), closed={date(2027, 2, 10)})
    assert counts[("short", "2027-01-25")] == (18, 18)  # before the proposal applies
    assert counts[("short", "2027-02-01")] == (18, 12)
    assert counts[("long", "2027-02-01")] == (13, 7)
    assert counts[("short", "2027-02-10")] == (0, 0)  # closed
    assert counts[("short", "2027-02-17")] == (18, 12)
    # From 1 March a-1 has its own later version (Mon 09:00-10:00) in both; a-2 keeps the proposal.
    assert counts[("long", "2027-03-01")] == (1, 1)
    assert counts[("short", "2027-03-01")] == (18, 12)
    assert counts[("short", "2027-03-03")] == (18, 12)  # Wednesday: only a-2 is open


def test_preview_in_the_dst_week_of_spring_2027_with_easter_monday() -> None:
    holidays = {day for day, _, _ in closing_days(2027)}
    proposal = [
        DeskHours(
            d, date(2027, 3, 1), weekly(mon=[("09:00", "12:00")], wed=[("09:00", "12:00")], sun=[("01:00", "04:00")])
        )
        for d in ("a-1", "a-2")
    ]
    counts = preview(proposal, date(2027, 3, 22), date(2027, 3, 31), closed=holidays)
    assert counts[("short", "2027-03-22")] == (18, 18)
    assert counts[("short", "2027-03-24")] == (18, 18)
    assert counts[("long", "2027-03-24")] == (0, 13)  # a-1 (the only desk for it) had no Wednesday from 1 March
    assert counts[("short", "2027-03-28")] == (0, 12)  # Sunday night of the change: 2 real hours
    assert counts[("short", "2027-03-29")] == (0, 0)  # Easter Monday
    assert counts[("short", "2027-03-31")] == (18, 18)


def test_preview_in_the_dst_week_of_autumn_2026() -> None:
    proposal = [DeskHours("a-1", date(2026, 10, 1), weekly(mon=[("09:00", "12:00")], sun=[("01:00", "04:00")]))]
    counts = preview(proposal, date(2026, 10, 18), date(2026, 10, 26))
    assert counts[("long", "2026-10-18")] == (0, 13)  # ordinary Sunday night: 01:00 ... 03:00
    assert counts[("long", "2026-10-25")] == (0, 19)  # the long night: 4 real hours
    assert counts[("long", "2026-10-19")] == counts[("long", "2026-10-26")] == (13, 13)


# --- the seed ---------------------------------------------------------------------------------------------


def test_the_seed_offers_slots_for_every_product_and_location_on_an_open_day() -> None:
    seed = yaml.safe_load(SEED.read_text())
    products = {p["id"]: p for p in seed["products"]}
    assert len(products) == 11 and len(seed["locations"]) == 12
    effective = date.fromisoformat(str(seed["schedules_effective_from"]))
    closed = {day for year in (2026, 2027) for day, _, _ in closing_days(year)}
    for location in seed["locations"]:
        template = seed["hours_templates"][location["hours"]]
        schedules = [
            DeskHours(d["id"], effective, {k: [block(*b) for b in v] for k, v in template.items()})
            for d in location["desks"]
        ]
        specs = [
            ProductSpec(
                p, products[p]["duration_minutes"], tuple(d["id"] for d in location["desks"] if p in d["products"])
            )
            for p in location["products"]
        ]
        assert all(spec.desk_ids for spec in specs), location["id"]
        # Wednesday 13 January 2027: open everywhere. Easter Monday 2027: closed everywhere.
        grid = location.get("slot_grid_minutes", seed.get("slot_grid_minutes", 10))
        counts = preview_counts(specs, grid, schedules, [], lambda d: d in closed, date(2027, 1, 13), date(2027, 1, 13))
        assert len(counts) == len(specs) and all(c.current > 0 for c in counts), location["id"]
        counts = preview_counts(specs, grid, schedules, [], lambda d: d in closed, date(2027, 3, 29), date(2027, 3, 29))
        assert all(c.current == 0 for c in counts), location["id"]
