"""The one clock: the system clock in production, a shifted one on a test stack (`make test-dates`)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from loket_runtime import clock


def test_no_setting_is_the_system_clock() -> None:
    assert clock.offset_from_environment({}) == timedelta(0)


def test_an_offset_shifts_every_reading() -> None:
    assert clock.offset_from_environment({clock.OFFSET_VARIABLE: "-3600.5"}) == timedelta(seconds=-3600.5)


def test_a_start_instant_reads_as_that_instant_now() -> None:
    start = datetime(2027, 3, 28, 1, 59, tzinfo=UTC)  # a minute before the spring DST change
    offset = clock.offset_from_environment({clock.START_VARIABLE: start.isoformat()})
    assert abs(datetime.now(UTC) + offset - start) < timedelta(seconds=1)


def test_shift_to_is_the_offset_that_the_runner_passes_on() -> None:
    start = datetime(2028, 2, 28, 9, 30, tzinfo=clock.BRUSSELS)
    offset = clock.offset_from_environment({clock.OFFSET_VARIABLE: clock.shift_to(start)})
    shifted = datetime.now(UTC) + offset
    assert abs(shifted - start) < timedelta(seconds=1)
    assert shifted.astimezone(clock.BRUSSELS).date() == date(2028, 2, 28)


@pytest.mark.parametrize("variable", [clock.OFFSET_VARIABLE, clock.START_VARIABLE])
def test_production_refuses_a_test_clock(variable: str) -> None:
    value = "86400" if variable == clock.OFFSET_VARIABLE else "2026-12-21T09:30:00+01:00"
    with pytest.raises(clock.ClockRefused, match="never production"):
        clock.offset_from_environment({variable: value, "LOKET_ENVIRONMENT": "production"})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        (clock.OFFSET_VARIABLE, "tomorrow"),
        (clock.START_VARIABLE, "2026-12-21"),
        (clock.START_VARIABLE, "2026-12-21T09:30"),
    ],
)
def test_a_value_that_names_no_instant_is_refused(variable: str, value: str) -> None:
    with pytest.raises(ValueError):
        clock.offset_from_environment({variable: value})


def test_today_is_the_brussels_date(monkeypatch: pytest.MonkeyPatch) -> None:
    # 23:30 UTC on 31 December is already New Year's Day in Brussels, where the counter is.
    late = datetime(2026, 12, 31, 23, 30, tzinfo=UTC)
    monkeypatch.setattr(clock, "_offset", late - datetime.now(UTC))
    assert clock.now().tzinfo is not None
    assert clock.today() == date(2027, 1, 1)


def test_shifted_runs_this_process_as_if_it_were_another_day() -> None:
    before = clock.now()
    with clock.shifted(datetime(2027, 10, 31, 2, 30, tzinfo=UTC)):  # the autumn DST change, in UTC
        assert clock.today() == date(2027, 10, 31)
        assert clock.now().astimezone(clock.BRUSSELS).utcoffset() == timedelta(hours=1)
    assert abs(clock.now() - before) < timedelta(seconds=5)


def test_shifted_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOKET_ENVIRONMENT", "production")
    with pytest.raises(clock.ClockRefused), clock.shifted(datetime(2027, 1, 1, tzinfo=UTC)):
        pass


def test_a_start_becomes_one_offset_for_every_process_started_after() -> None:
    environ = {clock.START_VARIABLE: "2027-10-31T02:05:00+01:00"}
    clock.start_as_offset(environ)
    assert clock.START_VARIABLE not in environ
    shifted = datetime.now(UTC) + timedelta(seconds=float(environ[clock.OFFSET_VARIABLE]))
    assert abs(shifted - datetime(2027, 10, 31, 1, 5, tzinfo=UTC)) < timedelta(seconds=1)


@pytest.mark.parametrize("environment", ["production", "prod", "staging", "acceptance"])
def test_only_test_environments_accept_a_test_clock(environment: str) -> None:
    with pytest.raises(clock.ClockRefused):
        clock.offset_from_environment({clock.OFFSET_VARIABLE: "60", "LOKET_ENVIRONMENT": environment})
    assert clock.offset_from_environment({clock.OFFSET_VARIABLE: "60", "LOKET_ENVIRONMENT": "local"}).seconds == 60
