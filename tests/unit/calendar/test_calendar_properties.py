"""Property tests: any sequence of requests, cancels, reschedules and expiries, decided by the pure
domain over an in-memory calendar, never double-books a desk-time, keeps every reservation inside
its desk's hours and outside closures, and replays to the same agenda in any order."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loket_calendar.domain.agenda import changes_for as agenda_changes
from loket_calendar.domain.agenda import fold, merge, row_of, version
from loket_calendar.domain.schedule import free_desk, free_starts
from loket_runtime.catalogue import local_day
from tests.unit.calendar.model import Calendar, at, make_view

WEEK = [date(2027, 1, 11) + timedelta(days=n) for n in range(7)]  # Monday .. Sunday
CLOSED = (date(2027, 1, 13),)  # a Wednesday
T0 = datetime.fromisoformat("2027-01-01T08:00:00+01:00")

step = st.one_of(
    st.tuples(
        st.just("request"),
        st.sampled_from(["short", "card", "long"]),
        st.sampled_from(WEEK),
        st.integers(8, 17),
        st.sampled_from([0, 10, 20, 30, 40, 50, 5]),  # 5: off the grid
    ),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
    st.tuples(
        st.just("reschedule"),
        st.integers(0, 40),
        st.sampled_from(WEEK),
        st.integers(8, 17),
        st.sampled_from([0, 20, 40]),
    ),
    st.tuples(st.just("wait"), st.integers(1, 90)),  # minutes pass: holds (30 min) run out
)


def run(steps: list[tuple[Any, ...]], holdback_minutes: int = 0) -> Calendar:
    cal = Calendar(make_view(closed=CLOSED), holdback=timedelta(minutes=holdback_minutes))
    now = T0
    booked: list[str] = []
    for n, s in enumerate(steps):
        now += timedelta(seconds=7)
        match s:
            case ("request", product, day, hour, minute):
                booking = f"b{n:03d}"
                booked.append(booking)
                cal.request(booking, product, at(day, hour, minute), now)
            case ("cancel", pick) if booked:
                cal.cancel(booked[pick % len(booked)], now)
            case ("reschedule", pick, day, hour, minute) if booked:
                cal.reschedule(booked[pick % len(booked)], at(day, hour, minute), now)
            case ("wait", minutes):
                now += timedelta(minutes=minutes)
                cal.expire(now)
    return cal


def assert_invariants(cal: Calendar) -> None:
    view = cal.view
    items = sorted(cal.reservations.items())
    for i, (a_id, a) in enumerate(items):
        day = local_day(a.interval.start)
        desk = view.desks[a.desk_id]
        assert a.product_id in desk.products, f"{a_id} on a desk that does not serve {a.product_id}"
        assert not view.is_closed("loc", day), f"{a_id} on a closed day"
        hours = view.desk_hours(a.desk_id, day)
        assert any(h.start <= a.interval.start and a.interval.end <= h.end for h in hours), f"{a_id} outside hours"
        for b_id, b in items[i + 1 :]:
            assert not (a.desk_id == b.desk_id and a.interval.overlaps(b.interval)), f"{a_id} and {b_id} share a desk"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=40), st.sampled_from([0, 15]))
def test_no_double_booking_and_every_reservation_inside_hours(steps: list[tuple[Any, ...]], holdback: int) -> None:
    cal = run(steps, holdback)
    assert_invariants(cal)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=40))
def test_the_same_events_give_the_same_decisions(steps: list[tuple[Any, ...]]) -> None:
    first, second = run(steps), run(steps)
    assert first.decisions == second.decisions
    assert first.reservations == second.reservations


def agenda_of(events: list[tuple[datetime, str, Any]]) -> dict[str, dict[str, Any] | None]:
    states: dict[str, Any] = {}
    for time, event_id, event in events:
        changes = agenda_changes(event)
        if changes is not None:
            states[event.booking_id] = merge(states.get(event.booking_id, {}), changes, version(time, event_id))
    return {booking: row_of(state) for booking, state in sorted(states.items())}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(step, max_size=30), st.randoms(use_true_random=False))
def test_replaying_the_events_in_any_order_gives_the_same_agenda(steps: list[tuple[Any, ...]], rnd: Any) -> None:
    cal = run(steps)
    incremental = agenda_of(cal.events)
    shuffled = list(cal.events)
    rnd.shuffle(shuffled)
    assert agenda_of(shuffled) == incremental  # another interleaving of the topics (a rebuild)
    assert agenda_of(cal.events + cal.events[: len(cal.events) // 2]) == incremental  # redeliveries
    # The agenda shows exactly the live reservations (active ones: held or confirmed).
    active = {b: (r.desk_id, r.interval.start, r.interval.end) for b, r in cal.reservations.items()}
    shown = {
        b: (row["desk_id"], row["start_at"], row["end_at"])
        for b, row in incremental.items()
        if row is not None and row["status"] in ("held", "confirmed")
    }
    assert shown == active


@settings(max_examples=100, deadline=None)
@given(st.lists(step, max_size=30))
def test_as_of_any_instant_is_the_fold_of_the_events_up_to_it(steps: list[tuple[Any, ...]]) -> None:
    cal = run(steps)
    if not cal.events:
        return
    cut = cal.events[len(cal.events) // 2][0]
    before = [e for e in cal.events if e[0] <= cut]
    per_booking: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for time, event_id, event in reversed(cal.events):  # any order: only which events count
        changes = agenda_changes(event)
        if changes is not None and time <= cut:
            per_booking.setdefault(event.booking_id, []).append((version(time, event_id), changes))
    assert {b: row_of(fold(c)) for b, c in sorted(per_booking.items())} == agenda_of(before)


def test_free_starts_and_free_desk_agree() -> None:
    view = make_view(closed=CLOSED)
    cal = Calendar(view)
    for n, hour in enumerate((9, 9, 10, 14)):
        cal.request(f"x{n}", "card", at(WEEK[0], hour, 0), T0)
    taken = cal.taken(T0)
    starts = {i.start for i in free_starts(view, "loc", "card", WEEK[0], taken, T0)}
    for hour in range(8, 18):
        for minute in range(0, 60, 10):
            start = at(WEEK[0], hour, minute)
            assert (start in starts) == (not hasattr(free_desk(view, "loc", "card", start, taken, T0), "reason"))
    assert at(WEEK[0], 9, 0) not in starts  # two desks serve cards at 09:00, both taken
    assert free_starts(view, "loc", "card", CLOSED[0], [], T0) == []


def test_desk_policy_fills_the_specialised_desk_first() -> None:
    view = make_view()
    # d2 serves 2 products, d1 serves 3: cards go to d2 first, keeping d1 for long appointments.
    choice = free_desk(view, "loc", "card", at(WEEK[0], 9, 0), [], T0)
    assert getattr(choice, "desk_id", None) == "d2"


def test_a_hold_runs_out_at_the_deciding_events_time() -> None:
    cal = Calendar(make_view())
    cal.request("held", "long", at(WEEK[0], 13, 0), T0)
    assert cal.reservations["held"].hold_expires_at == T0 + timedelta(minutes=30)
    cal.request("early", "long", at(WEEK[0], 13, 0), T0 + timedelta(minutes=29))
    assert "early" not in cal.reservations  # the hold still stands
    cal.request("late", "long", at(WEEK[0], 13, 0), T0 + timedelta(minutes=30))
    assert "held" not in cal.reservations and "late" in cal.reservations
    assert [type(e).__name__ for _, _, e in cal.events].count("HoldExpired") == 1


def test_a_freed_slot_is_held_back_then_offered_again() -> None:
    cal = Calendar(make_view(), holdback=timedelta(minutes=10))
    start = at(WEEK[0], 13, 0)  # only d3 serves long appointments at 13:00
    cal.request("a", "long", start, T0)
    cal.cancel("a", T0 + timedelta(minutes=1))
    cal.request("bot", "long", start, T0 + timedelta(minutes=2))
    assert "bot" not in cal.reservations
    cal.request("b", "long", start, T0 + timedelta(minutes=11))
    assert "b" in cal.reservations


def test_a_short_move_on_one_desk_frees_only_what_it_left() -> None:
    cal = Calendar(make_view(), holdback=timedelta(minutes=10))
    cal.request("a", "card", at(WEEK[0], 9, 0), T0)
    desk = cal.reservations["a"].desk_id
    cal.reschedule("a", at(WEEK[0], 9, 10), T0)
    assert cal.reservations["a"].desk_id == desk
    assert [(d, i.start, i.end) for d, i, _ in cal.held_back] == [(desk, at(WEEK[0], 9, 0), at(WEEK[0], 9, 10))]
