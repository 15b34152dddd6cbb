"""The one clock every Loket process reads "now" from.

In production it is the system clock. A test stack can run as if it were another day, so that the
suite meets Christmas week, a DST change or a leap day whenever it runs:

- `LOKET_CLOCK_OFFSET_SECONDS` (float): every reading is the system clock plus this many seconds.
  The local runner sets it for every process of a stack, so they all agree to the microsecond.
- `LOKET_CLOCK_START` (ISO 8601 instant with an offset, e.g. `2026-12-21T09:00:00+01:00`): the
  clock reads this instant now and runs on at real speed from there. A process that starts
  others (the local runner, the test suite) turns it into one offset first (`start_as_offset`), so
  every process, and every restart, shares it; a process started alone reads it at its first
  reading.

Both are refused (`ClockRefused`, at start for a service) unless `LOKET_ENVIRONMENT` is unset or
names a place where tests run (`local`, `test`, `development`): a city's counter never runs on a
test clock, whatever its operators call their production. Monotonic timers (`time.monotonic`,
asyncio's loop time) are not affected: durations stay real. So are token lifetimes, which are checked against the
system clock by the JWT library, and PostgreSQL's own `now()`, used only for bookkeeping columns.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

BRUSSELS = ZoneInfo("Europe/Brussels")  # where the counter is: every wall-clock time is read here
OFFSET_VARIABLE = "LOKET_CLOCK_OFFSET_SECONDS"
START_VARIABLE = "LOKET_CLOCK_START"
TEST_ENVIRONMENTS = frozenset({"", "local", "test", "development"})


class ClockRefused(RuntimeError):
    """A test clock was configured where only the real one may run (see TEST_ENVIRONMENTS)."""


_offset: timedelta | None = None


def offset_from_environment(environ: os._Environ[str] | dict[str, str] = os.environ) -> timedelta:
    """The shift configured by the environment (zero when none is): see the module docstring.

    Raises `ClockRefused` outside test environments, `ValueError` for a value that is not a number or an
    aware ISO 8601 instant.
    """
    raw_offset = environ.get(OFFSET_VARIABLE, "").strip()
    raw_start = environ.get(START_VARIABLE, "").strip()
    if not raw_offset and not raw_start:
        return timedelta(0)
    _refuse_outside_tests(environ)
    if raw_offset:
        return timedelta(seconds=float(raw_offset))
    start = datetime.fromisoformat(raw_start)
    if start.tzinfo is None:
        raise ValueError(f"{START_VARIABLE} needs an offset or Z, e.g. 2026-12-21T09:00:00+01:00: {raw_start!r}")
    return start - datetime.now(UTC)


def _refuse_outside_tests(environ: os._Environ[str] | dict[str, str]) -> None:
    environment = environ.get("LOKET_ENVIRONMENT", "").strip().lower()
    if environment not in TEST_ENVIRONMENTS:
        raise ClockRefused(
            f"{OFFSET_VARIABLE} and {START_VARIABLE} are for test stacks, never production"
            f" (LOKET_ENVIRONMENT={environment!r}; a test clock runs only where it is one of"
            f" {sorted(e for e in TEST_ENVIRONMENTS if e)} or unset)"
        )


def start_as_offset(environ: os._Environ[str] | dict[str, str] = os.environ) -> None:
    """Replace a `LOKET_CLOCK_START` in `environ` by the `LOKET_CLOCK_OFFSET_SECONDS` it means now
    (an offset already there wins), so that the processes started with this environment, and their
    restarts, agree on the time. Raises as `offset_from_environment` does."""
    if not environ.get(START_VARIABLE, "").strip():
        return
    offset = offset_from_environment(environ)
    del environ[START_VARIABLE]
    environ[OFFSET_VARIABLE] = f"{offset.total_seconds():.6f}"


def shift_to(start: datetime) -> str:
    """The `LOKET_CLOCK_OFFSET_SECONDS` value that makes the clock read `start` (aware) now."""
    return f"{(start - datetime.now(UTC)).total_seconds():.6f}"


def now() -> datetime:
    """The current instant, aware, in UTC (shifted on a test stack)."""
    global _offset
    if _offset is None:
        _offset = offset_from_environment()
    return datetime.now(UTC) + _offset


def today() -> date:
    """Today's date in Brussels, where the counter is: the day a resident and a clerk call today."""
    return now().astimezone(BRUSSELS).date()


@contextmanager
def shifted(start: datetime) -> Iterator[None]:
    """Inside the block this process's clock reads `start` (aware) now and runs on from it: for a
    test that runs a service in-process on fixed days. Refused in production like the variables."""
    global _offset
    _refuse_outside_tests(os.environ)
    before = _offset
    _offset = start - datetime.now(UTC)
    try:
        yield
    finally:
        _offset = before
