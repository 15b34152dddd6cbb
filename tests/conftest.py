"""Shared fixtures: the real local stack (PostgreSQL, Kafka, SMTP/SMS sinks, services, gateway),
started once per test run on ports of its own, so a developer's `make up` stack can keep running.

LOKET_TEST_PORT_BASE (default 18000) moves every port; the data lives in .data/test-<base>/ and
is wiped at the start of each run.

LOKET_TEST_NOW (an ISO 8601 instant with its offset, e.g. 2026-12-21T09:30:00+01:00, or a date
alone for 09:30 Brussels time that day) runs the end-to-end and browser tests as if it were then:
it becomes one LOKET_CLOCK_OFFSET_SECONDS for this process and every process of the stack
(`loket_runtime.clock`), and the browser's clock follows (tests/browser). The integration tests
mix the real clock with in-process services: they run on today's date only. `make test-dates`
runs the end-to-end and browser tests this way on the days that break calendars.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import httpx
import pytest

from loket_runtime import clock
from loket_stack.runner import REPO, Stack, StackConfig

PORT_BASE = int(os.environ.get("LOKET_TEST_PORT_BASE", "18000"))


def free_ports(offset: int) -> Iterator[int]:
    """Ports of this run's range, from PORT_BASE + offset on, that nothing listens on now: for the
    servers a test module starts itself, beside the session's stack (PORT_BASE + 0 to 433)."""
    for port in itertools.count(PORT_BASE + offset):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        yield port


def instant_of(raw: str) -> datetime:
    """LOKET_TEST_NOW as an instant: an ISO 8601 instant, or a date alone for 09:30 Brussels that day."""
    if "T" in raw:
        at = datetime.fromisoformat(raw)
        if at.tzinfo is None:
            raise ValueError(f"LOKET_TEST_NOW needs its offset, e.g. 2027-10-31T02:05:00+01:00: {raw!r}")
        return at
    day = date.fromisoformat(raw)
    return datetime(day.year, day.month, day.day, 9, 30, tzinfo=clock.BRUSSELS)


if os.environ.get("LOKET_TEST_NOW"):
    # Set before anything reads the clock; the stack's processes inherit the environment.
    os.environ[clock.OFFSET_VARIABLE] = clock.shift_to(instant_of(os.environ["LOKET_TEST_NOW"]))


def test_config() -> StackConfig:
    b = PORT_BASE
    return StackConfig.on_ports_from(
        b,
        data=REPO / ".data" / f"test-{b}",
        extra_env={"LOKET_HOLD_CHECK_SECONDS": "0.2", "LOKET_HOLD_GRACE_SECONDS": "0"},
        # The suite's own requests (and the browser's) come from 127.0.0.1 and may pass the edge's
        # rate limits; tests of the limits send from 127.0.0.2 and up (tests/e2e/test_edge.py).
        trusted_clients=("127.0.0.1",),
    )


@dataclass
class RunningStack:
    stack: Stack
    config: StackConfig

    @property
    def base_url(self) -> str:
        return self.config.base_url

    @property
    def kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.config.kafka}"

    def dsn(self, service: str) -> str:
        return self.stack.postgres.dsn(f"loket_{service}")

    @property
    def mail_dir(self) -> Path:
        return self.config.data / "mail"

    @property
    def sms_file(self) -> Path:
        return self.config.data / "sms.jsonl"

    def token(self, username: str) -> str:
        response = httpx.post(f"{self.base_url}/api/v1/auth/token", data={"username": username, "password": "demo"})
        response.raise_for_status()
        return str(response.json()["access_token"])


@pytest.fixture(scope="session")
def infra() -> Iterator[RunningStack]:
    """PostgreSQL and Kafka only (with the registry's topics)."""
    config = test_config()
    stack = Stack(config)
    stack.down()
    shutil.rmtree(config.data, ignore_errors=True)
    stack.up_infra()
    yield RunningStack(stack, config)
    stack.down()


@pytest.fixture(scope="session")
def live(infra: RunningStack) -> Iterator[RunningStack]:
    """The whole stack with the Ghent seed: the API at infra.base_url."""
    infra.stack.up_services(timeout=120)
    wait_for_seed(infra.base_url)
    yield infra


def wait_for_seed(base_url: str, timeout: float = 60) -> None:
    """The calendar and booking read models are built from the catalogue topic: wait for them."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            r = httpx.get(
                f"{base_url}/api/v1/availability",
                params={"product": "residence-card", "from": "2026-01-01", "to": "2026-01-01"},
            )
            if r.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the catalogue never reached the calendar")
